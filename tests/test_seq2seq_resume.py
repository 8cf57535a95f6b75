"""Meta seq2seq runs get the run folder's guarantees: checkpoints, exact resume, `cogmeta evaluate`.

- per backend: N episodes uninterrupted == N/2, then `--resume` to N (weights and metrics rows, bit for bit;
  the ``seconds`` rows are wall-clock times and are left out of the comparison);
- a checkpoint written by one backend resumes in the other (dropout 0, float64: the frameworks draw
  different dropout noise) to within ``CROSS_RTOL`` / ``CROSS_ATOL`` of the uninterrupted run;
- a resume with a different config (but for the number of steps, one episode each) is refused, naming the field;
- ``cogmeta evaluate RUN`` prints a seq2seq run's accuracy table.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.checkpoint import load_checkpoint
from cogmeta.cli import main
from cogmeta.config import RunConfig
from cogmeta.experiments.meta_seq2seq import (
    load_run_checkpoint,
    load_weights,
    train_run,
)
from cogmeta.experiments.meta_seq2seq_shapes import parameter_shapes
from cogmeta.metrics_log import read_metrics
from cogmeta.presets import preset

EPISODES = 12
#: torch checkpoint -> JAX (and the reverse) vs. the uninterrupted run, float64 without dropout
CROSS_RTOL, CROSS_ATOL = 1e-7, 1e-9
#: a tiny ME config as CLI options; checkpoints every log_every = 3 episodes
TINY = ["--preset", "seq2seq-me-cpu", "--hidden-size", "8", "--log-every", "3", "--checkpoint-every", "3",
        "--steps-per-call", "3", "--decay-every", "5", "--no-progress", "--summary-tasks", "0"]


def tiny(episodes: int = EPISODES, **train) -> RunConfig:
    """The config of ``TINY`` with ``--steps episodes`` (and ``train`` fields changed)."""
    config = preset("seq2seq-me-cpu")
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, hidden_size=8),
        train=dataclasses.replace(config.train, **{"steps": episodes, "log_every": 3, "checkpoint_every": 3,
                                                   "decay_every": 5, **train}),
        jax=dataclasses.replace(config.jax, steps_per_call=3))


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(run):
    return [row for row in read_metrics(run / "metrics.csv") if row[1] != "seconds"]


def weights(run, config):
    return load_weights(run / "weights.safetensors", config)


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow)])  # jax: 14 s of compiling
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, capsys, backend):
    pytest.importorskip(backend)
    full, part = tmp_path / "full", tmp_path / "part"
    for run, episodes in ((full, EPISODES), (part, EPISODES // 2)):
        code, _, err = run_cli(["train", "--backend", backend, "--out", run, "--steps", episodes, *TINY], capsys)
        assert code == 0, err
    config = tiny()
    assert RunConfig.load(full / "config.json") == config  # TINY is tiny()
    checkpoint = load_run_checkpoint(part / "checkpoint.safetensors", config)
    assert checkpoint.step == EPISODES // 2 and checkpoint.framework == backend
    assert list(checkpoint.exp_avg) == list(parameter_shapes(config))
    # the backend defaults to the checkpoint's; the CLI options other than --steps come from the run
    code, out, err = run_cli(["train", "--resume", part, "--steps", EPISODES, "--no-progress", "--summary-tasks", "0"],
                             capsys)
    assert code == 0, err
    assert f"with {backend}" in out
    assert rows(part) == rows(full) and [s for s, m, _ in rows(full) if m == "loss"] == [3, 6, 9, 12]
    a, b = weights(full, config), weights(part, config)
    assert all(np.array_equal(a[name], b[name]) for name in a)
    final = load_checkpoint(part / "checkpoint.safetensors", shapes=parameter_shapes(config))
    assert final.step == EPISODES and all(np.array_equal(final.params[n], a[n]) for n in a)


@pytest.mark.parametrize("first, second", [pytest.param("torch", "jax", marks=pytest.mark.slow), ("jax", "torch")])
def test_checkpoint_resumes_in_the_other_backend(tmp_path, first, second):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    config = tiny(dtype="float64")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.0))
    full, part = tmp_path / "full", tmp_path / "part"
    train_run(config, full, first, progress=False)
    train_run(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=EPISODES // 2)), part, first,
              progress=False)
    train_run(config, part, second, progress=False, resume=True)
    assert load_run_checkpoint(part / "checkpoint.safetensors", config).framework == second
    a, b = weights(full, config), weights(part, config)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=CROSS_RTOL, atol=CROSS_ATOL, err_msg=name)
    (steps_a, losses_a), (steps_b, losses_b) = ([[s for s, m, _ in r if m == "loss"], [v for _, m, v in r if m == "loss"]]
                                                for r in (rows(full), rows(part)))
    assert steps_a == steps_b
    np.testing.assert_allclose(losses_b, losses_a, rtol=CROSS_RTOL, atol=CROSS_ATOL)


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    train_run(tiny(6), run, "torch", progress=False)
    before = (run / "checkpoint.safetensors").read_bytes()
    code, _, err = run_cli(["train", "--resume", run, "--steps", 12, "--hidden-size", 16, "--no-progress"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--hidden-size 16 (the run has model.hidden_size = 8)" in err
    with pytest.raises(ValueError, match="model.dropout"):
        bigger = tiny(12)
        train_run(dataclasses.replace(bigger, model=dataclasses.replace(bigger.model, dropout=0.3)), run, "torch",
                  progress=False, resume=True)
    code, _, err = run_cli(["train", "--resume", run, "--no-progress"], capsys)  # nothing left to train
    assert code == 2 and "6 episodes done" in err
    code, _, err = run_cli(["train", "--resume", tmp_path / "none", "--no-progress"], capsys)
    assert code == 2 and "does not exist" in err
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_checkpoint_every_must_be_a_multiple_of_log_every(tmp_path, capsys):
    with pytest.raises(ValueError, match="checkpoint_every must be a multiple of train.log_every"):
        tiny(checkpoint_every=4)
    with pytest.raises(ValueError, match="checkpoint_every"):  # 0 ("every log_every") is gone: give the interval
        tiny(checkpoint_every=0)
    assert tiny(checkpoint_every=6).train.checkpoint_every == 6 and tiny().train.checkpoint_every == 3
    code, _, err = run_cli(["train", *TINY, "--checkpoint-every", 4, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "checkpoint_every" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cogmeta_evaluate_reads_a_seq2seq_run(tmp_path, capsys, backend):
    pytest.importorskip("torch")
    pytest.importorskip(backend)
    run = tmp_path / "run"
    train_run(tiny(6), run, "torch", progress=False)
    code, out, err = run_cli(["evaluate", run, "--backend", backend], capsys)
    assert code == 0, err
    assert f"evaluated with {backend}" in out and "generalization" in out and "retrieval" in out
    assert (run / f"evaluation-{backend}.txt").is_file()
    code, _, err = run_cli(["evaluate", run, "--backend", backend, "--seed", "3"], capsys)
    assert code == 2 and "--seed" in err  # its held-out episodes are fixed: a seed would be ignored


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path, backend):
    """A folder with config.json and metrics.csv but no checkpoint (a run killed that early by a cogmeta
    that wrote config.json first) resumes from episode 0 and ends as the uninterrupted run; a new run
    writes its step-0 checkpoint before config.json, so it never leaves such a folder."""
    config = tiny()
    reference = train_run(config, tmp_path / "reference", backend, progress=False).run_dir
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    config.save(orphan / "config.json")
    (orphan / "metrics.csv").write_text("step,metric,value\n3,loss,1.0\n")
    train_run(config, orphan, backend, progress=False, resume=True)
    for name, value in weights(reference, config).items():
        np.testing.assert_array_equal(weights(orphan, config)[name], value, err_msg=name)
    assert rows(orphan) == rows(reference)


def test_the_step_zero_checkpoint_is_written_before_the_config(tmp_path, monkeypatch):
    import cogmeta.experiments.meta_seq2seq as module

    order = []
    save_checkpoint, save_config = module.save_run_checkpoint, RunConfig.save
    monkeypatch.setattr(module, "save_run_checkpoint", lambda path, *a: (order.append("checkpoint"),
                                                                          save_checkpoint(path, *a))[1])
    monkeypatch.setattr(RunConfig, "save", lambda self, path: (order.append("config"), save_config(self, path))[1])
    train_run(tiny(), tmp_path / "run", "torch", progress=False)
    assert order[:2] == ["checkpoint", "config"]
    assert load_run_checkpoint(tmp_path / "run" / "checkpoint.safetensors", tiny()).step == EPISODES


def test_seeds_train_one_run_folder_per_seed_and_report_the_spread(tmp_path, capsys):
    """``--seeds 2``: OUT/seed-3 and OUT/seed-4 hold exactly the runs of ``--seed 3`` and ``--seed 4``, and
    the printed mean +- sem is that of their two accuracies."""
    from cogmeta.experiments.meta_seq2seq import evaluate_run
    from cogmeta.experiments.seeds import spread

    common = ["train", *TINY, "--steps", EPISODES, "--backend", "torch", "--summary-tasks", 4]
    code, out, err = run_cli([*common, "--seed", 3, "--seeds", 2, "--out", tmp_path / "sweep"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*common, "--seed", 4, "--out", tmp_path / "single"], capsys)
    assert code == 0, err
    config = tiny(seed=4)
    for name, value in weights(tmp_path / "single", config).items():
        np.testing.assert_array_equal(weights(tmp_path / "sweep" / "seed-4", config)[name], value, err_msg=name)
    accuracies = [evaluate_run(tmp_path / "sweep" / f"seed-{s}", "torch", num_episodes=4)[0] for s in (3, 4)]
    generalization = [accuracy.generalization for accuracy in accuracies]
    assert f"generalization: {spread(generalization).format(4)} (mean +- sem over 2 seeds" in out
    table = (tmp_path / "sweep" / "seeds.csv").read_text().splitlines()
    assert table[0] == "seed,generalization,retrieval"  # percent
    assert [row.split(",")[0] for row in table[1:3]] == ["3", "4"]
    assert [[float(v) for v in row.split(",")[1:]] for row in table[1:3]] == [
        [accuracy.generalization, accuracy.retrieval] for accuracy in accuracies]


def test_seeds_and_resume_exclude_each_other(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", tmp_path, "--seeds", 2], capsys)
    assert code == 2 and "--seeds and --resume" in err
