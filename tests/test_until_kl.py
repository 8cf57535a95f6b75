"""`cogmeta train --until-kl TARGET`: stop at the first held-out check below the target (time to quality).

The driver parts use a fake backend (numpy only) whose held-out KL falls step by step; the end-to-end
parts train a tiny real model in each framework with a loose target.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types

import numpy as np
import pytest

from cogmeta import GaussianMeanTask, ModelConfig, RunConfig, TrainConfig
from cogmeta.checkpoint import Checkpoint, load_checkpoint
from cogmeta.cli import main
from cogmeta.contract import StepMetrics
from cogmeta.metrics_log import read_metrics
from cogmeta.training import train
from cogmeta.weights import parameter_shapes

TRAIN = TrainConfig(steps=300, batch_size=4, log_every=10, checkpoint_every=100, eval_every=50, eval_tasks=20,
                    until_kl=0.01, until_kl_every=30)
CONFIG = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=4), train=TRAIN)


def fake_kl(step: int) -> float:
    """The fake model's held-out KL: 1 / (step + 1), below 0.01 from step 100 on."""
    return 1.0 / (step + 1)


class _FakeTrainer:
    """Counts steps (chunks of 25), weights are step-valued constants; records every ``run`` and ``run_checked``
    count; checks :func:`fake_kl` after every multiple of ``until_kl_every`` steps, as the trainers'
    ``run_checked`` does."""

    def __init__(self, config, checkpoint=None):
        self.config, self.step, self.chunk_size = config, 0 if checkpoint is None else checkpoint.step, 25
        self.counts: list[int] = []

    def run(self, count):
        self.counts.append(count)
        self.step += count
        return StepMetrics(np.ones(count), np.ones(count), np.full(count, 1e-3))

    def run_checked(self, count):
        assert count <= self.chunk_size
        self.counts.append(count)
        every, target, checks, start = self.config.train.until_kl_every, self.config.train.until_kl, [], self.step
        while self.step < start + count:
            self.step = min((self.step // every + 1) * every, start + count)
            if self.step % every == 0:
                checks.append((self.step, fake_kl(self.step)))
                if checks[-1][1] < target:
                    break
        done = self.step - start
        return StepMetrics(np.ones(done), np.ones(done), np.full(done, 1e-3)), checks

    def weights(self):
        return {name: np.full(shape, float(self.step), np.float32) for name, shape in parameter_shapes(self.config).items()}

    def checkpoint(self):
        zeros = {name: np.zeros_like(value) for name, value in self.weights().items()}
        return Checkpoint(self.step, self.weights(), zeros, zeros, "fake")

    def predictive(self, observations):
        return self.config.task.posterior_predictive(observations)


@pytest.fixture
def fake(monkeypatch):
    made: list[_FakeTrainer] = []

    def make_trainer(config, checkpoint=None, devices=None):
        made.append(_FakeTrainer(config, checkpoint))
        return made[-1]

    module = types.ModuleType("fake_launch")
    module.make_trainer = make_trainer
    monkeypatch.setattr("cogmeta.training.load_module", lambda name, what: module)
    monkeypatch.setattr("cogmeta.training.PredictiveWorkload.held_out",
                        lambda self, config, backend: lambda trainer: fake_kl(trainer.step))
    return made


def heldout_rows(run):
    return [(step, value) for step, metric, value in read_metrics(run / "metrics.csv") if metric == "heldout_kl"]


def test_stops_at_the_first_check_below_the_target(tmp_path, fake):
    run = tmp_path / "run"
    result = train(CONFIG, run, "fake", progress=False, figures=False)
    # Checks at 30, 60, 90, 120: 1/121 < 0.01 is the first one below the target.
    assert result.steps == 120 and result.until_kl_step == 120
    assert result.until_kl_value == pytest.approx(fake_kl(120)) and result.until_kl_seconds >= 0
    assert not {30, 60, 90} & set(np.cumsum(fake[0].counts).tolist()), "the checks run inside the calls"
    assert max(fake[0].counts) <= 25
    steps = [step for step, _ in heldout_rows(run)]
    assert steps == [0, 30, 50, 60, 90, 100, 120]
    assert load_checkpoint(run / "checkpoint.safetensors", CONFIG).step == 120
    assert (run / "weights.safetensors").is_file()
    loss_steps = [step for step, metric, _ in read_metrics(run / "metrics.csv") if metric == "loss"]
    assert loss_steps[-1] == 120, "the last window is flushed at the stop"
    assert json.loads((run / "config.json").read_text())["train"]["until_kl"] == 0.01


def test_a_target_never_reached_trains_all_steps(tmp_path, fake):
    config = dataclasses.replace(CONFIG, train=dataclasses.replace(TRAIN, until_kl=1e-9))
    result = train(config, tmp_path / "run", "fake", progress=False, figures=False)
    assert result.steps == 300 and result.until_kl_step is None and result.until_kl_seconds is None
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors", config).step == 300


def test_without_a_target_nothing_changes(tmp_path, fake):
    config = dataclasses.replace(CONFIG, train=dataclasses.replace(TRAIN, until_kl=None))
    result = train(config, tmp_path / "run", "fake", progress=False, figures=False)
    assert result.steps == 300 and result.until_kl_step is None
    assert [step for step, _ in heldout_rows(tmp_path / "run")] == list(range(0, 301, 50))


def test_resume_honours_the_stored_target(tmp_path, fake):
    run = tmp_path / "run"
    short = dataclasses.replace(CONFIG, train=dataclasses.replace(TRAIN, steps=60))
    assert train(short, run, "fake", progress=False, figures=False).until_kl_step is None
    stored = RunConfig.load(run / "config.json")
    assert stored.train.until_kl == 0.01
    longer = dataclasses.replace(stored, train=dataclasses.replace(stored.train, steps=300))
    result = train(longer, run, "fake", resume=True, progress=False, figures=False)
    assert result.steps == 120 and result.until_kl_step == 120


@pytest.mark.parametrize("value", [0, 0.0, -1e-3, math.nan, math.inf])
def test_invalid_targets_are_rejected(value):
    with pytest.raises(ValueError, match=r"^TrainConfig\.until_kl must be"):
        TrainConfig(until_kl=value)


def test_invalid_check_period_is_rejected():
    with pytest.raises(ValueError, match=r"^TrainConfig\.until_kl_every must lie in \[1, inf\]"):
        TrainConfig(until_kl=1e-3, until_kl_every=0)


def test_target_round_trips_through_json():
    config = RunConfig(train=TrainConfig(until_kl=1e-3, until_kl_every=50))
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert RunConfig.from_dict({"train": {"steps": 10}}).train.until_kl is None  # older config.json files load


@pytest.mark.parametrize("value", ["0", "-0.001", "nan"])
def test_cli_rejects_a_bad_target_in_one_line(tmp_path, capsys, value):
    try:
        code = main(["train", "--until-kl", value, "--out", str(tmp_path / "run"), "--no-progress"])
    except SystemExit as stop:  # refused while parsing (NaN is not a number of any range)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    expected = ("cogmeta train: error: argument --until-kl: must be a finite number" if value == "nan"  # parse time
                else "cogmeta: error: TrainConfig.until_kl must be")
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert not (tmp_path / "run").exists()


TINY = ["--task", "gaussian", "--hidden-size", "16", "--batch-size", "32", "--steps", "3000", "--learning-rate", "1e-2",
        "--log-every", "20", "--eval-every", "1000", "--eval-tasks", "200", "--checkpoint-every", "1000",
        "--until-kl", "0.05", "--until-kl-every", "20", "--no-progress", "--summary-tasks", "0"]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_real_run_stops_early_and_is_complete(tmp_path, capsys, backend):
    pytest.importorskip(backend)
    run = tmp_path / "run"
    code = main(["train", "--backend", backend, "--out", str(run), *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "time to quality: held-out mean KL" in out and "< 0.05 nats at step" in out, out
    step = int(out.split(" nats at step ")[1].split(",")[0])
    assert 0 < step < 3000 and step % 20 == 0
    # the breakdown of the training seconds: its parts are positive and add up to no more than the total
    seconds = float(out.split(" s of training")[0].split("after ")[-1])
    breakdown = re.search(r"of the ([\d.]+) s: building the trainer ([\d.]+) s.*first training call ([\d.]+) s, "
                          r"later calls ([\d.]+) s, held-out checks ([\d.]+) s .*?, logging and checkpoints ([\d.]+) s", out)
    assert breakdown is not None, out
    total, built, first, later, checks, rest = (float(value) for value in breakdown.groups())
    # (printed to 0.01 s: a tiny model's checks may round to 0)
    assert total == seconds and min(built, first, later, checks, rest) >= 0 and built + first + later > 0
    assert abs(built + first + later + checks + rest - total) <= 0.03, out
    config = RunConfig.load(run / "config.json")
    assert config.train.until_kl == 0.05
    if backend == "jax":
        assert config.jax.steps_per_call == 500, "the checks run inside the calls, which need not end at them"
        # no executable store in the test process (conftest: COGMETA_JAX_CACHE=off): compiled ahead of the first call
        assert "; the training program compiled, or loaded from JAX's cache, ahead of the first call" in out, out
    else:
        assert "the training program" not in out, "PyTorch compiles nothing ahead"
    for name in ("weights.safetensors", "checkpoint.safetensors", "metrics.csv", "figures/learning_curve.png",
                 "figures/predictive.png"):
        assert (run / name).is_file(), name
    assert load_checkpoint(run / "checkpoint.safetensors", config).step == step
    rows = heldout_rows(run)
    assert rows[-1][0] == step and rows[-1][1] < 0.05 and all(value >= 0.05 for _, value in rows[:-1])
    assert [s for s, _ in rows] == list(range(0, step + 1, 20)), "a row for every check"
    code = main(["evaluate", str(run), "--num-tasks", "300", "--no-figures"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "mean KL over t" in out


def test_a_real_run_that_never_reaches_the_target_says_so(tmp_path, capsys):
    pytest.importorskip("torch")
    args = [a if a != "0.05" else "1e-9" for a in TINY]
    args[args.index("--steps") + 1] = "40"
    code = main(["train", "--backend", "torch", "--out", str(tmp_path / "run"), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "never fell below 1e-09 nats in 40 steps" in out
    assert (tmp_path / "run" / "weights.safetensors").is_file()
