"""One JAX device per CPU for the ``cogmeta`` command (``cogmeta.host_devices``).

References: the environment a fresh process would see (a dict stands in for ``os.environ``), and a real
``cogmeta sweep`` in a subprocess whose JAX must see one device per CPU and whose members, split over
them, must score as in a one-device sweep (the engine's equality itself is pinned in float64 by
``tests/test_distributed_jax.py``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogmeta.cpu_workers import usable_cpus
from cogmeta.host_devices import ENVIRONMENT_VARIABLE, enable_for_command, pin_worker

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def without_jax(monkeypatch):
    """As before JAX is imported (the command's state when it configures JAX)."""
    monkeypatch.delitem(sys.modules, "jax", raising=False)


def test_the_command_asks_for_one_device_per_usable_cpu(without_jax):
    environ = {}
    assert enable_for_command(environ) == len(usable_cpus()) == len(os.sched_getaffinity(0))
    assert environ == {ENVIRONMENT_VARIABLE: str(len(usable_cpus()))}
    environ = {}
    assert enable_for_command(environ, cpus=8) == 8  # `cogmeta train --devices 8`: simulated devices
    assert environ[ENVIRONMENT_VARIABLE] == "8"


@pytest.mark.parametrize("environ", [{ENVIRONMENT_VARIABLE: "3"}, {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}],
                         ids=["user's choice", "multi-host launch"])
def test_a_choice_already_made_is_left_alone(without_jax, environ):
    before = dict(environ)
    assert enable_for_command(environ) is None
    assert environ == before


def test_nothing_changes_once_jax_is_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", object())
    environ = {}
    assert enable_for_command(environ) is None and environ == {}


def test_bad_count_is_refused(without_jax):
    with pytest.raises(ValueError, match="need at least one CPU device, got 0"):
        enable_for_command({}, cpus=0)


def test_a_pinned_worker_takes_its_own_cpus_whatever_its_parent_chose():
    environ = {ENVIRONMENT_VARIABLE: "16"}
    pin_worker(environ)
    assert environ[ENVIRONMENT_VARIABLE] == str(len(usable_cpus()))


@pytest.mark.jax
def test_cogmeta_sweep_splits_its_members_over_one_device_per_cpu(tmp_path):
    pytest.importorskip("jax")
    cpus = len(usable_cpus())
    if cpus < 2:
        pytest.skip("needs 2 CPUs")
    script = ("import sys; from cogmeta.cli import main; code = main(sys.argv[1:]); import jax; "
              "print('DEVICES', len(jax.devices())); sys.exit(code)")
    environ = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_VARIABLE}
    rows = {}
    for name, extra in (("split", {}), ("one", {ENVIRONMENT_VARIABLE: "1"})):
        out = tmp_path / name
        command = [sys.executable, "-c", script, "sweep", "--task", "gaussian", "--backend", "jax", "--seeds", "2",
                   "--steps", "4", "--hidden-size", "8", "--batch-size", "4", "--eval-tasks", "50", "--dtype", "float64",
                   "--strategy", "map", "--out", str(out)]
        done = subprocess.run(command, cwd=REPO, env={**environ, **extra}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"DEVICES {cpus if name == 'split' else 1}" in done.stdout
        assert "over 2 devices" in done.stderr if name == "split" else "over" not in done.stderr
        with open(out / "summary.csv") as handle:
            rows[name] = list(csv.DictReader(handle))
    assert len(rows["split"]) == len(rows["one"]) == 2
    for split, one in zip(rows["split"], rows["one"]):
        for column in ("final_loss", "heldout_kl"):
            assert float(split[column]) == pytest.approx(float(one[column]), rel=1e-9), column
