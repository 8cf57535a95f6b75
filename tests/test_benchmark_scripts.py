"""Every benchmark script that the docs tell users to run runs end to end at a tiny size (timings are never asserted).

``tests/test_benchmarks_smoke.py`` covers ``suite.py``, ``time_to_quality.py``, ``cuda_graph_check.py`` and
``gpu_check.sh``; this file the others. A script that only fails when somebody runs it for a figure is found
here instead (the suite's one-seed ``split`` point broke that way once).
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_families_measures_every_family_in_both_frameworks(tmp_path, monkeypatch):
    families = _load("model_families")
    tiny = {"heuristics": 2, "learning-to-infer": 3, "seq2seq": 2}  # optimizer steps per timed call
    monkeypatch.setattr(families, "POINTS", {name: (point, tiny[name]) for name, (point, _) in families.POINTS.items()})
    # the one-device variant of the member points is the same JAX point with devices=1; compiling the two large
    # member programs once more doubled this test's time (CI on 2 cores runs near its 15 minutes)
    monkeypatch.setattr(families, "MEMBER_POINTS", ())
    assert families.main(["--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "model-families-cpu.csv")))
    assert [row["family"] for row in rows] == list(tiny)
    for row in rows:
        assert float(row["jax_updates_per_s"]) > 0 and float(row["torch_updates_per_s"]) > 0
    assert "| heuristics |" in (tmp_path / "model-families-cpu.md").read_text()
    assert not list(tmp_path.glob("*.tmp"))  # written, then renamed


def test_exact_bayes_reference_writes_its_table(tmp_path):
    reference = _load("exact_bayes_reference")
    assert reference.main(["--tasks", "8", "--num-samples", "1024", "--conditions", "ranking",
                           "--out", str(tmp_path)]) == 0
    assert (tmp_path / "exact-bayes-reference.csv").stat().st_size > 0
    assert "ranking" in (tmp_path / "exact-bayes-reference.md").read_text()


def test_seq2seq_encoder_layer_compares_the_two_encoders():
    script = [sys.executable, str(BENCHMARKS / "seq2seq_encoder_layer.py")]
    done = subprocess.run([*script, "--repeats", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ratio masked / layer" in done.stdout
    # fewer calls than rounds timed nothing and failed on an unbound variable
    refused = subprocess.run([*script, "--repeats", "3"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "must be a whole number of at least 5" in refused.stderr


@pytest.mark.slow  # starts worker processes and torchrun: ~35 s and ~12 s
def test_sweep_workers_and_scale_out_run_their_processes(tmp_path):
    workers = _load("sweep_workers")
    assert workers.main(["--seeds", "2", "--steps", "20", "--repeats", "1", "--out", str(tmp_path)]) == 0
    assert list(csv.DictReader(open(tmp_path / "sweep-workers-cpu.csv")))
    scale_out = _load("scale_out")
    assert scale_out.main(["--out", str(tmp_path), "--steps", "10", "--repeats", "1", "--devices-max", "2"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "scale_out.csv")))
    assert {row["backend"] for row in rows} == {"jax", "torch"}
    assert all(float(row["updates_per_s"]) > 0 for row in rows)


@pytest.mark.parametrize("script, option", [
    ("suite", "--repeats"), ("time_to_quality", "--seeds"), ("model_families", "--repeats"),
    ("sweep_workers", "--steps"), ("scale_out", "--steps"), ("exact_bayes_reference", "--tasks"),
    ("cuda_graph_check", "--steps"), ("seq2seq_encoder_layer", "--hidden"),
])
def test_every_script_refuses_a_count_of_zero_with_a_message(script, option):
    """A zero count failed deep inside (an empty median, a thread pool of no workers, an unbound variable)."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), option, "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and f"argument {option}: must be a whole number" in done.stderr, done.stderr[-1000:]
