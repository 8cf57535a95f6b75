"""The heuristics experiment: metrics against hand-computed references, the JAX grid (vmap over
conditions x betas) against single runs, a tiny end-to-end run per backend, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cogmeta.contract import kl_weight
from cogmeta.experiments.heuristics import (
    BoundedRecipe,
    bernoulli_kl,
    cell_metrics,
    check_bars,
)
from cogmeta.tasks.paired_comparison import ComparisonBatch

TINY = BoundedRecipe(hidden_size=4, batch_size=8, pretrain_steps=6, finetune_steps=4, betas=(0.01,))


def test_kl_weight_warmup():
    assert [kl_weight(k, 0.2, 4) for k in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert kl_weight(0, 0.3, 0) == 0.3


def test_cell_metrics_against_hand_computation():
    mean = np.zeros((10, 2, 4))
    mean[:, 0] = [1.0, 0, 0, 0]  # single cue
    mean[:, 1] = [1.0, -1.0, 1.0, 1.0]  # equal weighting (signs do not matter)
    targets = np.array([[1.0, 0.0]] * 10)
    prob = np.array([[0.8, 0.3]] * 10)
    batch = ComparisonBatch(np.zeros((10, 2, 4)), targets, np.zeros((2, 4)))
    row = cell_metrics(mean, prob, batch, {"same": prob, "half": np.full((10, 2), 0.5)})
    assert row["gini_1"] == pytest.approx(0.375) and row["gini_8"] == pytest.approx(0.375)
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["kl_same"] == pytest.approx(0.0)
    expected = 10 * np.mean([0.5 * np.log(0.5 / 0.8) + 0.5 * np.log(0.5 / 0.2), 0.5 * np.log(0.5 / 0.3) + 0.5 * np.log(0.5 / 0.7)])
    assert row["kl_half"] == pytest.approx(expected)
    assert bernoulli_kl(np.array(0.3), np.array(0.3)) == pytest.approx(0.0)


def test_bars_read_the_right_cells():
    rows = [
        {"backend": "jax", "condition": "ranking", "beta": 0.03, "seed": 0, "gini_8": 0.7, "accuracy": 0.6, "kept_weights": 0.1},
        {"backend": "jax", "condition": "ranking", "beta": 0.0, "seed": 0, "gini_8": 0.4, "accuracy": 0.76, "kept_weights": 1.0},
        {"backend": "jax", "condition": "direction", "beta": 0.03, "seed": 0, "gini_8": 0.2, "accuracy": 0.7, "kept_weights": 0.1},
    ]
    bars = {text.split(":")[0] + (" acc" if "accuracy" in text else ""): met for text, _, _, met in check_bars(rows)}
    assert bars == {"ranking": True, "direction": False, "ranking acc": True}


@pytest.mark.slow
def test_jax_grid_equals_single_runs():
    """vmap over (condition, beta) runs gives each run's own result (the grid mixes nothing up).

    Slow: two XLA compilations of the training scan (~110 s on a loaded 2-core machine)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from flax import nnx

    from cogmeta.tasks.paired_comparison import PairedComparisonTask
    from jax_impl.bounded_gru import BoundedMetaLearner
    from jax_impl.bounded_training import make_grid_run, make_run
    from jax_impl.optim import init_adam

    task = PairedComparisonTask(num_trials=5)
    train = TINY.train_config()
    graphdef, params = nnx.split(BoundedMetaLearner(4, 4, rngs=nnx.Rngs(0)), nnx.Param)
    conditions, betas = jnp.array([0, 1, 2]), jnp.array([0.0, 0.01, 0.1])
    keys = jnp.stack([jax.random.key(i) for i in range(3)])
    stacked = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
    opt = jax.vmap(init_adam)(stacked)
    grid_params, _, grid_out = make_grid_run(graphdef, task, train, 5, 3)(stacked, opt, keys, conditions, betas, 0)
    single = jax.jit(make_run(graphdef, task, train, 5, 3))
    for g in range(3):
        p, _, out = single(params, init_adam(params), keys[g], conditions[g], betas[g], 0)
        np.testing.assert_allclose(np.asarray(grid_out.loss[g]), np.asarray(out.loss), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[g], grid_params)), jax.tree.leaves(p)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(grid_out.loss[0]), np.asarray(grid_out.loss[2]))


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_tiny_experiment_end_to_end(backend, tmp_path):
    """The whole command path on a tiny recipe (JAX: slow, two XLA compilations of the training scan)."""
    pytest.importorskip(backend)
    from cogmeta.experiments.heuristics import run_experiment

    rows = run_experiment(("ranking", "direction"), backend, TINY, seeds=(0,), out=tmp_path, eval_tasks=20,
                          figures=True, echo=lambda *_: None)
    cells = {(r["condition"], r["beta"]) for r in rows if r["backend"] == backend}
    assert cells == {("ranking", 0.0), ("ranking", 0.01), ("direction", 0.0), ("direction", 0.01)}
    assert (tmp_path / "heuristics.csv").exists() and (tmp_path / "heuristics-gini.png").exists()
    assert "paper" in (tmp_path / "summary.md").read_text()


def test_cli_bad_input(capsys):
    from cogmeta.cli import main

    with pytest.raises(SystemExit) as exit_info:  # argparse: EXPERIMENT has choices
        main(["experiment", "heuristics", "both", "--pretrain-steps", "1"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'both' (choose from 'ranking', 'direction', 'none', 'all')" in capsys.readouterr().err
    # bad values: the recipe's ValueError, reported by main as one line with exit code 2 (nothing trains)
    for args, message in ((["--betas", "-0.1"], "BoundedRecipe.betas must be >= 0"),
                          (["--seeds", "0"], "heuristics.seeds must lie in [1, inf], got 0"),
                          (["--hidden-size", "0"], "BoundedRecipe.hidden_size"),
                          (["--lr", "0"], "BoundedRecipe.learning_rate must be > 0"),
                          (["--eval-tasks", "0"], "heuristics.eval_tasks")):
        assert main(["experiment", "heuristics", "ranking", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cogmeta: error: ") and message in err and err.count("\n") == 1, err
