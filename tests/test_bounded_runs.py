"""The ``bounded_gru`` model family on the one pipeline: its config section, presets, run folders (train, resume,
fine-tune from a run, evaluate, sweep) and the heuristics grid written as run folders of that family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.config import BoundConfig, RunConfig
from cogmeta.experiments.heuristics import base_config, finetune_config, pretrain_config
from cogmeta.presets import preset

#: H 4, batch 8, 12 updates, a held-out check of 50 tasks every 6.
TINY = dataclasses.replace(base_config(hidden_size=4, batch_size=8, pretrain_steps=12), train=dataclasses.replace(
    base_config().train, steps=12, batch_size=8, log_every=3, checkpoint_every=6, eval_every=6, eval_tasks=50))


def _weights(run):
    from cogmeta.weights import load_weights

    return load_weights(run / "weights.safetensors", RunConfig.load(run / "config.json"))


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_presets_and_the_bound_section_round_trip():
    for condition in ("ranking", "direction", "none"):
        config = preset(f"heuristics-{condition}")
        assert config.model.family == "bounded_gru" and config.task.condition == condition
        assert (config.model.hidden_size, config.train.batch_size, config.train.learning_rate) == (64, 64, 1e-3)
        assert RunConfig.from_dict(config.to_dict(), strict=True) == config
    tuned = finetune_config(TINY, 0.01, 0, 10, "somewhere")
    data = tuned.to_dict()
    assert data["bound"] == {"beta": 0.01, "warmup_steps": 5, "stream": 1, "start_from": "somewhere"}
    assert RunConfig.from_dict(data, strict=True) == tuned
    assert "bound" not in preset("tutorial-gaussian").to_dict()  # only the family that reads it writes it


@pytest.mark.parametrize("changes,message", [
    ({"beta": -0.1}, r"BoundConfig.beta must lie in \[0.0, "),
    ({"warmup_steps": -1}, r"BoundConfig.warmup_steps must lie in \[0, "),
    ({"stream": -2}, r"BoundConfig.stream must lie in \[0, "),
    ({"start_from": " "}, "BoundConfig.start_from must be a run folder"),
])
def test_bad_bound_values_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        BoundConfig(**changes)


def test_cross_field_checks():
    with pytest.raises(ValueError, match=r"RunConfig.bound \(the description-length bound\) does not apply to model "
                                         r"family 'meta_learner'"):
        dataclasses.replace(preset("tutorial-gaussian"), bound=BoundConfig(beta=0.1))
    with pytest.raises(ValueError, match=r"bound.warmup_steps \(20\) must not exceed train.steps \(12\)"):
        dataclasses.replace(TINY, bound=BoundConfig(beta=0.1, warmup_steps=20))
    with pytest.raises(ValueError, match="train.until_kl needs an exact Bayes predictive"):
        dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, until_kl=0.01))


def test_torch_resume_is_bit_exact(tmp_path):
    """Interrupted at step 6 and resumed to 12: the weights and the metrics log equal an uninterrupted run's."""
    pytest.importorskip("torch")
    from cogmeta.training import train

    whole = tmp_path / "whole"
    train(TINY, whole, "torch", progress=False, figures=True)
    part = tmp_path / "part"
    train(dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=6)), part, "torch", progress=False,
          figures=False)
    train(TINY, part, "torch", resume=True, progress=False, figures=False)
    _assert_same(_weights(whole), _weights(part))
    assert (whole / "metrics.csv").read_text() == (part / "metrics.csv").read_text()
    assert "heldout_nll" in (whole / "metrics.csv").read_text()
    assert (whole / "figures" / "learning_curve.png").is_file() and (whole / "checkpoint.safetensors").is_file()


def test_torch_fine_tuning_from_a_run_equals_the_grid(tmp_path):
    """``bound.start_from`` starts a run exactly where the heuristics grid's stage 2 starts (log sigma reset,
    Adam fresh): the single run of a grid cell's config.json reproduces the grid's weights bit for bit."""
    pytest.importorskip("torch")
    from cogmeta.experiments.heuristics import train_grid
    from cogmeta.training import train

    grid = train_grid(TINY, ["none"], [1], "torch", betas=(0.02,), finetune_steps=8, out=tmp_path / "grid",
                      echo=lambda line: None)
    cell = tmp_path / "grid" / "none-beta0.02-seed1"
    config = RunConfig.load(cell / "config.json")
    assert config.bound == BoundConfig(beta=0.02, warmup_steps=4, stream=1,
                                       start_from=str(tmp_path / "grid" / "none-beta0-seed1"))
    _assert_same(_weights(cell), grid[("none", 0.02, 1)])
    train(config, tmp_path / "single", "torch", progress=False, figures=False)
    _assert_same(_weights(tmp_path / "single"), grid[("none", 0.02, 1)])
    stage1 = RunConfig.load(tmp_path / "grid" / "none-beta0-seed1" / "config.json")
    assert stage1 == pretrain_config(TINY, "none", 1)


def test_the_grid_reads_finished_cells_instead_of_training_them(tmp_path):
    pytest.importorskip("torch")
    from cogmeta.experiments.heuristics import train_grid

    first = train_grid(TINY, ["ranking"], [0], "torch", betas=(0.01,), finetune_steps=6, out=tmp_path,
                       echo=lambda line: None)
    lines = []
    again = train_grid(TINY, ["ranking"], [0], "torch", betas=(0.01,), finetune_steps=6, out=tmp_path,
                       echo=lines.append)
    assert any("pretrain: 1 run(s) read from their folders" in line for line in lines)
    assert any("fine-tune: 1 run(s) read from their folders" in line for line in lines)
    for key in first:
        _assert_same(first[key], again[key])
    with pytest.raises(FileExistsError, match="holds another run than this grid's cell"):
        train_grid(TINY, ["ranking"], [0], "torch", betas=(0.01,), finetune_steps=5, out=tmp_path,
                   echo=lambda line: None)


def test_torch_grid_over_two_worker_processes_equals_one_process(tmp_path):
    """`workers=2` splits each stage's cells over two processes pinned to one CPU each (PyTorch's way to the second
    core): every cell's weights are bit-identical to one process's, in order, and written to the same folders."""
    import os

    pytest.importorskip("torch")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    from cogmeta.experiments.heuristics import train_grid

    kwargs = dict(betas=(0.01,), finetune_steps=6, echo=lambda line: None)
    one = train_grid(TINY, ["ranking", "none"], [0, 1], "torch", workers=1, out=tmp_path / "one", **kwargs)
    lines = []
    two = train_grid(TINY, ["ranking", "none"], [0, 1], "torch", workers=2, out=tmp_path / "two",
                     **{**kwargs, "echo": lines.append})
    assert any("pretrain: 4 runs over 2 worker processes" in line for line in lines)
    assert one.keys() == two.keys() and len(one) == 8
    for key in one:
        _assert_same(one[key], two[key])
        _assert_same(_weights(tmp_path / "two" / f"{key[0]}-beta{key[1]:g}-seed{key[2]}"), one[key])
    with pytest.raises(ValueError, match="workers must be 'auto' or an integer from 1 to the"):
        train_grid(TINY, ["ranking"], [0], "torch", workers=0, **kwargs)


def test_start_from_errors(tmp_path):
    pytest.importorskip("torch")
    from cogmeta.training import train
    from cogmeta.weights import WeightsError

    missing = dataclasses.replace(TINY, bound=BoundConfig(start_from=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match="bound.start_from: no weights at"):
        train(missing, tmp_path / "a", "torch", progress=False, figures=False)
    train(TINY, tmp_path / "small", "torch", progress=False, figures=False)
    bigger = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, hidden_size=5),
                                 bound=BoundConfig(start_from=str(tmp_path / "small")))
    with pytest.raises(WeightsError, match="shape"):
        train(bigger, tmp_path / "b", "torch", progress=False, figures=False)


def test_cli_train_evaluate_and_sweep(tmp_path, capsys):
    """``cogmeta train --preset heuristics-*`` writes a run folder; ``cogmeta evaluate`` tables the pruned model
    beside the heuristics (its accuracy = the mean probability of the right choice, recomputed here);
    ``cogmeta sweep`` trains the family's members; a sweep refuses ``--start-from``."""
    pytest.importorskip("torch")
    from cogmeta.cli import main
    from cogmeta.experiments.heuristics import EVAL_SEED, eval_batch
    from torch_impl.bounded_gru import predict

    run = tmp_path / "run"
    tiny = ["--hidden-size", "4", "--batch-size", "8", "--steps", "12", "--eval-every", "6", "--eval-tasks", "50",
            "--no-progress", "--no-figures"]
    assert main(["train", "--preset", "heuristics-none", "--backend", "torch", "--out", str(run), "--summary-tasks",
                 "0", *tiny]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--num-tasks", "40", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "none condition, bounded GRU-4, beta 0" in out and "equal weighting" not in out and "\nEW " in out
    config = RunConfig.load(run / "config.json")
    batch = eval_batch(config.task, "none", 40, EVAL_SEED)
    _, prob = predict(_weights(run), batch.cues, batch.targets, 4, "pruned")
    accuracy = float(np.mean(np.where(batch.targets == 1, prob, 1 - prob)))
    model_line = next(line for line in out.splitlines() if line.startswith("torch beta 0 seed 0"))
    assert f"{accuracy:.3f}" in model_line.split()
    assert (run / "evaluation-torch.csv").is_file()

    sweep = tmp_path / "sweep"
    assert main(["sweep", "--preset", "heuristics-ranking", "--backend", "torch", "--seeds", "2", "--out", str(sweep),
                 "--grid", "bound.beta=0,0.05", *tiny[:-2], "--no-progress"]) == 0
    assert sorted(p.name for p in sweep.glob("member-*")) == [f"member-00{i}" for i in range(4)]
    assert RunConfig.load(sweep / "member-003" / "config.json").bound.beta == 0.05
    assert main(["sweep", "--preset", "heuristics-ranking", "--backend", "torch", "--seeds", "2", "--out",
                 str(tmp_path / "refused"), "--start-from", str(run), *tiny[:-2], "--no-progress"]) == 2
    assert "a sweep trains every member from fresh weights" in capsys.readouterr().err


@pytest.mark.slow
def test_jax_resume_is_bit_exact(tmp_path):
    """As the torch test, in JAX (slow: compilations of the training scan)."""
    pytest.importorskip("jax")
    from cogmeta.training import train

    config = dataclasses.replace(TINY, jax=dataclasses.replace(TINY.jax, steps_per_call=3))
    train(config, tmp_path / "whole", "jax", progress=False, figures=False)
    train(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=6)), tmp_path / "part", "jax",
          progress=False, figures=False)
    train(config, tmp_path / "part", "jax", resume=True, progress=False, figures=False)
    _assert_same(_weights(tmp_path / "whole"), _weights(tmp_path / "part"))
    assert (tmp_path / "whole" / "metrics.csv").read_text() == (tmp_path / "part" / "metrics.csv").read_text()


def test_torch_engine_trains_bounded_members_one_by_one():
    """``auto`` resolves to ``loop`` for the bounded GRU in PyTorch (its loss draws from a torch.Generator, which
    ``torch.func.vmap`` cannot batch), and an explicit ``vmap`` is refused with that reason."""
    pytest.importorskip("torch")
    from torch_impl.bounded_gru import make_objective
    from torch_impl.engine import Engine

    config = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=2))
    engine = Engine(make_objective(config), "auto")
    runs = engine.train([0, 1], progress=False)
    assert engine.strategy == "loop" and [run.steps for run in runs] == [2, 2]
    with pytest.raises(ValueError, match="cannot be trained with the 'vmap' strategy"):
        Engine(make_objective(config), "vmap").train([0, 1], progress=False)
