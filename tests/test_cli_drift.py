"""`cogmeta train/evaluate/sweep --task drift`: a task added in one core file and one transform per backend
runs through the generic CLI, with its own flag (``--drift-std``) generated from the dataclass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cogmeta.cli import main

TINY = ["--hidden-size", "8", "--batch-size", "8", "--steps", "20", "--log-every", "10", "--eval-every", "10",
        "--eval-tasks", "50", "--checkpoint-every", "10", "--steps-per-call", "10", "--no-progress", "--summary-tasks", "0"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("backend,other", [("torch", "jax"), ("jax", "torch")])
def test_train_and_evaluate_drift_in_both_frameworks(tmp_path, capsys, backend, other):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--task", "drift", "--backend", backend, "--drift-std", "0.5",
                              "--sequence-length", "6", "--out", run, *TINY], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["task"] == {
        "name": "drift", "prior_mean": 0.0, "prior_std": 1.0, "noise_std": 1.0, "drift_std": 0.5, "sequence_length": 6}
    assert (run / "figures" / "predictive.png").is_file()
    kls = {}
    for name in (backend, other):
        code, out, err = run_cli(["evaluate", run, "--backend", name, "--num-tasks", "200", "--no-figures"], capsys)
        assert code == 0, err
        assert "drift task" in out and "mean KL over t = 0..5" in out
        kls[name] = np.array([float(line.split()[1]) for line in out.splitlines()[2:-1]])
    assert kls[backend].shape == (6,) and np.all(kls[backend] >= 0)
    np.testing.assert_allclose(kls[backend], kls[other], atol=2e-6)


def test_drift_flag_is_refused_for_another_task(tmp_path, capsys):
    code, out, err = run_cli(["train", "--task", "gaussian", "--drift-std", "0.5", "--out", tmp_path / "run", *TINY], capsys)
    assert code != 0 and "drift-std" in err


@pytest.mark.slow  # 10 s of JAX compiling; the sweep itself is tested on every family in test_sweep.py
def test_sweep_drift(tmp_path, capsys):
    pytest.importorskip("jax")
    out_dir = tmp_path / "sweep"
    code, out, err = run_cli(["sweep", "--task", "drift", "--backend", "jax", "--seeds", "2", "--out", out_dir, *TINY[:-2]], capsys)
    assert code == 0, err
    assert (out_dir / "summary.csv").is_file()
    assert json.loads((out_dir / "member-001" / "config.json").read_text())["task"]["name"] == "drift"
