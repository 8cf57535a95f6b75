"""Sweeps: grid parsing, member expansion and grouping, and ``cogmeta sweep`` end to end.

References: hand-written expected grids and member lists; each member folder's weights, loaded by the
*other* framework, must give the predictive of the framework that trained it; the summary's KL must
equal ``cogmeta.evaluation`` run on the member's folder.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from cogmeta.config import ModelConfig, RunConfig, TrainConfig
from cogmeta.sweep import expand, group_members, parse_grid

CONFIG = RunConfig(model=ModelConfig(hidden_size=8), train=TrainConfig(steps=4, batch_size=4))


def test_parse_grid_converts_types_and_resolves_aliases():
    grid = parse_grid(["lr=1e-3,3e-3", "hidden=8,16", "noise_std=0.5", "model.cell=gru,lstm"], CONFIG)
    assert grid == {"train.learning_rate": [1e-3, 3e-3], "model.hidden_size": [8, 16], "task.noise_std": [0.5],
                    "model.cell": ["gru", "lstm"]}
    assert isinstance(grid["model.hidden_size"][0], int)


@pytest.mark.parametrize("item, message", [
    ("lr", "must look like KEY=V1,V2"),
    ("depth=1,2", "unknown grid key 'depth'; valid keys: batch, hidden, layers, lr"),
    ("hidden=8,big", "grid value 'big' for model.hidden_size is not a valid int"),
    ("seed=1,2", "seeds are set with --seeds"),
    ("lr=", "has no values"),
])
def test_parse_grid_errors_say_how_to_fix(item, message):
    with pytest.raises(ValueError, match=message):
        parse_grid([item], CONFIG)


def test_expand_and_group():
    grid = parse_grid(["lr=1e-3,3e-3", "hidden=8,16"], CONFIG)
    members = expand(CONFIG, [5, 6], grid)
    assert [(m.config.train.learning_rate, m.config.model.hidden_size, m.config.train.seed) for m in members] == [
        (1e-3, 8, 5), (1e-3, 8, 6), (1e-3, 16, 5), (1e-3, 16, 6), (3e-3, 8, 5), (3e-3, 8, 6), (3e-3, 16, 5), (3e-3, 16, 6)]
    groups = group_members(members)  # learning rate and seed vary inside a program, hidden size does not
    assert [[m.index for m in group] for group in groups] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    with pytest.raises(ValueError, match=r"ModelConfig.hidden_size must lie in \[1, 65536\], got 0"):
        expand(CONFIG, [0], {"model.hidden_size": [0]})


@pytest.mark.parametrize("backend, other, strategy", [("jax", "torch", "map"), ("torch", "jax", "vmap")])
def test_cli_sweep_writes_member_folders_that_load_in_both_frameworks(tmp_path, capsys, backend, other, strategy):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from cogmeta.backends import load_backend
    from cogmeta.cli import main
    from cogmeta.evaluation import HELD_OUT_SEED, evaluate
    from cogmeta.weights import load_weights

    out = tmp_path / "sweep"
    argv = ["sweep", "--backend", backend, "--seeds", "2", "--grid", "lr=1e-2,3e-3", "--hidden-size", "8",
            "--steps", "6", "--batch-size", "4", "--steps-per-call", "3", "--eval-tasks", "40", "--strategy", strategy,
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "4 members" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [(int(r["seed"]), float(r["learning_rate"])) for r in rows] == [(0, 1e-2), (1, 1e-2), (0, 3e-3), (1, 3e-3)]
    observations = np.random.default_rng(0).normal(size=(7, 3, 1))
    for row in rows[:2]:
        folder = out / row["folder"]
        config = RunConfig.load(folder / "config.json")
        assert (config.train.seed, config.train.learning_rate) == (int(row["seed"]), float(row["learning_rate"]))
        weights = load_weights(folder / "weights.safetensors", config)
        mine = load_backend(backend).predict(config, weights, observations)
        theirs = load_backend(other).predict(config, weights, observations)
        for key in mine:
            np.testing.assert_allclose(theirs[key], mine[key], rtol=1e-5, atol=1e-6)
        assert int(row["steps"]) == 6 and row["stopped"] == "False"
        kl = evaluate(config, weights, backend, num_tasks=40, seed=HELD_OUT_SEED + 1).mean_kl  # the training driver's set
        np.testing.assert_allclose(float(row["heldout_kl"]), kl, rtol=1e-5)
    assert main(argv) == 2  # the folder already holds a sweep
    assert "already holds a sweep" in capsys.readouterr().err


def test_cli_sweep_rejects_a_strategy_the_backend_lacks(tmp_path, capsys):
    pytest.importorskip("torch")
    from cogmeta.cli import main

    assert main(["sweep", "--backend", "torch", "--strategy", "map", "--seeds", "1", "--steps", "1",
                 "--no-progress", "--out", str(tmp_path / "s")]) == 2
    assert "unknown seed strategy 'map'; choose one of auto, loop, vmap" in capsys.readouterr().err


def test_cli_sweep_trains_seq2seq_members_through_the_run_folder_loop(tmp_path, capsys):
    """The seq2seq family (no engine: its episodes are drawn in Python) sweeps member after member; each member
    folder is an ordinary run, equal bit for bit to `cogmeta train` of the member's config, and the summary
    holds the family's scores (accuracies) rather than a held-out KL."""
    pytest.importorskip("torch")
    from cogmeta.cli import main
    from cogmeta.weights import read_safetensors

    tiny = ["--preset", "seq2seq-me-cpu", "--steps", "12", "--log-every", "6", "--checkpoint-every", "6",
            "--hidden-size", "6", "--backend", "torch", "--no-progress"]
    assert main(["sweep", *tiny, "--seeds", "2", "--grid", "lr=1e-3,3e-3", "--out", str(tmp_path / "sweep")]) == 0
    with open(tmp_path / "sweep" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["seed"], row["learning_rate"]) for row in rows] == [("0", "0.001"), ("1", "0.001"), ("0", "0.003"),
                                                                     ("1", "0.003")]
    assert {"generalization", "retrieval", "final_loss"} <= set(rows[0]) and "heldout_kl" not in rows[0]
    member = tmp_path / "sweep" / "member-003"
    assert (member / "checkpoint.safetensors").is_file()
    assert RunConfig.load(member / "config.json").train.learning_rate == 0.003
    capsys.readouterr()
    assert main(["train", *tiny, "--seed", "1", "--learning-rate", "3e-3", "--summary-tasks", "0", "--no-figures",
                 "--out", str(tmp_path / "single")]) == 0
    swept, _ = read_safetensors(member / "weights.safetensors")
    single, _ = read_safetensors(tmp_path / "single" / "weights.safetensors")
    assert swept.keys() == single.keys()
    for name in swept:
        np.testing.assert_array_equal(swept[name], single[name], err_msg=name)


@pytest.mark.parametrize("backend, strategy", [
    ("torch", "auto"),
    pytest.param("jax", "loop", marks=pytest.mark.slow),  # a JAX worker's start-up and compiles: ~15 s
])
def test_workers_train_the_same_members_as_one_process(tmp_path, backend, strategy):
    """`--workers 2` splits the members over two processes pinned to one CPU each; every member's folder holds
    the weights, steps and scores that one process gives it, bit for bit, and the summary lists all of them."""
    import os

    pytest.importorskip(backend)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    from cogmeta.sweep import run_sweep
    from cogmeta.weights import read_safetensors

    config = RunConfig(model=ModelConfig(hidden_size=8), train=TrainConfig(steps=6, batch_size=4, eval_tasks=30))
    grid = {"train.learning_rate": [1e-2, 3e-3]}
    kwargs = dict(strategy=strategy, progress=False)
    one = run_sweep(config, tmp_path / "one", backend, [0, 1, 2], grid, **kwargs)
    two = run_sweep(config, tmp_path / "two", backend, [0, 1, 2], grid, workers=2, **kwargs)
    assert [row["member"] for row in two] == list(range(6))
    for mine, theirs in zip(one, two):
        assert {k: v for k, v in mine.items() if k != "seconds_per_member"} == \
               {k: v for k, v in theirs.items() if k != "seconds_per_member"}
        a, _ = read_safetensors(tmp_path / "one" / mine["folder"] / "weights.safetensors")
        b, _ = read_safetensors(tmp_path / "two" / theirs["folder"] / "weights.safetensors")
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{mine['folder']} {name}")
    assert (tmp_path / "two" / "summary.csv").read_text().count("\n") == 7


def test_workers_must_fit_the_cpus(tmp_path):
    import os

    from cogmeta.sweep import run_sweep

    cpus = len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match=rf"workers must be 'auto' or an integer from 1 to the {cpus} CPU\(s\) this "
                                         rf"process may use, got {cpus + 1}"):
        run_sweep(CONFIG, tmp_path / "s", "torch", [0], {}, workers=cpus + 1, progress=False)
    assert not (tmp_path / "s").exists()


def test_auto_workers_use_every_core_where_it_pays():
    """JAX's engine families: one process (the engine splits the members over one device per CPU); everything
    else: one process per CPU (at most one per member) from AUTO_WORKERS_FROM member-steps on, one below."""
    from cogmeta.cpu_workers import AUTO_WORKERS_FROM
    from cogmeta.presets import preset
    from cogmeta.sweep import auto_workers

    def members(config, count, steps):
        return expand(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps)),
                      list(range(count)), {})

    long = AUTO_WORKERS_FROM // 4
    assert auto_workers(members(CONFIG, 8, long), "jax", 2) == 1
    assert auto_workers(members(CONFIG, 8, long), "torch", 2) == 2
    assert auto_workers(members(CONFIG, 8, long), "torch", 16) == 8  # at most one per member
    assert auto_workers(members(CONFIG, 3, long), "torch", 2) == 1  # 3 x 1,000 member-steps: too short to repay
    assert auto_workers(members(CONFIG, 4, long), "torch", 1) == 1
    seq2seq = preset("seq2seq-me-cpu")  # no engine: JAX trains its members one after another, so processes help
    assert not seq2seq.family.engine_members
    assert auto_workers(members(seq2seq, 2, AUTO_WORKERS_FROM), "jax", 2) == 2


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("AUTO", "auto"), ("2", 2)])
def test_cli_workers_accepts_auto_or_a_count(text, expected):
    from cogmeta.cli_options import workers_option

    assert workers_option(text) == expected
    with pytest.raises(Exception, match="must be a whole number in"):
        workers_option("0")
