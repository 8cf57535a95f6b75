"""JAX data parallelism on 1, 2 and 8 simulated CPU devices vs single-device training (float64).

Simulated devices need ``JAX_NUM_CPU_DEVICES`` before JAX starts, so the comparisons run in one
subprocess (``tests/_distributed_workers/jax_equivalence.py``, with a timeout) that prints its
results; the tests below assert on them. Same config, same global batches: the parameters must agree
to rounding (1e-12 normalized, measured ~1e-15). The sharded run is also compared with single-process
PyTorch on the same numpy batches (the parity suite covers single-device JAX vs torch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("jax")
pytest.importorskip("flax.nnx")
pytest.importorskip("torch")

from tests._distributed_workers.launch import REPO, free_port, run  # noqa: E402
from tests._distributed_workers.settings import JAX_CLI_ARGS as CLI_ARGS  # noqa: E402

pytestmark = [pytest.mark.jax, pytest.mark.torch]

TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("jax_distributed")
    # JAX's persistent cache in a folder of this worker's own: its trainers compile equal programs again and again (a
    # new jit per trainer), and a program loaded from the cache is the compiled one (measured: 100 -> 90 s)
    env = {"JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(out / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    code, output, _ = run([sys.executable, "-m", "tests._distributed_workers.jax_equivalence", str(out)],
                          timeout=480, env=env)
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith("RESULTS ")]
    assert len(lines) == 1, output
    print(lines[0])  # the measured errors, shown by `pytest -rP`
    return json.loads(lines[0][len("RESULTS "):])


def test_eight_simulated_devices(results):
    assert results["devices"] == 8


@pytest.mark.parametrize("devices", ["1", "2 (cli)", "8"])
def test_task_batch_sharding_equals_single_device(results, devices):
    assert results["reference_changed"] > 1e-2, "training should move the weights (else equality is trivial)"
    assert results["task_batch"][devices] <= TOLERANCE


def test_held_out_check_splits_its_tasks_over_the_devices_and_equals_one_device(results):
    """A data-parallel run's held-out forward pass runs each of its 8 devices on its share of the tasks (not every
    task on every device), with the one-device predictions of the same weights."""
    split = results["held_out_split"]["8"]
    assert split["devices"] == 8
    assert split["error"] <= TOLERANCE


def test_checks_inside_the_training_call_split_their_tasks_and_equal_one_device(results):
    """``run_checked`` of an 8-device trainer scores its held-out tasks split over the devices inside the compiled
    call (``distributed.data_parallel_check``): the same checks, at the same steps, as one device's."""
    checked = results["checked_split"]
    assert checked["steps"] == checked["expected"] and checked["same_steps"]
    assert checked["error"] <= TOLERANCE


def test_predict_splits_its_tasks_over_the_devices_a_run_would_use_and_equals_one_device(results):
    """``predict`` of canonical weights (the summary, the figures, ``cogmeta evaluate``) runs on the devices that a run
    of the config splits its batch over (batch 32 on 8 devices: 2, as ``auto_devices`` gives), with one device's
    predictions: the program of that run's held-out checks."""
    assert results["auto_devices"]["32"] == 2
    split = results["held_out_split"]["8"]
    assert split["predict_devices"] == 2
    assert split["predict_error"] <= TOLERANCE
    assert split["predict_placement_is_a_runs"]  # program_keys.run_placement builds distributed.task_mesh's mesh


def test_a_run_splits_its_batch_over_host_devices_by_default(results):
    """Without --devices, a CPU run splits its batch over the most devices that leave each 16 tasks or more."""
    assert results["auto_devices"] == {"8": 1, "12": 1, "16": 1, "32": 2, "64": 4, "128": 8}
    assert results["auto_trainer_devices"] == 2
    assert results["auto_split_error"] <= TOLERANCE


@pytest.mark.parametrize("devices", ["2 (cli)", "2", "8"])
def test_rl2_episodes_split_over_devices_equal_one_device(results, devices):
    """RL²'s episodes split over devices: same parameters (A2C through sampled actions, annealed entropy weight)."""
    assert results["rl2_moved"] > 1e-2, "training should move the weights (else equality is trivial)"
    assert results["rl2_split"][devices] <= TOLERANCE
    if devices != "2 (cli)":  # the episode rewards of every update: a metric averaged over the devices
        assert results["rl2_split"][f"{devices} rewards"] <= TOLERANCE


def test_a_split_step_has_one_collective(results):
    """The gradient's all-reduce only: RL²'s Beta arms (rejection-sampled, ``jax.random.gamma``) are drawn whole on
    every device, since a draw partitioned over the devices tests its loop's condition with an all-reduce in every
    iteration (jax_impl.distributed.sample_on_every_device); the tutorial's normal noise is partitioned freely."""
    assert results["split_collectives"] == {"rl2": ["all-reduce"], "tutorial": ["all-reduce"]}


def test_seed_axis_program_has_no_collective(results):
    """``vmap_over_seeds`` of a rejection-sampled draw (RL²'s Beta arms) over 8 devices: no collective (jit of the vmap
    let XLA partition the vmapped gamma loop, with an all-reduce per iteration), and each seed's draw bit for bit as
    drawn alone (one seed per device here)."""
    assert results["seed_axis_collectives"] == []
    assert results["seed_axis_draws"] == 0.0


def test_rl2_run_over_devices_resumes_bit_for_bit(results):
    assert results["rl2_split"]["2 resumed"] == 0.0


def test_rl2_runs_split_their_episodes_by_default(results):
    assert results["rl2_auto_devices"] == 2  # 32 episodes: 16 per device


def test_parameters_live_on_every_device_of_the_mesh(results):
    assert results["param_devices"] == {"1": 1, "8": 8}


def test_cli_run_writes_each_metric_once(results):
    # header + 4 windows x (loss, grad_norm, learning_rate) + heldout_kl at steps 0 and 200
    assert results["metrics_rows"] == 1 + 4 * 3 + 2


def test_sharded_jax_equals_single_process_torch(results):
    assert results["cross_framework_8_devices_vs_torch"] <= TOLERANCE


def test_seed_axis_sharded_equals_each_seed_alone(results):
    assert results["seed_devices"]["8"] == [8, "P('seeds',)"]
    assert results["seed_axis"]["8"] <= TOLERANCE


@pytest.mark.parametrize("strategy", ["map", "vmap"])
@pytest.mark.parametrize("devices", ["auto", "4"])
def test_sweep_engine_members_over_devices_equal_one_device(results, strategy, devices):
    key = f"{strategy} {devices}"
    used, spread_over, runs, steps = results["engine_devices"][key]
    # auto: one device per member (6 of the 8); 4 devices: 6 members padded to 8, the copies dropped again
    assert used == (6 if devices == "auto" else 4) and spread_over == used
    assert runs == 6 and steps == [results["steps"]] * 6
    assert results["engine_devices_error"][key] <= TOLERANCE


def test_heuristics_grid_over_devices_equals_one_device(results):
    """The bounded GRU's members carry their condition and typed PRNG keys through the split."""
    members, error, members_differ = results["engine_devices_bounded"]
    assert members == 5 and members_differ > 1e-3  # distinct members, so equality is not trivial
    assert error <= TOLERANCE


def test_sweep_engine_asks_for_no_more_devices_than_jax_sees(results):
    message = results["engine_too_many_devices"]
    assert "devices=9 but JAX sees 8" in message and "JAX_NUM_CPU_DEVICES=9" in message


def test_bad_input_errors(results):
    errors = results["errors"]
    assert "batch_size=12 is not divisible by the 8 devices" in errors["indivisible"]
    assert "--batch-size 8 or 16" in errors["indivisible"]
    assert "JAX sees 8" in errors["too_many_devices"] and "JAX_NUM_CPU_DEVICES=16" in errors["too_many_devices"]


@pytest.mark.slow
def test_two_hosts_equal_single_device(tmp_path):
    """Two JAX processes x 2 simulated CPU devices (``jax.distributed.initialize`` on 127.0.0.1, gloo CPU
    collectives) train ``cogmeta train --devices 4``; the weights equal one-device training."""
    out = tmp_path / "two-hosts"
    address = f"127.0.0.1:{free_port()}"
    processes = []
    for index in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2",
               "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(index),
               "COGMETA_DISTRIBUTED_TIMEOUT": "120"}
        command = [sys.executable, "-m", "cogmeta", *CLI_ARGS, "--devices", "4", "--out", str(out)]
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=480)[0])
    finally:
        for process in processes:  # kill what is left (a timeout) by process group id
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    assert [p.returncode for p in processes] == [0, 0], "\n".join(outputs)
    assert sum(output.count("trained 200 steps") for output in outputs) == 1, "only process 0 reports"
    code, output, _ = run([sys.executable, "-m", "tests._distributed_workers.jax_equivalence", "compare", str(out)],
                          timeout=300, env={"JAX_PLATFORMS": "cpu"})
    assert code == 0, output
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULTS "))[len("RESULTS "):])
    print(f"two hosts x 2 devices vs one device: {result['error']:.3e}")
    assert result["moved"] > 1e-2
    assert result["error"] <= TOLERANCE
