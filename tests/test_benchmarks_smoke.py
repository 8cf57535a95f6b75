"""The benchmark script runs end to end on a tiny point (timings are never asserted)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")


def test_quick_benchmark_writes_its_tables(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "train_throughput.csv")))
    assert len(rows) == 1 and float(rows[0]["torch_updates_per_s"]) > 0 and float(rows[0]["jax_updates_per_s"]) > 0
    assert "JAX / torch" in (tmp_path / "train_throughput.md").read_text()
