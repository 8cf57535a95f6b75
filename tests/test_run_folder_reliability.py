"""Run folders that cannot be corrupted or orphaned (issue 14, items 2 and 3).

- one writer per folder: a second one is refused with the holder's process id; a SIGKILLed holder's lock
  is taken over;
- restartable: a step-0 checkpoint exists before training starts; stale ``.*.tmp`` files are removed; a torn
  last line of ``metrics.csv`` is dropped on resume and the resumed run equals the uninterrupted one;
- integrity: flipped bytes, a wrong dtype and an impossible checkpoint step are refused with a clear error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cogmeta.training
from cogmeta.checkpoint import load_checkpoint
from cogmeta.cli import main
from cogmeta.config import ModelConfig, RunConfig, TrainConfig
from cogmeta.io import DIGEST_KEY, atomic_save_safetensors, atomic_write_text
from cogmeta.metrics_log import MetricsLog, read_metrics
from cogmeta.runs import RunDir, RunFolderLockedError, folder_holder, lock_folder
from cogmeta.training import train
from cogmeta.weights import CorruptFileError, WeightsError, load_weights, read_safetensors, save_weights

ROOT = Path(__file__).resolve().parents[1]
CONFIG = RunConfig(train=TrainConfig(steps=20, batch_size=4, log_every=5, checkpoint_every=10, eval_every=10,
                                     eval_tasks=10), model=ModelConfig(hidden_size=4))

HOLDER = textwrap.dedent(
    """
    import sys, time
    from cogmeta.runs import lock_folder
    with lock_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


class _Crash(Exception):
    """Stands in for a kill at a chosen moment of a run."""


def _train(run, config=CONFIG, **kwargs):
    return train(config, run, "torch", progress=False, figures=False, **kwargs)


def _cli(args, capsys):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def torch_backend():
    pytest.importorskip("torch")


@pytest.fixture
def holder():
    """``start(folder)`` runs a separate process that holds ``folder``'s lock until it is killed."""
    processes = []

    def start(folder: Path) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                                   env=env)
        processes.append(process)
        assert process.stdout.readline().strip() == "locked", "the holder did not take the lock"
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stdout.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of CONFIG: its metrics rows and final weights."""
    pytest.importorskip("torch")
    run = tmp_path_factory.mktemp("reference") / "run"
    _train(run)
    return read_metrics(run / "metrics.csv"), load_weights(run / "weights.safetensors", CONFIG)


def _assert_equals_reference(run: Path, reference) -> None:
    rows, weights = reference
    assert read_metrics(run / "metrics.csv") == rows
    resumed = load_weights(run / "weights.safetensors", CONFIG)
    for name, value in weights.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def _crash_at_start(run: Path, monkeypatch, evaluations: int = 0) -> None:
    """Start a run and stop it where held-out evaluation number ``evaluations`` + 1 would begin: 0 stops before
    the first step, 1 at step 10, after 10 steps and their rows but before the step-10 checkpoint."""
    real = cogmeta.training.PredictiveWorkload.held_out
    calls = []

    def crashing(self, config, backend):
        score = real(self, config, backend)

        def crash(trainer):
            calls.append(trainer.step)
            if len(calls) > evaluations:
                raise _Crash(f"killed at evaluation {len(calls)}")
            return score(trainer)

        return crash

    with monkeypatch.context() as patch:
        patch.setattr(cogmeta.training.PredictiveWorkload, "held_out", crashing)
        with pytest.raises(_Crash):
            _train(run)


# ------------------------------------------------------------------------------------------ one writer
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, torch_backend, holder, capsys):
    run = tmp_path / "run"
    _train(run)
    before = {name: (run / name).read_bytes() for name in ("config.json", "metrics.csv", "weights.safetensors")}
    process = holder(run)
    assert str(process.pid) in folder_holder(run)

    with pytest.raises(RunFolderLockedError) as resumed:
        _train(run, resume=True)
    with pytest.raises(RunFolderLockedError) as fresh:  # not "already holds a run": someone is writing it
        _train(run)
    for error in (resumed.value, fresh.value):
        assert str(run) in str(error) and f"process {process.pid}" in str(error), error

    code, out, err = _cli(["train", "--resume", run, "--backend", "torch", "--no-progress", "--summary-tasks", "0",
                           "--no-figures"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("cogmeta: error: run folder") and f"process {process.pid}" in err, err
    assert {name: (run / name).read_bytes() for name in before} == before, "the refused writers wrote nothing"


def test_a_second_writer_of_a_new_folder_is_refused(tmp_path, torch_backend, holder):
    run = tmp_path / "new"
    process = holder(run)
    with pytest.raises(RunFolderLockedError, match=f"process {process.pid}"):
        _train(run)
    assert not (run / "config.json").exists() and not (run / "checkpoint.safetensors").exists()


def test_a_sweep_into_a_held_folder_is_refused(tmp_path, torch_backend, holder):
    from cogmeta.sweep import run_sweep

    out = tmp_path / "sweep"
    process = holder(out)
    with pytest.raises(RunFolderLockedError, match=f"process {process.pid}"):
        run_sweep(CONFIG, out, "torch", seeds=[0, 1], grid={}, progress=False)
    assert not (out / "member-000").exists()


def test_the_lock_of_a_sigkilled_holder_is_taken_over(tmp_path, torch_backend, holder):
    run = tmp_path / "run"
    process = holder(run)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    # The dead holder's record is still there; its OS lock went with the process.
    assert json.loads((run / ".lock.pid").read_text())["pid"] == process.pid
    assert folder_holder(run) is None
    result = _train(run)
    assert result.steps == CONFIG.train.steps and (run / "weights.safetensors").is_file()
    assert not (run / ".lock.pid").exists(), "the record of the holder is removed when it lets go"


def test_lock_folder_records_this_process_and_lets_go(tmp_path):
    folder = tmp_path / "run"
    with lock_folder(folder):
        assert json.loads((folder / ".lock.pid").read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderLockedError, match=f"process {os.getpid()}"):
            with lock_folder(folder):
                pass
    assert not (folder / ".lock.pid").exists() and folder_holder(folder) is None
    with lock_folder(folder):  # free again
        pass


# ------------------------------------------------------------------------------------------ restartable
@pytest.mark.parametrize("evaluations", [0, 1], ids=["before-the-first-step", "before-the-first-checkpoint"])
def test_a_step_zero_checkpoint_exists_before_training_starts(tmp_path, torch_backend, monkeypatch, reference,
                                                              evaluations):
    run = tmp_path / "run"
    _crash_at_start(run, monkeypatch, evaluations)
    assert (run / "config.json").is_file() and not (run / "weights.safetensors").exists()
    steps = {step for step, _, _ in read_metrics(run / "metrics.csv")}
    assert steps == (set() if evaluations == 0 else {0, 5, 10}), "the rows a resume must replace"
    assert load_checkpoint(run / "checkpoint.safetensors", CONFIG).step == 0
    with pytest.raises(FileExistsError, match="already holds a run"):
        _train(run)
    assert _train(run, resume=True).steps == CONFIG.train.steps
    _assert_equals_reference(run, reference)


def test_a_folder_without_a_checkpoint_resumes_from_scratch(tmp_path, torch_backend, monkeypatch, reference):
    run = tmp_path / "run"
    _crash_at_start(run, monkeypatch, evaluations=1)
    (run / "checkpoint.safetensors").unlink()  # as left by a version that wrote no step-0 checkpoint
    assert _train(run, resume=True).steps == CONFIG.train.steps
    _assert_equals_reference(run, reference)


def test_a_finished_run_without_its_checkpoint_is_not_retrained(tmp_path, torch_backend):
    run = tmp_path / "run"
    _train(run)
    (run / "checkpoint.safetensors").unlink()
    rows = (run / "metrics.csv").read_text()
    with pytest.raises(FileNotFoundError, match="checkpoint.safetensors does not exist"):
        _train(run, resume=True)
    assert (run / "metrics.csv").read_text() == rows


def test_stale_temporary_files_are_removed_when_the_folder_is_opened(tmp_path, torch_backend, monkeypatch):
    run = tmp_path / "run"
    _crash_at_start(run, monkeypatch)
    (run / "figures").mkdir()
    stale = [run / ".checkpoint.safetensors.k3j9x1.tmp", run / ".metrics.csv.a8b7c6.tmp",
             run / "figures" / ".learning_curve.png.q1w2e3.tmp"]
    for path in stale:
        path.write_bytes(b"")
    (run / "notes.tmp").write_text("mine")  # not a temporary file of an atomic write
    _train(run, resume=True)
    assert [path.name for path in stale if path.exists()] == []
    assert (run / "notes.tmp").read_text() == "mine"


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, torch_backend, monkeypatch, reference):
    run = tmp_path / "run"
    real_save = cogmeta.training.save_checkpoint

    def save_then_die(path, checkpoint, config):
        real_save(path, checkpoint, config)
        if checkpoint.step == 10:
            raise _Crash("killed after the step-10 checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(cogmeta.training, "save_checkpoint", save_then_die)
        with pytest.raises(_Crash):
            _train(run)
    with open(run / "metrics.csv", "a") as handle:  # rows of steps after the checkpoint, the last one torn
        handle.write("15,loss,2.2361\n15,grad_n")
    with pytest.raises(ValueError, match="line"):
        read_metrics(run / "metrics.csv")  # a torn line is an error that names the file and line...
    assert _train(run, resume=True).steps == CONFIG.train.steps  # ...but resuming drops it
    _assert_equals_reference(run, reference)


def test_metrics_are_synced_before_every_checkpoint(tmp_path, torch_backend, monkeypatch):
    events = []
    real_sync, real_save = MetricsLog.sync, cogmeta.training.save_checkpoint
    monkeypatch.setattr(MetricsLog, "sync", lambda self: (events.append("sync"), real_sync(self))[1])
    monkeypatch.setattr(cogmeta.training, "save_checkpoint",
                        lambda path, checkpoint, config: (events.append(checkpoint.step), real_save(path, checkpoint, config))[1])
    _train(tmp_path / "run")
    checkpoints = [i for i, event in enumerate(events) if event != "sync"]
    assert [events[i] for i in checkpoints] == [0, 10, 20]
    assert all(events[i - 1] == "sync" for i in checkpoints[1:]), events


def test_atomic_writes_fsync_the_folder_after_the_rename(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("cogmeta.io.fsync_folder", lambda folder: synced.append((Path(folder), (tmp_path / "a.txt").exists())))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == [(tmp_path, True)]


# ------------------------------------------------------------------------------------------ integrity
def _flip_bytes(path: Path, count: int = 16) -> None:
    """Invert the low byte of ``count`` float32 values in the tensor data (values stay finite)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for k in range(count):
        data[start + 4 * k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_refused(tmp_path, torch_backend, capsys):
    run = tmp_path / "run"
    _train(run)
    _flip_bytes(run / "weights.safetensors")
    with pytest.raises(CorruptFileError, match="weights.safetensors is corrupt"):
        load_weights(run / "weights.safetensors", CONFIG)
    code, out, err = _cli(["evaluate", run, "--num-tasks", "10", "--no-figures"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert str(run / "weights.safetensors") in err and "is corrupt" in err, err


def test_flipped_bytes_in_the_checkpoint_are_refused(tmp_path, torch_backend, capsys):
    run = tmp_path / "run"
    _train(run)
    _flip_bytes(run / "checkpoint.safetensors")
    with pytest.raises(CorruptFileError, match="checkpoint.safetensors is corrupt"):
        load_checkpoint(run / "checkpoint.safetensors", CONFIG)
    code, _, err = _cli(["train", "--resume", run, "--backend", "torch", "--no-progress", "--summary-tasks", "0"],
                        capsys)
    assert code == 2 and "checkpoint.safetensors is corrupt" in err, err


def _rewrite(path: Path, transform=lambda name, value: value, metadata=None, digest: bool = True) -> None:
    """Rewrite a safetensors file with transformed tensors and metadata (with or without a digest)."""
    from safetensors.numpy import save_file

    tensors, stored = read_safetensors(path)
    tensors = {name: transform(name, value) for name, value in tensors.items()}
    stored.update(metadata or {})
    if digest:
        atomic_save_safetensors(path, tensors, stored)
    else:
        save_file(tensors, str(path), metadata=stored)


def test_files_written_before_the_digest_still_load(tmp_path, torch_backend):
    run = tmp_path / "run"
    _train(run)
    weights = load_weights(run / "weights.safetensors", CONFIG)
    from safetensors import safe_open

    for name in ("weights.safetensors", "checkpoint.safetensors"):
        _rewrite(run / name, digest=False)
        with safe_open(str(run / name), framework="numpy") as handle:
            assert DIGEST_KEY not in handle.metadata()
    for name, value in load_weights(run / "weights.safetensors", CONFIG).items():
        np.testing.assert_array_equal(value, weights[name])
    assert load_checkpoint(run / "checkpoint.safetensors", CONFIG).step == CONFIG.train.steps


@pytest.mark.parametrize("dtype", ["float16", "int32", "float64"])
def test_weights_of_another_dtype_are_refused(tmp_path, torch_backend, capsys, dtype):
    run = tmp_path / "run"
    _train(run)
    _rewrite(run / "weights.safetensors", lambda name, value: value.astype(dtype))  # a valid digest
    with pytest.raises(WeightsError, match=f"dtype {dtype}, expected float32"):
        load_weights(run / "weights.safetensors", CONFIG)
    code, out, err = _cli(["evaluate", run, "--num-tasks", "10", "--no-figures"], capsys)
    assert code == 2 and out == "" and f"dtype {dtype}, expected float32" in err, err
    weights = read_safetensors(run / "weights.safetensors")[0]
    with pytest.raises(WeightsError, match=f"dtype {dtype}, expected float32"):
        save_weights(tmp_path / "other.safetensors", weights, CONFIG, framework="torch")
    assert not (tmp_path / "other.safetensors").exists()


def test_a_checkpoint_of_another_dtype_is_refused(tmp_path, torch_backend):
    run = tmp_path / "run"
    _train(run)
    _rewrite(run / "checkpoint.safetensors", lambda name, value: value.astype(np.float16))
    with pytest.raises(WeightsError, match="dtype float16, expected float32"):
        load_checkpoint(run / "checkpoint.safetensors", CONFIG)


@pytest.mark.parametrize("step, message", [
    ("1000000", "at step 1000000, beyond the run's total of 20 steps"),
    ("-3", "step '-3', which is not a non-negative integer"),
    ("ten", "step 'ten', which is not a non-negative integer"),
    ("1.5", "step '1.5', which is not a non-negative integer"),
    (None, "records no step"),
])
def test_an_impossible_checkpoint_step_is_refused(tmp_path, torch_backend, capsys, step, message):
    run = tmp_path / "run"
    _train(run)
    path = run / "checkpoint.safetensors"
    if step is None:
        from safetensors.numpy import save_file

        tensors, metadata = read_safetensors(path)
        del metadata["step"]
        save_file(tensors, str(path), metadata=metadata)
    else:
        _rewrite(path, metadata={"step": step})
    with pytest.raises(WeightsError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_checkpoint(path, CONFIG)
    assert str(path) in str(error.value)
    with pytest.raises(WeightsError, match="step"):
        _train(run, resume=True)
    code, out, err = _cli(["train", "--resume", run, "--backend", "torch", "--no-progress", "--summary-tasks", "0"],
                          capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "trained" not in out


def test_a_checkpoint_step_beyond_the_run_is_not_written(tmp_path, torch_backend):
    from cogmeta.checkpoint import save_checkpoint

    run = tmp_path / "run"
    _train(run)
    checkpoint = load_checkpoint(run / "checkpoint.safetensors", CONFIG)
    checkpoint.step = 10**6
    with pytest.raises(WeightsError, match="beyond the run's total of 20 steps"):
        save_checkpoint(tmp_path / "other.safetensors", checkpoint, CONFIG)
    assert not (tmp_path / "other.safetensors").exists()


def test_run_dir_names_the_lock_files(tmp_path):
    run = RunDir.at(tmp_path)
    assert run.lock.name == ".lock" and run.lock_holder.name == ".lock.pid"
