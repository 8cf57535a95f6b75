"""Meta seq2seq end to end: `cogmeta train` / `cogmeta evaluate` on the seq2seq family, the `cogmeta seq2seq`
tools, the add-jump CPU smoke run, bad input.

Correctness of the model itself is checked against the other framework in parity_tests/test_seq2seq.py
and against the SCAN interpretation function in tests/test_scan.py; here the runs are tiny and check
the plumbing: files written, accuracy counted over the right items, errors that say what is wrong.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cogmeta.cli import main
from cogmeta.config import RunConfig
from cogmeta.experiments.meta_seq2seq import (
    Accuracy,
    evaluate_run,
    load_run_checkpoint,
    load_weights,
    save_weights,
    train_run,
)
from cogmeta.experiments.meta_seq2seq_shapes import parameter_shapes
from cogmeta.io import atomic_save_safetensors
from cogmeta.metrics_log import read_metrics
from cogmeta.presets import PRESETS, preset
from cogmeta.schedules import learning_rate
from cogmeta.tasks import scan
from cogmeta.tasks.scan_episodes import ScanEpisodeTask
from cogmeta.vocabulary import VocabularyError
from cogmeta.weights import WeightsError, read_safetensors

#: a checkpoint every log row (the old configs' checkpoint_every 0)
TINY = ["--steps", "12", "--hidden-size", "8", "--log-every", "4", "--checkpoint-every", "4", "--steps-per-call", "4",
        "--no-progress"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny(name: str, **model) -> RunConfig:
    config = preset(name)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_size=8, **model),
                               train=dataclasses.replace(config.train, steps=6, log_every=3, checkpoint_every=3),
                               jax=dataclasses.replace(config.jax, steps_per_call=3))


@pytest.fixture(scope="module")
def me_run(tmp_path_factory):
    """A tiny ME run trained with torch."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("me") / "run"
    train_run(tiny("seq2seq-me-cpu"), out, "torch", progress=False)
    return out


def test_cli_train_writes_a_run_and_evaluates(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--preset", "seq2seq-me-cpu", "--backend", "torch", "--out", run,
                              "--summary-tasks", "5", *TINY], capsys)
    assert code == 0, err
    assert "generalization" in out and "retrieval" in out
    for name in ("config.json", "weights.safetensors", "metrics.csv", "evaluation-torch.txt"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())  # the one RunConfig; the vocabularies are the weights'
    assert sorted(config) == ["jax", "model", "task", "torch", "train"]
    assert config["model"]["family"] == "seq2seq" and config["model"]["hidden_size"] == 8
    base = preset("seq2seq-me-cpu")  # the preset with exactly the options given
    assert RunConfig.load(run / "config.json") == dataclasses.replace(
        base, model=dataclasses.replace(base.model, hidden_size=8),
        train=dataclasses.replace(base.train, steps=12, log_every=4, checkpoint_every=4),
        jax=dataclasses.replace(base.jax, steps_per_call=4))
    _, metadata = read_safetensors(run / "weights.safetensors")
    assert json.loads(metadata["action_vocabulary"])[:3] == ["<pad>", "<sos>", "<eos>"]
    steps = [s for s, m, _ in read_metrics(run / "metrics.csv") if m == "loss"]
    assert steps == [4, 8, 12]
    code, out, err = run_cli(["evaluate", run, "--num-tasks", "4"], capsys)
    assert code == 0, err
    # 4 episodes x (20 novel + 3 support) queries
    assert "generalization" in out and "      80" in out and "      12" in out


def test_accuracy_counts_whole_sequences():
    accuracy = Accuracy()
    accuracy.add(np.array([True, False, True, True]), np.array([False, False, True, False]))
    assert (accuracy.generalization_correct, accuracy.generalization_total) == (2, 3)
    assert (accuracy.retrieval_correct, accuracy.retrieval_total) == (1, 1)
    assert accuracy.generalization == pytest.approx(200 / 3)


def test_jax_evaluates_torch_weights_identically(me_run):
    pytest.importorskip("jax")
    torch_acc, _ = evaluate_run(me_run, "torch", num_episodes=10)
    jax_acc, _ = evaluate_run(me_run, "jax", num_episodes=10)
    assert dataclasses.asdict(jax_acc) == dataclasses.asdict(torch_acc)


def test_translate_and_figure(me_run, capsys):
    code, out, err = run_cli(["seq2seq", "translate", me_run, "dax wif", "lug", "--support", "dax=RED", "wif=BLUE"],
                             capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("dax wif -> ") and lines[1].startswith("lug -> ")
    code, out, err = run_cli(["seq2seq", "figure", me_run], capsys)
    assert code == 0, err
    assert (me_run / "figures" / "attention-torch.png").stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    (["dax blicket"], "unknown command word 'blicket'"),
    (["  "], "empty command"),
    (["dax " * 7], "more than the maximum 6"),
    (["dax", "--support", "dax=PURPLE"], "unknown action word 'PURPLE'"),
    (["dax", "--support", "dax"], "must look like COMMAND=ACTIONS"),
])
def test_translate_bad_input(me_run, capsys, args, message):
    code, _, err = run_cli(["seq2seq", "translate", me_run, *args], capsys)
    assert code == 2 and message in err, err


def test_vocabulary_mismatch_between_checkpoint_and_spec(me_run, tmp_path):
    scan_config = tiny("seq2seq-add-jump-cpu")
    with pytest.raises(VocabularyError, match="command vocabulary mismatch"):
        load_weights(me_run / "weights.safetensors", scan_config)
    # the vocabularies live in the weights' metadata (config.json has no vocabulary section): an edited one is caught
    tensors, metadata = read_safetensors(me_run / "weights.safetensors")
    metadata["action_vocabulary"] = json.dumps(json.loads(metadata["action_vocabulary"])[:-1])
    atomic_save_safetensors(tmp_path / "weights.safetensors", tensors, metadata)
    with pytest.raises(VocabularyError, match="action vocabulary mismatch"):
        load_weights(tmp_path / "weights.safetensors", tiny("seq2seq-me-cpu"))


def test_weights_that_do_not_fit(tmp_path):
    config = tiny("seq2seq-me-cpu")
    shapes = parameter_shapes(config)
    tensors = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    tensors["readout.bias"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError, match=r"'readout.bias' has shape \(3,\), expected \(7,\)"):
        save_weights(tmp_path / "w.safetensors", tensors, config, "torch")
    del tensors["readout.bias"]
    with pytest.raises(WeightsError, match="missing tensor 'readout.bias'"):
        save_weights(tmp_path / "w.safetensors", tensors, config, "torch")


def test_no_memory_ablation_trains_with_jax(tmp_path, capsys):
    """The ablation has no memory tensors; trained by JAX (the default run's JAX training check), read by torch."""
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    config = tiny("seq2seq-me-cpu", memory=False)
    assert not any(name.startswith(("output_", "memory_")) for name in parameter_shapes(config))
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--preset", "seq2seq-me-cpu", "--backend", "jax", "--no-memory",
                              "--out", run, "--summary-tasks", "0", *TINY], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["memory"] is False
    code, out, err = run_cli(["evaluate", run, "--backend", "torch", "--num-tasks", "2"], capsys)
    assert code == 0, err


def _teacher_forced_logits(model, backend: str, batches: list[dict]) -> list[np.ndarray]:
    """Eval-mode (no dropout) teacher-forced logits of a ``load_model`` model, one array per batch."""
    if backend == "torch":
        from torch_impl.seq2seq import to_tensors

        model.eval()
        return [model(to_tensors(b))["logits"].detach().numpy() for b in batches]
    import jax
    from flax import nnx

    from jax_impl.seq2seq import to_arrays

    graphdef, params = nnx.split(model, nnx.Param)
    forward = jax.jit(lambda params, batch: nnx.merge(graphdef, params)(batch)["logits"])
    return [np.asarray(forward(params, to_arrays(b))) for b in batches]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_no_memory_model_ignores_the_support_set(backend):
    """The ablation must not see the support (Lake's WrapperEncoderRNN encodes the query only): the same
    queries with another episode's support (or none, in torch) give bit-identical logits, and the add-jump
    test queries the same greedy answers under another support; the memory model's logits do change with
    the support (so the swap is a real one; checked in torch, where it costs no compilation)."""
    pytest.importorskip(backend)
    from cogmeta.experiments.meta_seq2seq import Decoder, decode_episode
    from cogmeta.tasks.scan_episodes import Episode

    task = ScanEpisodeTask("add_jump", num_query=6)
    rng = np.random.default_rng(0)
    a, b = task.sample(rng), task.sample(rng)
    assert a.mapping != b.mapping and a.support != b.support
    with_support = [task.encode(Episode(support, a.query, a.query_in_support)).as_dict()
                    for support in (a.support, b.support, ())]
    test = task.test_episode()
    queries, flags = test.query[:32], test.query_in_support[:32]
    swapped = dict(zip(scan.PRIMITIVES, ("WALK", "LOOK", "JUMP", "RUN")))  # run <-> jump
    for memory in (False, True) if backend == "torch" else (False,):
        config = dataclasses.replace(tiny("seq2seq-add-jump-cpu", memory=memory), task=task)
        weights = {name: np.random.default_rng(1).normal(0.0, 0.5, shape).astype(np.float32)
                   for name, shape in parameter_shapes(config).items()}  # given weights: no jitted init in JAX
        decoder = Decoder(config, weights, backend)  # given weights: load_model draws none
        # JAX compiles once per support shape: the empty support is checked in torch only
        count = 3 if backend == "torch" and not memory else 2
        logits = _teacher_forced_logits(decoder.model, backend, with_support[:count])
        if memory:
            assert not np.array_equal(logits[0], logits[1])
            continue
        assert all(np.array_equal(logits[0], other) for other in logits[1:])
        true_meanings, _ = decode_episode(decoder, task, Episode(test.support, queries, flags))
        other = tuple(((w,), (swapped[w],)) for w in scan.PRIMITIVES)
        assert decode_episode(decoder, task, Episode(other, queries, flags))[0] == true_meanings


def test_add_jump_cpu_smoke_run(tmp_path):
    """Train the add-jump CPU preset for a few episodes, then score the full 7,706-command test set."""
    pytest.importorskip("torch")
    config = tiny("seq2seq-add-jump-cpu")
    run = tmp_path / "run"
    train_run(config, run, "torch", progress=False)
    accuracy, _ = evaluate_run(run, "torch")
    assert accuracy.generalization_total == 7_706 and accuracy.retrieval_total == 0
    assert 0 <= accuracy.generalization_correct <= 7_706


@pytest.mark.slow
def test_add_jump_cpu_smoke_run_jax(tmp_path):
    pytest.importorskip("jax")
    run = tmp_path / "run"
    train_run(tiny("seq2seq-add-jump-cpu"), run, "jax", progress=False)
    accuracy, _ = evaluate_run(run, "jax")
    assert accuracy.generalization_total == 7_706


def test_existing_run_folder_is_not_overwritten(me_run, tmp_path):
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_run(tiny("seq2seq-me-cpu"), me_run, "torch", progress=False)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not empty .*thesis.tex"):
        train_run(tiny("seq2seq-me-cpu"), foreign, "torch", progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]


def test_presets_and_schedule():
    paper = PRESETS["seq2seq-add-jump-paper"]
    assert paper.model.hidden_size == 200 and paper.train.steps == 10_000 and paper.model.family == "seq2seq"
    train = PRESETS["seq2seq-me-paper"].train
    assert [learning_rate(k, train.learning_rate, train.steps, train.schedule, train.final_lr_fraction,
                          train.decay_every, train.decay_factor)
            for k in (0, 4_999, 5_000, 9_999)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    # the one trainer's recipe: one episode per Adam step, Lake's step decay, the run's clip, seed and dtype
    recipe = dataclasses.replace(PRESETS["seq2seq-me-cpu"], train=dataclasses.replace(
        PRESETS["seq2seq-me-cpu"].train, seed=3, dtype="float64", clip_norm=5.0, log_every=10, checkpoint_every=30))
    config = recipe.train
    assert (config.steps, config.batch_size, config.schedule, config.optimizer) == (5_000, 1, "step", "adam")
    assert (config.decay_every, config.decay_factor, config.clip_norm) == (4_000, 0.1, 5.0)
    assert (config.seed, config.dtype, config.log_every, config.checkpoint_every) == (3, "float64", 10, 30)
    assert (config.adam_beta1, config.adam_beta2, config.adam_eps) == (0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="seed"):
        dataclasses.replace(train, seed=2**31)
    # the family's rules: one episode per update, no held-out KL target
    with pytest.raises(ValueError, match="batch_size must be 1"):
        dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, batch_size=2))
    with pytest.raises(ValueError, match="until_kl"):
        dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, until_kl=0.01))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("seq2seq-me-gpu")
    with pytest.raises(ValueError, match="ScanEpisodeTask.num_query"):
        ScanEpisodeTask(num_query=0)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_objective_has_no_sampler(backend):
    """Episodes come from the host stream: ``Trainer.run`` (which would sample) says to use ``run_on``."""
    pytest.importorskip(backend)
    from cogmeta.backends import load_module

    module = load_module(backend, "seq2seq")
    trainer = module.make_trainer(tiny("seq2seq-me-cpu"))
    with pytest.raises(NotImplementedError, match=r"run_on\(episode_batches"):
        trainer.run(1)
    assert trainer.step == 0


def test_non_finite_step_stops_the_run(tmp_path, monkeypatch):
    """A non-finite loss stops training with an error naming the episode; the last checkpoint stays."""
    pytest.importorskip("torch")
    import torch_impl.seq2seq as tseq

    original = tseq.Seq2SeqObjective.loss

    def poisoned(self, model, batch, step, member):
        loss, aux = original(self, model, batch, step, member)
        return (loss * float("nan") if step == 4 else loss), aux

    monkeypatch.setattr(tseq.Seq2SeqObjective, "loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="non-finite loss or gradient at episode 4"):
        train_run(tiny("seq2seq-me-cpu"), run, "torch", progress=False)
    assert load_run_checkpoint(run / "checkpoint.safetensors", tiny("seq2seq-me-cpu")).step == 3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_mutual_exclusivity_bar(tmp_path, backend):
    """The reproduction bar: >= 99 % query accuracy with the CPU preset (paper: 100 %). ~3-6 min per backend."""
    pytest.importorskip(backend)
    run = tmp_path / "run"
    train_run(preset("seq2seq-me-cpu"), run, backend, progress=False)
    accuracy, _ = evaluate_run(run, backend, num_episodes=200)
    assert accuracy.generalization >= 99.0, accuracy.table()


def test_seq2seq_core_imports_without_frameworks(tmp_path):
    """The spec, drivers and CLI of meta-seq2seq import without torch/jax; a missing backend names its extra."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, importlib.abc

        class RefuseFrameworks(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "jax", "jaxlib", "flax", "optax", "chex"):
                    raise ImportError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, RefuseFrameworks())
        import cogmeta.vocabulary, cogmeta.tasks.scan, cogmeta.tasks.scan_episodes, cogmeta.cli_seq2seq
        import cogmeta.experiments.meta_seq2seq, cogmeta.experiments.meta_seq2seq_shapes
        import cogmeta.config, cogmeta.families, cogmeta.presets
        from cogmeta.cli import main
        code = main(["train", "--preset", "seq2seq-me-cpu", "--backend", "jax", "--out", r"{tmp_path / 'run'}",
                     "--steps", "1"])
        assert not any(name.split(".")[0] in ("torch", "jax") for name in sys.modules)
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "cogmeta[jax]" in result.stderr
