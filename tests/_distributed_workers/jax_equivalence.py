"""JAX data parallelism on simulated CPU devices vs one device; prints one JSON object of results.

Run as ``JAX_NUM_CPU_DEVICES=8 python -m tests._distributed_workers.jax_equivalence OUT_DIR`` (the
variable must be set before JAX starts, hence a subprocess); ``... jax_equivalence compare RUN``
retrains RUN's config on one device and compares (for the multi-host test). All comparisons are float64:

- task batch: the single-device ``Trainer`` vs ``cogmeta train --backend jax --devices 2`` (the CLI)
  and the ``DataParallelTrainer`` on 1 and 8 devices: same config, same global batches;
- cross-framework: the 8-device data-parallel step on numpy batches vs single-process PyTorch;
- seed axis: a population of runs vmapped over seeds, seed axis sharded over 8 devices, vs
  each run alone on one device; the sweep engine's member function (``jax_impl.engine``) with its
  seed axis sharded over 8 devices vs the engine's unsharded ``vmap`` program;
- bad input: the errors raised for an indivisible batch and for too many devices;
- RL²: the A2C training with its episodes split over 2 and 8 devices vs one device (also the CLI's ``--devices 2``).
- collectives: the compiled 2-device step of RL² and of the tutorial holds the gradient's all-reduce and no other.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from flax import nnx  # noqa: E402

from cogmeta.cli import main as cli_main  # noqa: E402
from cogmeta.config import RunConfig  # noqa: E402
from cogmeta.runs import RunDir  # noqa: E402
from cogmeta.weights import load_weights  # noqa: E402
from cogmeta.evaluation import held_out_observations  # noqa: E402
from cogmeta.held_out_check import HeldOutCheck  # noqa: E402
from jax_impl.backend import (  # noqa: E402
    MetaLearnerObjective,
    _forward,
    _on_run_devices,
    _task_split,
    build_model,
    predict,
    predictive_params,
)
from jax_impl.backend import make_tutorial_trainer as Trainer  # noqa: E402
from jax_impl.distributed import (  # noqa: E402
    DataParallelTrainer,
    data_parallel_loss_and_grad,
    place,
    seed_mesh,
    task_mesh,
    vmap_over_seeds,
)
from jax_impl.optim import init_adam  # noqa: E402
from jax_impl.trainer import make_train_on_batches  # noqa: E402
from jax_impl.weights import state_to_canonical  # noqa: E402
from tests._distributed_workers.settings import (  # noqa: E402
    BATCH,
    JAX_CLI_ARGS,
    STEPS,
    STEPS_PER_CALL,
)

CLI_ARGS = JAX_CLI_ARGS
#: A collective operation of XLA's optimized HLO text.
COLLECTIVE = re.compile(r"\b(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)(-start)?\(")


def normalized_error(a: dict, b: dict) -> float:
    """max over tensors of max|a - b| / max(max|b|, 1e-3) (parity.md's normalized error)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(b[k])), 1e-3)) for k in b)


def task_batch(out: Path, results: dict) -> RunConfig:
    code = cli_main(CLI_ARGS + ["--out", str(out / "two"), "--devices", "2"])
    assert code == 0, f"cogmeta train --devices 2 exited with {code}"
    config = RunConfig.load(RunDir.at(out / "two").config)
    single = Trainer(config)  # the single-device reference: no mesh, no shard_map
    while single.step < STEPS:
        single.run(STEPS_PER_CALL)
    reference = single.weights()
    results["task_batch"] = {"2 (cli)": normalized_error(load_weights(RunDir.at(out / "two").weights, config), reference)}
    results["metrics_rows"] = len((out / "two" / "metrics.csv").read_text().splitlines())
    for devices in (1, 8):
        trainer = DataParallelTrainer(config, devices=devices)
        while trainer.step < STEPS:
            trainer.run(STEPS_PER_CALL)
        leaf = jax.tree.leaves(trainer.params)[0]
        results["task_batch"][str(devices)] = normalized_error(trainer.weights(), reference)
        results.setdefault("param_devices", {})[str(devices)] = len(leaf.sharding.device_set)
    held_out_split(config, trainer, results)  # the 8-device trainer's
    checked_split(config, results)
    results["reference_changed"] = normalized_error(reference, build_canonical(config))
    return config


def held_out_split(config: RunConfig, trainer: DataParallelTrainer, results: dict) -> None:
    """The held-out forward pass of a data-parallel trainer, its tasks split over the mesh (``backend._task_split``),
    vs the one-device ``predict`` of the same weights: the devices it used and the largest normalized difference."""
    observations = held_out_observations(config.task, 1_000, 7)
    split = _task_split(trainer.params)
    predicted = trainer.predictive(observations)
    one_device = jax.device_put(jax.tree.map(np.asarray, trainer.params), jax.devices()[0])
    alone = predictive_params(config.task.family, _forward(config, one_device, observations))
    # ``predict`` of canonical weights places them on the devices a run of the config would split its batch over:
    # for batch 32 on 8 devices, 2 (shares of at least 16 tasks)
    wide = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=32))
    summary = _task_split(_on_run_devices(wide, one_device))
    results.setdefault("held_out_split", {})[str(trainer.devices)] = {
        "devices": 1 if split is None else len(split.device_set), "error": normalized_error(predicted, alone),
        "predict_devices": 1 if summary is None else len(summary.device_set),
        "predict_error": normalized_error(predict(wide, trainer.weights(), observations), alone),
        "predict_placement_is_a_runs": summary is None or summary.mesh == task_mesh(2)}


def checked_split(config: RunConfig, results: dict) -> None:
    """``run_checked`` of the 8-device trainer, the held-out check's 64 tasks split over the devices inside the
    training call (``distributed.data_parallel_check``), vs the single-device trainer's: the checks' steps and the
    largest relative difference of their KLs (the target is never reached: every check of the calls is made)."""
    every = STEPS_PER_CALL // 2
    checked = dataclasses.replace(config, train=dataclasses.replace(config.train, until_kl=1e-9, until_kl_every=every,
                                                                    eval_tasks=64))
    runs = {}
    for name, trainer in (("1", Trainer(checked)), ("8", DataParallelTrainer(checked, devices=8,
                                                                          until=HeldOutCheck.of(checked)))):
        runs[name] = [check for _ in range(2) for check in trainer.run_checked(STEPS_PER_CALL)[1]]
    split = runs["8"]
    results["checked_split"] = {
        "steps": [step for step, _ in split], "expected": [every * (i + 1) for i in range(2 * STEPS_PER_CALL // every)],
        "error": max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(split, runs["1"])),
        "same_steps": [step for step, _ in split] == [step for step, _ in runs["1"]]}


def build_canonical(config: RunConfig) -> dict:
    return state_to_canonical(nnx.split(build_model(config))[1])


def cross_framework(config: RunConfig, results: dict) -> None:
    """8-device data-parallel JAX vs single-process torch on the same numpy batches and weights."""
    import torch

    from torch_impl.backend import MetaLearnerObjective as TorchObjective
    from torch_impl.backend import build_model as torch_build
    from torch_impl.optim import init_adam as torch_init_adam
    from torch_impl.trainer import make_train_on_batches as torch_train_on_batches
    from torch_impl.weights import model_to_canonical

    torch.set_num_threads(1)
    rng = np.random.default_rng(7)
    batches = np.stack([config.task.sample(rng, BATCH, np.float64).observations for _ in range(STEPS)])
    torch_model = torch_build(config)
    weights = model_to_canonical(torch_model)
    torch_objective = TorchObjective(config)
    torch_train_on_batches(torch_objective, torch_model)(torch_init_adam(torch_model.named_parameters()),
                                                        [torch.from_numpy(b) for b in batches], 0,
                                                        torch_objective.member(config.train.seed))

    model = build_model(config)
    from jax_impl.weights import load_canonical as jax_load

    jax_load(model, weights)
    graphdef, params = nnx.split(model)
    mesh = task_mesh(8)
    replicated = jax.NamedSharding(mesh, jax.P())
    params = place(params, replicated)
    opt_state = place(init_adam(params), replicated)
    objective = MetaLearnerObjective(config)
    run = make_train_on_batches(objective, data_parallel_loss_and_grad(objective, mesh))
    params, _, _ = run(params, opt_state, place(batches, replicated), 0, objective.member(config.train.seed))
    results["cross_framework_8_devices_vs_torch"] = normalized_error(state_to_canonical(params), model_to_canonical(torch_model))


def seed_axis(config: RunConfig, results: dict) -> None:
    """Eight runs (own init, own batches) vmapped over seeds, seed axis sharded, vs each run alone."""
    seeds, steps = 8, 50
    rng = np.random.default_rng(11)
    graphdef, _ = nnx.split(build_model(config))
    inits = [nnx.split(build_model(config, seed=s))[1] for s in range(seeds)]
    batches = np.stack([np.stack([config.task.sample(rng, BATCH, np.float64).observations for _ in range(steps)])
                        for _ in range(seeds)])
    objective = MetaLearnerObjective(config)
    member = objective.member(config.train.seed)
    on_batches = make_train_on_batches(objective)

    def single(params, opt_state, batches, start):
        return on_batches(params, opt_state, batches, start, member)

    alone = [state_to_canonical(single(p, init_adam(p), batches[s], 0)[0]) for s, p in enumerate(inits)]
    stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *inits)
    opt_states = jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *[init_adam(p) for p in inits])
    results["seed_axis"], results["seed_devices"] = {}, {}
    from cogmeta.tasks.bandit import BernoulliBanditTask
    from jax_impl.bandit import sample_episodes
    from jax_impl.samplers import step_key

    bandits = BernoulliBanditTask()  # Beta arms: a rejection loop per draw, vmapped over the seeds

    def draw(seed):
        return sample_episodes(bandits, step_key(seed, 0), 16).probabilities

    drawn = vmap_over_seeds(draw, seed_mesh(8))
    results["seed_axis_collectives"] = collectives(drawn.lower(np.arange(8)))
    drawn_alone = np.stack([np.asarray(jax.jit(draw)(seed)) for seed in range(8)])  # each seed's own program
    results["seed_axis_draws"] = float(np.max(np.abs(np.asarray(drawn(np.arange(8))) - drawn_alone)))
    for devices in (8,):
        run = vmap_over_seeds(single, seed_mesh(devices), in_axes=(0, 0, 0, None))
        params, _, _ = run(stacked, opt_states, batches, 0)
        leaf = jax.tree.leaves(params)[0]
        results["seed_devices"][str(devices)] = [len(leaf.sharding.device_set), str(leaf.sharding.spec)]
        trained = state_to_canonical(jax.tree.map(np.asarray, params))
        results["seed_axis"][str(devices)] = max(
            normalized_error({k: v[s] for k, v in trained.items()}, alone[s]) for s in range(seeds))


def engine_member_devices(config: RunConfig, results: dict) -> None:
    """The sweep engine (``jax_impl.engine.Engine``) with its members split over devices vs on one device:
    6 members (seeds, learning rates) trained whole by ``map`` and ``vmap`` on 1 device, on every device (auto:
    one per member, 6) and on 4 (padded to 8 with frozen copies): weights and logged losses per member."""
    from jax_impl.engine import Engine

    seeds, rates = [100 + s for s in range(6)], [float(r) for r in np.linspace(3e-3, 1e-2, 6)]
    results["engine_devices"], results["engine_devices_error"] = {}, {}
    results["steps"] = config.train.steps
    for strategy in ("map", "vmap"):
        reference = Engine(config, strategy, chunk=50, devices=1).train(seeds, rates, progress=False)
        for devices in (None, 4):
            engine = Engine(config, strategy, chunk=50, devices=devices)
            runs = engine.train(seeds, rates, progress=False)
            key = f"{strategy} {'auto' if devices is None else devices}"
            results["engine_devices"][key] = [engine.devices, len(jax.tree.leaves(engine.final_params)[0].sharding.device_set),
                                              len(runs), [run.steps for run in runs]]
            results["engine_devices_error"][key] = max(
                max(normalized_error(run.weights, ref.weights) for run, ref in zip(runs, reference)),
                max(float(np.max(np.abs(run.metrics.loss - ref.metrics.loss))) for run, ref in zip(runs, reference)))
    # the heuristics grid (bounded GRU): members that hold a condition and typed PRNG keys, 5 over 2 devices
    from cogmeta.experiments.heuristics import base_config
    from jax_impl import bounded_gru

    bounded = bounded_gru.make_objective(base_config(hidden_size=8, batch_size=4, pretrain_steps=20, dtype="float64"))
    grid = [(c, s) for c in range(3) for s in range(2)][:5]
    members = [bounded.member(s, condition=c) for c, s in grid]
    one, two = (Engine(bounded, bounded_gru.STRATEGY, devices=d).train([s for _, s in grid], members=members,
                                                                       progress=False) for d in (1, 2))
    results["engine_devices_bounded"] = [len(two), max(normalized_error(a.weights, b.weights) for a, b in zip(two, one)),
                                         min(normalized_error(a.weights, b.weights) for a, b in zip(one[1:], one[:-1]))]
    try:
        Engine(config, "map", devices=9).train([0, 1], progress=False)
    except ValueError as error:
        results["engine_too_many_devices"] = str(error)

def bad_input(config: RunConfig, results: dict) -> None:
    import dataclasses

    errors = {}
    uneven = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=12))
    for name, make in (("indivisible", lambda: DataParallelTrainer(uneven, devices=8)),
                       ("too_many_devices", lambda: DataParallelTrainer(config, devices=16))):
        try:
            make()
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    results["errors"] = errors


def compare_run(run: Path) -> None:
    """Train ``run``'s config on one device and print the normalized error of ``run``'s weights."""
    config = RunConfig.load(RunDir.at(run).config)
    single = Trainer(config)
    while single.step < config.train.steps:
        single.run(min(config.jax.steps_per_call, config.train.steps - single.step))
    error = normalized_error(load_weights(RunDir.at(run).weights, config), single.weights())
    print("RESULTS " + json.dumps({"error": error, "moved": normalized_error(single.weights(), build_canonical(config))}))


def auto_split(out: Path, results: dict) -> None:
    """``cogmeta train`` without ``--devices`` on 8 CPU devices: the batch is split by ``jax_impl.launch.auto_devices``
    (shares of at least 16 tasks: batch 32 -> 2 devices) and the run equals the single-device trainer."""
    from jax_impl.launch import auto_devices, make_trainer

    args = list(CLI_ARGS)
    args[args.index("--batch-size") + 1] = "32"
    code = cli_main(args + ["--out", str(out / "auto")])
    assert code == 0, f"cogmeta train (auto devices) exited with {code}"
    config = RunConfig.load(RunDir.at(out / "auto").config)
    results["auto_devices"] = {str(batch): auto_devices(dataclasses.replace(
        config, train=dataclasses.replace(config.train, batch_size=batch))) for batch in (8, 12, 16, 32, 64, 128)}
    results["auto_trainer_devices"] = getattr(make_trainer(config), "devices", 1)
    single = Trainer(config)
    while single.step < STEPS:
        single.run(STEPS_PER_CALL)
    results["auto_split_error"] = normalized_error(load_weights(RunDir.at(out / "auto").weights, config), single.weights())


def collectives(lowered) -> list[str]:
    """The collective operations of a lowered program once compiled (the ops of XLA's optimized HLO)."""
    return [match.group(1) for match in COLLECTIVE.finditer(lowered.compile().as_text())]


def training_collectives(trainer: DataParallelTrainer) -> list[str]:
    """:func:`collectives` of ``trainer``'s training program."""
    start, count = jax.numpy.asarray(0), jax.numpy.asarray(trainer.chunk_size)  # as Trainer.run passes them
    return collectives(trainer.program.lower(trainer.params, trainer.opt_state, start, count))


def rl2_episode_split(out: Path, results: dict, tutorial_config: RunConfig) -> None:
    """The RL² agent's A2C training with its episodes split over 2 and 8 devices (``jax_impl.rl2.make_trainer``)
    vs one device: same bandits, same sampled actions, the entropy weight annealed by step; the CLI run with
    ``--devices 2`` (the rl2 workload's path) and the default split of a 32-episode batch over 2 devices."""
    from jax_impl.rl2 import make_trainer as rl2_trainer

    steps = 30
    args = ["train", "--task", "bandit", "--backend", "jax", "--dtype", "float64", "--horizon", "10",
            "--hidden-size", "8", "--batch-size", "16", "--steps", str(steps), "--steps-per-call", "10",
            "--learning-rate", "0.01", "--entropy-final", "0", "--log-every", "10", "--eval-every", str(steps),
            "--eval-tasks", "8", "--checkpoint-every", str(steps), "--no-progress", "--no-figures",
            "--summary-tasks", "0"]
    code = cli_main(args + ["--devices", "2", "--out", str(out / "rl2-two")])
    assert code == 0, f"cogmeta train --task bandit --devices 2 exited with {code}"
    config = RunConfig.load(RunDir.at(out / "rl2-two").config)
    single = rl2_trainer(config, devices=1)
    rewards = np.concatenate([single.run(10).aux["reward"] for _ in range(steps // 10)])
    reference = single.weights()
    results["rl2_moved"] = normalized_error(reference, rl2_trainer(config, devices=1).weights())
    errors = {"2 (cli)": normalized_error(load_weights(RunDir.at(out / "rl2-two").weights, config), reference)}
    for devices in (2, 8):
        split = rl2_trainer(config, devices=devices)
        split_rewards = np.concatenate([split.run(10).aux["reward"] for _ in range(steps // 10)])
        errors[str(devices)] = normalized_error(split.weights(), reference)
        errors[f"{devices} rewards"] = float(np.max(np.abs(split_rewards - rewards)))
        if devices == 2:  # interrupted after one call and resumed from its checkpoint: the same bits
            first = rl2_trainer(config, devices=2)
            first.run(10)
            resumed = rl2_trainer(config, first.checkpoint(), devices=2)
            while resumed.step < steps:
                resumed.run(10)
            errors["2 resumed"] = max(float(np.max(np.abs(resumed.weights()[k] - split.weights()[k])))
                                      for k in reference)
    results["rl2_split"] = errors
    results["split_collectives"] = {"rl2": training_collectives(rl2_trainer(config, devices=2)),
                                    "tutorial": training_collectives(DataParallelTrainer(tutorial_config, devices=2))}
    wide = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=32))
    results["rl2_auto_devices"] = getattr(rl2_trainer(wide), "devices", 1)


def main() -> None:
    if sys.argv[1] == "compare":
        compare_run(Path(sys.argv[2]))
        return
    out = Path(sys.argv[1])
    results = {"devices": len(jax.devices())}
    config = task_batch(out, results)
    auto_split(out, results)
    cross_framework(config, results)
    seed_axis(config, results)
    engine_member_devices(config, results)
    bad_input(config, results)
    rl2_episode_split(out, results, config)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
