"""PyTorch data parallelism (gloo, 2 processes started by torchrun) vs single-process training.

The two-process run is the real command, ``torchrun --nproc-per-node=2 -m cogmeta train --backend torch``
(the tutorial task and RL²'s bandits); the reference is the single-process ``Trainer`` on the same config in
this process. Every rank draws the global batch of step k from the run's (seed, k) generator and keeps its
half, the ranks average the gradients, so float64 parameters, Adam moments and logged losses must agree to rounding (1e-12
normalized). Bad launches (no rendezvous address, configs that differ between ranks, an indivisible
batch, a peer that never arrives) must end with a clear error, never hang: every subprocess has a
timeout and is killed with its process group when it outlives it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from cogmeta import cli  # noqa: E402
from cogmeta.checkpoint import load_checkpoint  # noqa: E402
from cogmeta.config import RunConfig  # noqa: E402
from cogmeta.metrics_log import read_metrics  # noqa: E402
from cogmeta.runs import RunDir  # noqa: E402
from cogmeta.weights import load_weights  # noqa: E402
from tests._distributed_workers.launch import free_port, run, torchrun  # noqa: E402

pytestmark = pytest.mark.torch

TOLERANCE = 1e-12
STEPS, LOG_EVERY = 200, 50
ARGS = ["--task", "gaussian", "--backend", "torch", "--dtype", "float64", "--steps", str(STEPS), "--batch-size", "8",
        "--hidden-size", "8", "--learning-rate", "0.01", "--clip-norm", "0.5", "--sequence-length", "6",
        "--log-every", str(LOG_EVERY), "--eval-every", "100", "--eval-tasks", "8", "--checkpoint-every", "100",
        "--no-progress", "--no-figures", "--summary-tasks", "0"]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def normalized_error(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(b[k])), 1e-3)) for k in b)


@pytest.fixture
def no_launch_env(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tutorial_two_processes_equal_single_process(tmp_path, no_launch_env):
    from torch_impl.backend import make_tutorial_trainer as Trainer

    out = tmp_path / "ddp"
    code, output, _ = torchrun(["-m", "cogmeta", "train", *ARGS, "--out", str(out)], nproc=2, timeout=300)
    assert code == 0, output
    assert output.count(f"trained {STEPS} steps") == 1, f"only rank 0 reports:\n{output}"
    run_dir = RunDir.at(out)
    config = RunConfig.load(run_dir.config)

    reference = Trainer(config)
    losses = []
    while reference.step < STEPS:
        losses.extend(reference.run(LOG_EVERY).loss)
    initial = Trainer(config).weights()
    split_weights = load_weights(run_dir.weights, config)
    assert normalized_error(reference.weights(), initial) > 1e-2, "training should move the weights"
    print(f"tutorial over 2 processes vs one: weights {normalized_error(split_weights, reference.weights()):.3e}")
    assert normalized_error(split_weights, reference.weights()) <= TOLERANCE

    checkpoint, expected = load_checkpoint(run_dir.checkpoint, config), reference.checkpoint()
    assert checkpoint.step == STEPS
    assert normalized_error(checkpoint.exp_avg, expected.exp_avg) <= TOLERANCE
    assert normalized_error(checkpoint.exp_avg_sq, expected.exp_avg_sq) <= TOLERANCE

    rows = read_metrics(run_dir.metrics)
    keys = [(step, metric) for step, metric, _ in rows]
    assert len(keys) == len(set(keys)), "a metric row was written twice (only rank 0 may write)"
    logged = np.array([value for _, metric, value in rows if metric == "loss"])
    windows = np.asarray(losses).reshape(-1, LOG_EVERY).mean(axis=1)
    np.testing.assert_allclose(logged, windows, rtol=TOLERANCE)


RL2_STEPS = 30
RL2_ARGS = ["--task", "bandit", "--backend", "torch", "--dtype", "float64", "--horizon", "10", "--hidden-size", "8",
            "--batch-size", "16", "--steps", str(RL2_STEPS), "--learning-rate", "0.01", "--entropy-final", "0",
            "--log-every", "10", "--eval-every", str(RL2_STEPS), "--eval-tasks", "8", "--checkpoint-every",
            str(RL2_STEPS), "--no-progress", "--no-figures", "--summary-tasks", "0"]


def test_rl2_two_processes_equal_single_process(tmp_path, no_launch_env):
    """The RL² agent under torchrun: each rank plays its 8 of the 16 episodes (its own sampled actions), the loss,
    the episode-reward metric and the gradients are averaged; the run equals one process's to rounding."""
    from torch_impl.rl2 import make_trainer

    out = tmp_path / "rl2"
    code, output, _ = torchrun(["-m", "cogmeta", "train", *RL2_ARGS, "--out", str(out)], nproc=2, timeout=300)
    assert code == 0, output
    run_dir = RunDir.at(out)
    config = RunConfig.load(run_dir.config)
    reference = make_trainer(config)
    rewards = np.concatenate([reference.run(10).aux["reward"] for _ in range(RL2_STEPS // 10)])
    assert normalized_error(reference.weights(), make_trainer(config).weights()) > 1e-2, "training should move the weights"
    error = normalized_error(load_weights(run_dir.weights, config), reference.weights())
    print(f"RL² over 2 processes vs one: weights {error:.3e}")
    assert error <= TOLERANCE
    logged = np.array([value for _, metric, value in read_metrics(run_dir.metrics) if metric == "reward"])
    np.testing.assert_allclose(logged, rewards.reshape(-1, 10).mean(axis=1), rtol=TOLERANCE)


def test_configs_that_differ_between_ranks_fail_in_every_rank(no_launch_env):
    code, output, _ = torchrun(["-m", "tests._distributed_workers.torch_mismatch"], nproc=2, timeout=180)
    assert code != 0
    for rank in (0, 1):
        assert f"CONFIG-ERROR rank {rank}: the run configs differ across workers" in output, output


def test_missing_rendezvous_address_is_a_clear_error(no_launch_env, capsys):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_PORT", "29500")):
        no_launch_env.setenv(name, value)
    assert cli.main(["train", *ARGS, "--out", "unused"]) == 2
    error = capsys.readouterr().err
    assert "MASTER_ADDR missing" in error and "torchrun" in error


def test_batch_not_divisible_by_processes(no_launch_env, capsys):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "3"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", str(free_port()))):
        no_launch_env.setenv(name, value)
    assert cli.main(["train", *ARGS, "--out", "unused"]) == 2
    assert "batch_size=8 is not divisible by the 3 processes" in capsys.readouterr().err


def test_devices_without_torchrun_says_how_to_launch(no_launch_env, capsys):
    assert cli.main(["train", *ARGS, "--devices", "2", "--out", "unused"]) == 2
    assert "torchrun --standalone --nproc-per-node=2 -m cogmeta train" in capsys.readouterr().err


def test_a_peer_that_never_arrives_times_out(tmp_path, no_launch_env):
    """Rank 0 of 2 started alone: the rendezvous gives up after COGMETA_DISTRIBUTED_TIMEOUT seconds."""
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "COGMETA_DISTRIBUTED_TIMEOUT": "3"}
    code, output, _ = run([sys.executable, "-m", "cogmeta", "train", *ARGS, "--out", str(tmp_path / "alone")],
                          timeout=120, env=env)
    assert code != 0
    assert "could not join the 2-process group" in output, output
    assert not (tmp_path / "alone").exists(), "nothing is written before the ranks have met"
