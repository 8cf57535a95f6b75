"""The `cogmeta` command end to end: train, evaluate across frameworks, resume, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cogmeta.cli import main
from cogmeta.metrics_log import read_metrics

TINY = ["--hidden-size", "8", "--batch-size", "8", "--steps", "40", "--log-every", "10", "--eval-every", "20",
        "--eval-tasks", "50", "--checkpoint-every", "20", "--steps-per-call", "20", "--no-progress", "--summary-tasks", "0"]


def run_cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse's usage errors (exit code 2)
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_needs_no_framework(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("backend,other", [("torch", "jax"), ("jax", "torch")])
def test_train_then_evaluate_in_both_frameworks(tmp_path, capsys, backend, other):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--task", "coin", "--backend", backend, "--out", run, *TINY], capsys)
    assert code == 0, err
    for name in ("config.json", "weights.safetensors", "checkpoint.safetensors", "metrics.csv",
                 "figures/learning_curve.png", "figures/predictive.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["task"]["name"] == "coin"
    metrics = {metric for _, metric, _ in read_metrics(run / "metrics.csv")}
    assert {"loss", "grad_norm", "learning_rate", "heldout_kl"} <= metrics

    tables = {}
    for name in (backend, other):
        code, out, err = run_cli(["evaluate", run, "--backend", name, "--num-tasks", "300", "--no-figures"], capsys)
        assert code == 0, err
        assert "KL(Bayes||model)" in out and "mean KL over t = 0..9" in out
        tables[name] = out.splitlines()[2:-1]
        assert (run / f"evaluation-{name}.csv").is_file()
    kls = {name: np.array([float(line.split()[1]) for line in rows]) for name, rows in tables.items()}
    # Same weights in the other framework: the printed KLs agree to the table's 6 decimals (float32 forward).
    np.testing.assert_allclose(kls[backend], kls[other], atol=2e-6)


def test_resume_continues_to_more_steps(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    assert run_cli(["train", "--backend", "torch", "--out", run, *TINY], capsys)[0] == 0
    code, out, err = run_cli(["train", "--resume", run, "--backend", "torch", "--steps", "60", "--no-progress",
                              "--summary-tasks", "0", "--no-figures"], capsys)
    assert code == 0, err
    assert "trained 60 steps" in out
    steps = [step for step, metric, _ in read_metrics(run / "metrics.csv") if metric == "loss"]
    assert steps == sorted(set(steps)) and steps[-1] == 60


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--prior-std", "-1"], "prior_std"),
        (["--noise-std", "nan"], "argument --noise-std: must be a finite number"),
        (["--sequence-length", "0"], "sequence_length"),
        (["--alpha", "2"], "--alpha is not a parameter of the 'gaussian' task"),
        (["--hidden-size", "0"], "hidden_size"),
        (["--learning-rate", "-0.1"], "learning_rate"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, capsys, extra, message):
    code, _, err = run_cli(["train", "--backend", "torch", "--out", tmp_path / "run", *TINY, *extra], capsys)
    assert code == 2
    assert message in err
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    assert run_cli(["train", "--backend", "torch", "--out", run, *TINY, "--no-figures"], capsys)[0] == 0
    code, _, err = run_cli(["train", "--backend", "torch", "--out", run, *TINY], capsys)
    assert code == 2 and "already holds a run" in err


def test_evaluate_names_what_is_missing(tmp_path, capsys):
    code, _, err = run_cli(["evaluate", tmp_path], capsys)
    assert code == 2 and "config.json is missing" in err
