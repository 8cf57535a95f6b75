"""The benchmark suite runs end to end on a tiny point (timings are never asserted)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")


def test_suite_smoke_writes_csv_markdown_and_plot(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"
    spec = importlib.util.spec_from_file_location("suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--preset", "smoke", "--torch-threads", "1", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "suite-smoke.csv")))
    assert len(rows) == 1 and float(rows[0]["jax_updates_per_s"]) > 0 and float(rows[0]["torch_updates_per_s"]) > 0
    assert int(rows[0]["jax_recompiles"]) == 0  # fixed shapes: the timed calls reuse the compiled program
    # the analytic FLOP count the GFLOP/s column rests on: GRU fwd + bwd = 18 H (I + H) per token
    assert module.update_flops("gru", 8, 4, 7) == 18 * 8 * (2 + 8) * 4 * 7
    assert "JAX / best torch" in (tmp_path / "suite-smoke.md").read_text()
    assert (tmp_path / "suite-smoke.png").stat().st_size > 0


def _load(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cuda_graph_check_refuses_a_machine_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: benchmarks/gpu_check.sh runs the check itself")
    assert _load("cuda_graph_check").main(["--out", str(tmp_path)]) == 2
    assert "needs one" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_gpu_check_script_is_valid_bash_and_names_its_stages():
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for stage in ("parity", "cuda-graph", "suite", "add-jump", "executable-store"):
        assert f"stage {stage} " in text
    assert "gpu-check" in _load("suite").PRESETS


def test_time_to_quality_reads_the_line_cogmeta_train_prints(tmp_path, capsys):
    """benchmarks/time_to_quality.py parses `cogmeta train --until-kl`'s report; the two must not drift apart."""
    from cogmeta.cli import main

    argv = ["train", "--task", "gaussian", "--backend", "torch", "--hidden-size", "4", "--steps", "20",
            "--until-kl", "1e9", "--until-kl-every", "10", "--summary-tasks", "0", "--no-figures", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    match = _load("time_to_quality").REPORT.search(out)
    assert match is not None and int(match["step"]) == 0  # the untrained model is already below 1e9 nats
    assert 0 <= float(match["training"]) <= float(match["start"])
    parts = _load("time_to_quality").PARTS.search(out)  # no training call before the target: only the check
    assert parts is not None and float(parts["first"]) == 0 == float(parts["later"]) and float(parts["checks"]) >= 0
    trainer = _load("time_to_quality").TRAINER.search(out)
    assert trainer is not None and 0 <= float(trainer["trainer"]) <= float(match["training"])
    command = _load("time_to_quality").command("torch", tmp_path / "out", 3, _Args())
    assert command[3:6] == ["train", "--task", "gaussian"] and "--until-kl" in command and "--threads" in command
    assert command[command.index("--seed") + 1] == "3"


def test_time_to_quality_table_rows_and_ratios_with_a_baseline():
    """The markdown holds one row per configuration, the baseline note above the table, and each JAX/PyTorch
    ratio computed from its own pair (the baseline JAX over the baseline PyTorch)."""
    module = _load("time_to_quality")
    names = ("torch", "jax warm", "torch (baseline)", "jax warm (baseline)")
    table = [{"configuration": name, "runs": 3, "step": 300, "steps": "200-400", "training_s": t, "trainer_s": t / 5,
              "first_call_s": t / 2, "later_calls_s": t / 4, "checks_s": t / 8, "start_to_target_s": 2 * t, "process_s": 4 * t}
             for name, t in zip(names, (2.0, 1.0, 4.0, 3.0))]
    lines = module.markdown(table, _Args(), "env").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| configuration"))
    assert any(line.startswith("`(baseline)`") for line in lines[:header])
    rows = [line for line in lines if line.startswith("| ")]
    assert [row.split(" | ")[0][2:] for row in rows[1:5]] == list(names)
    assert "| ratio jax warm / torch (same run) | | | 0.50 | | | | | 0.50 | 0.50 |" in lines
    assert "| ratio jax warm (baseline) / torch (baseline) (same run) | | | 0.75 | | | | | 0.75 | 0.75 |" in lines
    assert "| jax warm | 3 | 300 (200-400) | 1.00 | 0.20 | 0.50 | 0.25 | 0.12 | 2.00 | 4.00 |" in lines


def test_time_to_quality_at_several_check_periods_pairs_each_period_and_each_framework_at_its_best():
    """``--until-kl-every 25 100``: every configuration at both periods (the command gets the option), a ratio per
    period, and one of each framework at its fastest period (here JAX at 100, PyTorch at 25)."""
    module = _load("time_to_quality")
    args = _Args()
    args.until_kl_every = [25, 100]
    names = module.configurations_of(args)
    assert names == ("torch every 25", "jax cold every 25", "jax warm every 25", "torch every 100",
                     "jax cold every 100", "jax warm every 100")
    args.baseline = "checkout"  # the baseline at the same periods
    assert module.configurations_of(args)[len(names):] == (
        "torch every 25 (baseline)", "jax warm every 25 (baseline)", "torch every 100 (baseline)",
        "jax warm every 100 (baseline)")
    args.baseline = None
    command = module.command("jax warm every 25", Path("out"), 0, args)
    assert command[command.index("--until-kl-every") + 1] == "25" and command[command.index("--backend") + 1] == "jax"
    assert "--until-kl-every" not in module.command("torch", Path("out"), 0, _Args())
    seconds = dict(zip(names, (1.0, 3.0, 0.4, 2.0, 3.0, 0.3)))
    table = [{"configuration": name, "runs": 5, "step": 300, "steps": "200-400", "training_s": t, "trainer_s": 0.0,
              "first_call_s": t, "later_calls_s": t, "checks_s": t, "start_to_target_s": t, "process_s": t}
             for name, t in seconds.items()]
    lines = module.markdown(table, args, "env").splitlines()
    assert "| ratio jax warm every 25 / torch every 25 (same run) | | | 0.40 | | | | | 0.40 | 0.40 |" in lines
    assert "| ratio jax warm every 100 / torch every 100 (same run) | | | 0.15 | | | | | 0.15 | 0.15 |" in lines
    assert "| ratio jax warm every 100 / torch every 25 (same run) | | | 0.30 | | | | | 0.30 | 0.30 |" in lines


def test_time_to_quality_table_of_warm_jax_runs_only_has_no_ratios():
    """``--jax-warm-only`` times no PyTorch run: the table has its rows and no ratio to a missing PyTorch row."""
    module = _load("time_to_quality")
    table = [{"configuration": name, "runs": 12, "step": 300, "steps": "300-300", "training_s": t, "trainer_s": 0.03,
              "first_call_s": 0.1, "later_calls_s": 0.15, "checks_s": 0.05, "start_to_target_s": 3 * t, "process_s": 4 * t}
             for name, t in (("jax warm", 0.3), ("jax warm (baseline)", 0.4))]
    lines = module.markdown(table, _Args(), "env").splitlines()
    assert sum(line.startswith("| jax warm") for line in lines) == 2
    assert not any(line.startswith("| ratio") for line in lines)


def test_time_to_quality_summary_pools_seeds_and_rounds():
    """Medians over every run of a configuration (all seeds, all rounds) and the range of the steps."""
    module = _load("time_to_quality")
    rows = [{"configuration": "torch", "round": r, "seed": seed, "step": step, **{key: float(step) for key in module.MEASURES[1:]}}
            for r in range(2) for seed, step in enumerate((600, 200, 400))]
    (row,) = module.summarise(rows, ("torch",))
    assert row["runs"] == 6 and row["steps"] == "200-600" and row["step"] == 400 and row["training_s"] == 400.0


class _Args:
    target, batch_size, learning_rate, no_figures, seeds, until_kl_every = 1e-3, None, None, False, 5, None
    jax_warm_only, baseline = False, None


def test_suite_times_one_run_with_its_batch_split_as_cogmeta_train_runs_it():
    """The ``split`` point times the data-parallel trainer's own program, whose member is a last argument it adds
    when it lowers (calling the compiled program without it failed with a pytree mismatch)."""
    suite = _load("suite")
    point = suite.JaxPoint(suite.point_config("gru", 8, 4, 7, 5), 1, "split", devices=1)
    assert len(point.call_args) == len(point.args) + 1
    assert point.run() > 0


def test_suite_trains_vmapped_members_in_blocks_where_the_device_memory_asks_for_it(monkeypatch):
    """As ``cogmeta sweep`` does (``Engine.fit_to_memory``): on a device too small for every member at once, the
    ``vmap`` point times the members in vmapped blocks (an H200 ran out of memory at 2048 members before)."""
    suite = _load("suite")
    import jax_impl.engine as engine

    config = suite.point_config("gru", 8, 4, 7, 5)
    assert suite.JaxPoint(config, 4, "vmap").blocks is None  # XLA:CPU names no limit: one vmapped program
    monkeypatch.setattr(engine, "device_memory", lambda device=None: 1)  # not even one member fits: blocks of one
    point = suite.JaxPoint(config, 4, "vmap")
    assert point.blocks == 1 and (point.engine.strategy, point.engine.map_batch) == ("map", 1)
    assert point.run() > 0


def _goal_row(hidden, batch, length, members, jax_rate, torch_rate) -> dict:
    return {"task": "gaussian", "cell": "gru", "hidden": hidden, "batch": batch, "length": length, "members": members,
            "jax_updates_per_s": jax_rate, "torch_updates_per_s": torch_rate}


def test_gpu_goals_divide_by_one_member_and_say_where_the_device_peak_rules_a_goal_out():
    """Seed scaling over the size's one-member JAX rate, aggregate over its one-seed PyTorch rate, and each goal's
    ceiling: the device's float32 peak over the update's FLOPs, over the same denominator."""
    suite = _load("suite")
    peak = 67_000.0  # GFLOP/s (an H200's float32 datasheet figure)
    rows = [_goal_row(32, 8, 7, 1, 1_000.0, 500.0), _goal_row(32, 8, 7, 256, 220_000.0, 510.0),
            _goal_row(32, 8, 7, 2048, 200_000.0, 480.0),
            _goal_row(64, 128, 64, 1, 685.0, 1_314.0), _goal_row(64, 128, 64, 256, 12_331.0, 1_392.0),
            _goal_row(64, 128, 16, 16, 9_000.0, 1_500.0)]  # no one-member point of its size: no goal row
    goals = {(g["size"], g["members"]): g for g in suite.gpu_goal_rows(rows, peak)}
    assert sorted(goals) == [("gru H32 B8 T7", 256), ("gru H32 B8 T7", 2048), ("gru H64 B128 T64", 256)]

    tiny = peak * 1e9 / suite.update_flops("gru", 32, 8, 7)  # member-updates/s at the peak
    g = goals["gru H32 B8 T7", 256]
    assert g["seed_scaling"] == 220.0 and g["scaling_goal"] == 0.8 * 256 and g["scaling_met"]
    assert g["scaling_ceiling"] == pytest.approx(tiny / 1_000.0) and g["aggregate_goal"] is None
    g = goals["gru H32 B8 T7", 2048]
    assert g["scaling_goal"] is None and g["aggregate_over_torch_seed"] == 400.0 and g["aggregate_goal"] == 500
    assert not g["aggregate_met"] and g["aggregate_ceiling"] == pytest.approx(tiny / 500.0)
    assert g["aggregate_ceiling"] > 500  # missed, not ruled out
    g = goals["gru H64 B128 T64", 256]  # the committed H200 figures: 0.8 S would need more than the peak
    assert g["scaling_ceiling"] == pytest.approx(peak * 1e9 / suite.update_flops("gru", 64, 128, 64) / 685.0)
    assert g["scaling_ceiling"] < g["scaling_goal"] and not g["scaling_met"]

    table = "\n".join(suite._goal_lines(suite.gpu_goal_rows(rows, peak), peak))
    assert "| gru H32 B8 T7 | 256 | 220000 | 220.0 | 204.8: met |" in table
    assert "| gru H32 B8 T7 | 2048 | 200000 | 200.0 | - |" in table and "| 500: missed |" in table
    assert "| gru H64 B128 T64 | 256 | 12331 | 18.0 | 204.8: beyond the peak |" in table


def test_gpu_check_preset_measures_every_seed_series_from_one_member():
    """The goals divide by one member's rate: every size with several members has its one-member point, and the
    tutorial-sized series reaches the goals' member counts."""
    suite = _load("suite")
    for preset in ("gpu-check", "gpu"):
        points = suite.PRESETS[preset]
        singles = {point[:4] for point in points if point[4] == 1}
        assert all(point[:4] in singles for point in points if point[4] > 1), preset
        assert {suite.SCALING_UP_TO, suite.AGGREGATE_MEMBERS} <= {p[4] for p in points if p[:4] == ("gru", 32, 8, 7)}


def test_suite_gpu_path_writes_the_goals_table(tmp_path):
    """The accelerator path (vmapped members, PyTorch as one seed) end to end on the CPU, written as on a GPU."""
    suite = _load("suite")
    assert suite.device_sgemm_peak(n=64, repeats=1) > 0
    rows = [suite.measure_point(("gru", 8, 4, 7, members), 1, [1], peak=1.0, max_chunk=5, accelerator=True)
            for members in (1, 2)]
    assert rows[1]["jax_best"] == "vmap" and rows[1]["torch_best"] == "loop/1t"
    environment = {"jax_backend": "gpu", "sgemm_peak_gflops": 1.0}
    suite.write_results(tmp_path, "gpu-check", rows, environment)
    text = (tmp_path / "suite-gpu-check.md").read_text()
    assert "## GPU goals" in text and "| gru H8 B4 T7 | 2 |" in text
