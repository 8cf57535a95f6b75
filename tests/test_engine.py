"""The sweep engines: every member equals the single run it stands for.

Reference: the library's step-by-step trainers (``jax_impl.trainer.Trainer``, ``torch_impl.trainer.Trainer``)
run with the member's seed and learning rate. JAX members must match bit for bit whatever the seed
strategy (vmap / lax.map / loop: the same operations per member); the torch ``vmap`` engine re-implements
clipping and Adam on stacked tensors, so it is compared in float64. A member whose loss turns non-finite
(learning rate 1e30) must stop where its single run stops while the other members go on.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig  # noqa: E402

SEEDS, RATES = [3, 8], [1e-2, 3e-3]


def small_config(dtype="float32", steps=6, cell="gru") -> RunConfig:
    return RunConfig(model=ModelConfig(cell=cell, hidden_size=8),
                     train=TrainConfig(steps=steps, batch_size=4, dtype=dtype, clip_norm=0.5, final_lr_fraction=0.1),
                     jax=JaxOptions(steps_per_call=4))


def member(config: RunConfig, seed: int, rate: float) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed, learning_rate=rate))


def single_jax_run(config: RunConfig):
    from jax_impl.backend import make_tutorial_trainer as Trainer

    trainer = Trainer(config)
    losses = []
    while trainer.step < config.train.steps:
        metrics = trainer.run(min(trainer.chunk_size, config.train.steps - trainer.step))
        losses.append(metrics.loss)
        if not np.isfinite(metrics.loss).all() or not np.isfinite(metrics.grad_norm).all():
            break
    return trainer, np.concatenate(losses)


def single_torch_run(config: RunConfig):
    from torch_impl.backend import make_tutorial_trainer as Trainer

    trainer = Trainer(config)
    metrics = trainer.run(config.train.steps)
    return trainer, metrics.loss


#: Members trained together: two ordinary ones and one whose learning rate makes the loss non-finite.
MEMBERS = [(3, 1e-2), (8, 3e-3), (3, 1e30)]


@functools.lru_cache(maxsize=None)
def jax_reference(seed: int, rate: float):
    """The single JAX run a member stands for: (canonical weights, losses, steps applied)."""
    trainer, losses = single_jax_run(member(small_config(), seed, rate))
    return trainer.weights(), losses, trainer.step


@pytest.mark.slow  # 14 s; parity_tests/test_engine.py checks a JAX member against the trainer in the default tier
def test_jax_members_equal_single_runs_bitwise_with_every_strategy():
    from jax_impl.engine import Engine

    config = small_config()  # 6 steps = one call of 4 steps + one of 2 (and 2 masked) steps
    engine = Engine(config, "auto")
    runs = engine.train(*zip(*MEMBERS), progress=False)
    # auto on CPU timed every strategy on the first chunk and kept the fastest
    assert set(engine.calibration) == {"loop", "map", "vmap"} and engine.strategy == min(engine.calibration, key=engine.calibration.get)
    results = {"auto": runs}
    for strategy in ("loop", "map", "vmap"):  # every strategy trains the members to the same bits
        engine.requested = engine.strategy = strategy
        results[strategy] = engine.train(*zip(*MEMBERS), progress=False)
    for strategy, runs in results.items():
        for run, (seed, rate) in zip(runs, MEMBERS):
            weights, losses, steps = jax_reference(seed, rate)
            assert (run.seed, run.learning_rate, run.steps) == (seed, rate, steps), strategy
            np.testing.assert_array_equal(run.metrics.loss, losses, err_msg=strategy)
            for name, value in weights.items():
                np.testing.assert_array_equal(run.weights[name], value, err_msg=f"{strategy}: {name}")
        # the third member stopped on a non-finite loss (its last update not applied); the others went on
        assert [run.stopped for run in runs] == [False, False, True]
        assert runs[2].steps < config.train.steps and not np.isfinite(runs[2].metrics.loss[-1])
        assert len(runs[2].metrics.loss) == runs[2].steps + 1 and runs[0].steps == config.train.steps


@pytest.mark.jax
@pytest.mark.parametrize("strategy", ["map", "vmap"])
def test_jax_rl2_members_train_their_single_runs_and_vmap_takes_the_taped_loop(strategy, monkeypatch):
    """RL² (``Objective.for_vmap``): members under ``map`` run the single run's program (the replayed trial loop)
    and equal it bit for bit; under ``vmap`` they train the taped trial loop, the same gradients up to the order of
    float additions (float64: 1e-10 after 6 updates). The rollouts traced say which loop each program holds."""
    import jax_impl.rl2
    from cogmeta.config import RLConfig
    from cogmeta.tasks.bandit import BernoulliBanditTask
    from jax_impl.engine import Engine
    from jax_impl.rl2 import make_trainer

    config = small_config("float64")
    config = dataclasses.replace(config, task=BernoulliBanditTask(horizon=6), rl=RLConfig(),
                                 model=dataclasses.replace(config.model, family="rl2"))
    traced, rollout = [], jax_impl.rl2.rollout
    monkeypatch.setattr(jax_impl.rl2, "rollout", lambda *a, replay=True, **k: traced.append(replay) or rollout(*a, replay=replay, **k))
    runs = Engine(config, strategy, devices=1).train(SEEDS, RATES, progress=False)
    assert set(traced) == {strategy == "map"}, "vmap members take the taped loop, map members the replay"
    for run, seed, rate in zip(runs, SEEDS, RATES):
        single = make_trainer(member(config, seed, rate), devices=1)
        while single.step < config.train.steps:
            single.run(min(single.chunk_size, config.train.steps - single.step))
        for name, value in single.weights().items():
            if strategy == "map":
                np.testing.assert_array_equal(run.weights[name], value, err_msg=name)
            else:
                np.testing.assert_allclose(run.weights[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
        assert run.steps == config.train.steps


def test_torch_loop_members_equal_single_runs():
    from torch_impl.engine import train_members

    config = small_config()
    runs = train_members(config, SEEDS, RATES, strategy="loop", progress=False)
    for run, seed, rate in zip(runs, SEEDS, RATES):
        trainer, losses = single_torch_run(member(config, seed, rate))
        np.testing.assert_array_equal(run.metrics.loss, losses)
        for name, value in trainer.weights().items():
            np.testing.assert_array_equal(run.weights[name], value, err_msg=name)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_torch_vmap_members_equal_single_runs_float64(cell):
    from torch_impl.engine import train_members

    config = small_config("float64", cell=cell)
    runs = train_members(config, SEEDS, RATES, strategy="vmap", progress=False)
    for run, seed, rate in zip(runs, SEEDS, RATES):
        trainer, losses = single_torch_run(member(config, seed, rate))
        np.testing.assert_allclose(run.metrics.loss, losses, rtol=1e-12, atol=0)
        for name, value in trainer.weights().items():
            np.testing.assert_allclose(run.weights[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("family", ["meta_learner", "rl2"])
def test_torch_auto_times_both_strategies_on_copies_and_trains_as_the_chosen_one(family):
    """``auto`` with several members times ``loop`` and ``vmap`` on copies and keeps the faster; the members then
    train bit for bit as with that strategy asked for by name (the calibration advanced no model and no stream)."""
    from torch_impl.engine import Engine

    config = small_config()
    if family == "rl2":
        from cogmeta.config import RLConfig
        from cogmeta.tasks.bandit import BernoulliBanditTask

        config = dataclasses.replace(config, task=BernoulliBanditTask(horizon=5), rl=RLConfig(),
                                     model=dataclasses.replace(config.model, family="rl2"))
    engine = Engine(config, "auto")
    runs = engine.train(SEEDS, RATES, progress=False)
    assert set(engine.calibration) == {"loop", "vmap"} and all(t > 0 for t in engine.calibration.values())
    assert engine.strategy == min(engine.calibration, key=engine.calibration.get)
    named = Engine(config, engine.strategy).train(SEEDS, RATES, progress=False)
    for run, reference in zip(runs, named, strict=True):
        assert run.steps == reference.steps == config.train.steps
        np.testing.assert_array_equal(run.metrics.loss, reference.metrics.loss)
        for name, value in reference.weights.items():
            np.testing.assert_array_equal(run.weights[name], value, err_msg=name)
    one = Engine(config, "auto")
    one.train(SEEDS[:1], RATES[:1], progress=False)
    assert one.strategy == "loop" and one.calibration == {}, "one member: the plain trainer, nothing to time"


def test_torch_vmap_member_stops_on_nonfinite_loss_like_a_single_run():
    from torch_impl.engine import train_members

    config = small_config("float64")
    runs = train_members(config, [3, 4], [1e30, 1e-2], strategy="vmap", progress=False)
    trainer, _ = single_torch_run(member(config, 3, 1e30))
    assert runs[0].stopped and runs[0].steps == trainer.step < config.train.steps
    for name, value in trainer.weights().items():
        np.testing.assert_allclose(runs[0].weights[name], value, rtol=1e-10, err_msg=name)
    assert not runs[1].stopped and runs[1].steps == config.train.steps


def test_bad_arguments_say_what_to_do(monkeypatch):
    from jax_impl.engine import Engine, choose_strategy
    from torch_impl.engine import Engine as TorchEngine
    from torch_impl.engine import choose_strategy as torch_choose_strategy
    from torch_impl.engine import train_members

    with pytest.raises(ValueError, match="unknown seed strategy 'pmap'.*auto, vmap, map, loop"):
        choose_strategy("pmap")
    for platform, strategy in (("cpu", "map"), ("gpu", "vmap")):
        monkeypatch.setattr(jax, "default_backend", lambda: platform)
        assert choose_strategy("auto") == strategy and choose_strategy("auto", members=1) == "loop"
    monkeypatch.undo()
    assert torch_choose_strategy("auto", members=1) == "loop" and torch_choose_strategy("auto", members=4) == "vmap"
    with pytest.raises(ValueError, match="one learning rate per seed"):
        Engine(small_config(), "map").train([1, 2], [1e-3], progress=False)
    with pytest.raises(ValueError, match="one learning rate per seed"):
        TorchEngine(small_config(), "vmap").train([1, 2], [1e-3], progress=False)
    with pytest.raises(ValueError, match="unknown seed strategy 'map'"):
        train_members(small_config(), [1], strategy="map", progress=False)
    with pytest.raises(ValueError, match="compile=True is available with the 'loop' strategy only"):
        TorchEngine(small_config(), "vmap", compile=True).train([1], progress=False)


@pytest.mark.jax
@pytest.mark.parametrize("family", ["meta_learner", "rl2"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_engine_draws_many_members_as_each_run_alone(family, cell, dtype, monkeypatch):
    """From COMPILED_INIT_FROM members on (lowered to 8 here), the engine draws their initial weights in one compiled
    program (``init_many``); every member's weights are bit for bit those of a run with its seed (built eagerly)."""
    import jax_impl.trainer
    from jax_impl.engine import Engine

    monkeypatch.setattr(jax_impl.trainer, "COMPILED_INIT_FROM", 8)
    config = small_config(dtype, cell=cell)
    if family == "rl2":
        from cogmeta.config import RLConfig
        from cogmeta.tasks.bandit import BernoulliBanditTask

        config = dataclasses.replace(config, task=BernoulliBanditTask(horizon=5), rl=RLConfig(),
                                     model=dataclasses.replace(config.model, family="rl2"))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, num_layers=2))
    engine = Engine(config, "vmap")
    eager = engine.objective.init
    built = []
    monkeypatch.setattr(engine.objective, "init", lambda seed: built.append(seed) or eager(seed))
    seeds = [2 * s + 1 for s in range(9)]
    params, _ = engine.init(seeds)
    assert built == [], "9 members >= 8: the compiled draw, not one module at a time"
    for index in (0, 1, len(seeds) - 1):
        alone = eager(seeds[index])
        for stacked, single in zip(jax.tree.leaves(params), jax.tree.leaves(alone), strict=True):
            assert np.asarray(stacked).dtype == np.asarray(single).dtype
            np.testing.assert_array_equal(np.asarray(stacked)[index], np.asarray(single))
    first = np.asarray(jax.tree.leaves(params)[0])
    assert not np.array_equal(first[0], first[1]), "members must draw their own weights"


@pytest.mark.jax
def test_jax_vmap_members_that_do_not_fit_the_memory_budget_train_in_blocks():
    """One member's footprint from XLA's memory analysis decides the block; the blocks train the same members."""
    from jax_impl.engine import Engine

    config = small_config("float64")
    seeds = [1, 2, 3, 4, 5]
    whole = Engine(config, "vmap", memory_budget=10**12)
    reference = whole.train(seeds, progress=False)
    assert (whole.strategy, whole.map_batch) == ("vmap", None)  # everything fits: one vmapped program, as before
    per_member = whole.memory_estimate["per_member"]
    assert per_member > 0 and whole.memory_estimate["members"] == len(seeds)

    engine = Engine(config, "vmap", memory_budget=2 * per_member + 1)
    runs = engine.train(seeds, progress=False)
    assert (engine.strategy, engine.map_batch) == ("map", 2)
    for run, expected in zip(runs, reference):
        assert (run.seed, run.steps) == (expected.seed, expected.steps)
        for name, value in expected.weights.items():
            np.testing.assert_allclose(run.weights[name], value, rtol=1e-12, atol=1e-13, err_msg=name)
    # the next call chooses again: two members fit the same budget, so they are vmapped together
    engine.train(seeds[:2], progress=False)
    assert (engine.strategy, engine.map_batch) == ("vmap", None)
    assert len(engine._footprints) == 1  # one member's program was measured once for both calls
    # (a budget below one member's footprint trains one member at a time: tests/test_benchmarks_smoke.py)


@pytest.mark.jax
def test_jax_engine_reads_the_devices_memory_limit(monkeypatch):
    from jax_impl import engine as engine_module

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    assert engine_module.device_memory(jax.local_devices()[0]) is None  # XLA:CPU says nothing
    assert engine_module.device_memory(Device({"bytes_limit": 80 * 2**30, "bytes_in_use": 2**30})) == 79 * 2**30
    assert engine_module.device_memory(Device({"bytes_limit": 80 * 2**30})) == 80 * 2**30
    assert engine_module.device_memory(Device({})) is None
    # without a budget the engine takes MEMORY_FRACTION of the device's free memory
    monkeypatch.setattr(engine_module, "device_memory", lambda device=None: 4_000_000)
    engine = engine_module.Engine(small_config(), "vmap")
    engine.train([1, 2], progress=False)
    assert engine.memory_estimate["budget"] == int(engine_module.MEMORY_FRACTION * 4_000_000)
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes"):
        engine_module.Engine(small_config(), "vmap", memory_budget=0)
