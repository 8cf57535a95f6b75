"""SIGKILL at a random moment of a short run, then ``--resume``: bit-identical to an uninterrupted run.

For every model family that writes a run folder with ``cogmeta train`` (the tutorial meta-learner and the
meta seq2seq model, ``--preset seq2seq-me-cpu``) in both backends: one uninterrupted run, then the
same run killed with SIGKILL after a random delay (seeded, so a failure reproduces) and resumed with
``--resume`` until it finishes. The final weights must be equal bit for bit and ``metrics.csv`` row for
row. A kill can land anywhere: before the first write, during a checkpoint's write, between
checkpoints, or after the run finished; the run folder's design (docs/run-folder.md: step-0 checkpoint
before ``config.json``, write-then-rename, torn metrics lines dropped) makes every one resumable.

Slow tier (``--runslow``): each case starts 3-5 processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cogmeta.weights import read_safetensors

pytestmark = pytest.mark.slow

TUTORIAL = ["train", "--task", "gaussian", "--hidden-size", "8", "--batch-size", "8", "--steps", "400",
            "--checkpoint-every", "50", "--log-every", "10", "--eval-tasks", "50", "--summary-tasks", "0",
            "--no-figures", "--no-progress"]
SEQ2SEQ = ["train", "--preset", "seq2seq-me-cpu", "--hidden-size", "8", "--steps", "120",
           "--checkpoint-every", "20", "--log-every", "10", "--summary-tasks", "2", "--no-progress"]
WORKLOADS = {"tutorial": (TUTORIAL, "weights.safetensors"), "seq2seq": (SEQ2SEQ, "weights.safetensors")}


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "cogmeta", *args]


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _run(args: list[str]) -> None:
    result = subprocess.run(_command(args), env=_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def _resume_args(workload: str, run: Path, backend: str) -> list[str]:
    del workload  # every family resumes with `cogmeta train --resume`
    return ["train", "--resume", str(run), "--backend", backend, "--no-progress"]


def _rows(path: Path) -> list[str]:
    """metrics.csv without the wall-clock ``seconds`` rows (seq2seq logs one per resumed segment)."""
    return [line for line in path.read_text().splitlines() if ",seconds," not in line]


def _weights(run: Path, name: str) -> dict[str, np.ndarray]:
    return read_safetensors(run / name)[0]


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_a_killed_run_resumes_bit_identical(tmp_path, workload, backend):
    args, weights_name = WORKLOADS[workload]
    reference = tmp_path / "uninterrupted"
    began = time.perf_counter()
    _run([*args, "--backend", backend, "--out", str(reference)])
    duration = time.perf_counter() - began

    rng = random.Random(f"{workload}-{backend}")
    killed = tmp_path / "killed"
    kills = 0
    for _ in range(3):  # up to three kills at random moments, then let it finish
        fresh = not (killed / "config.json").exists()  # killed before its config was written: start again
        command = _command([*args, "--backend", backend, "--out", str(killed)] if fresh
                           else _resume_args(workload, killed, backend))
        process = subprocess.Popen(command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        if (killed / weights_name).exists():
            break
    if not (killed / weights_name).exists():
        if not (killed / "config.json").exists():  # killed before the run folder existed: start it again
            _run([*args, "--backend", backend, "--out", str(killed)])
        else:
            _run(_resume_args(workload, killed, backend))
    assert kills >= 1, "no kill landed: the delays were all longer than the run"

    expected, actual = _weights(reference, weights_name), _weights(killed, weights_name)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=f"{workload}/{backend}: {name}")
    assert _rows(killed / "metrics.csv") == _rows(reference / "metrics.csv")
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))
