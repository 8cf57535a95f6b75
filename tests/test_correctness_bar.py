"""The correctness bar with the default recipe (slow: about a minute per run; `pytest --runslow`).

`cogmeta train` defaults must reach a mean exact KL(Bayes || model) below 0.005 nats over t = 0..T-1 on
20,000 held-out tasks, for both tasks, both backends, and a non-default Gaussian spec. The quick variant
with a small budget lives in tests/test_*_backend.py.
"""

from __future__ import annotations

import pytest

from cogmeta import CoinTask, GaussianMeanTask, RunConfig
from cogmeta.evaluation import evaluate
from cogmeta.training import train
from cogmeta.weights import load_weights

TASKS = {
    "gaussian": GaussianMeanTask(),
    "gaussian-variant": GaussianMeanTask(prior_mean=2.0, prior_std=0.5, noise_std=0.7),
    "coin": CoinTask(),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_default_recipe_reaches_the_bar(tmp_path, backend, task_name, record_property):
    pytest.importorskip("torch" if backend == "torch" else "jax")
    config = RunConfig(task=TASKS[task_name])
    result = train(config, tmp_path / "run", backend, progress=False, figures=False)
    weights = load_weights(result.run_dir / "weights.safetensors", config)
    evaluation = evaluate(config, weights, backend, num_tasks=20_000)
    record_property("mean_kl", evaluation.mean_kl)
    record_property("seconds", result.seconds)
    print(f"{task_name} {backend}: mean KL {evaluation.mean_kl:.6f} nats, {result.seconds:.1f} s")
    assert evaluation.mean_kl < 0.005
