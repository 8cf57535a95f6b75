"""Scoring a meta-learner against the exact Bayes-optimal predictive.

For each prefix length t = 0..T-1 the score is the exact KL(p_Bayes(x_{t+1} | x_{1:t}) || q_model),
averaged over held-out tasks drawn from the numpy reference sampler. By the proof in the tutorial
(Aitchison 1975), model NLL - Bayes NLL = E[KL] >= 0, so this is the quantity training drives to 0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.predictive import kl_divergence, nll
from cogmeta.tasks import Task

#: Seed of the held-out task stream; training streams come from framework RNGs seeded by train.seed.
HELD_OUT_SEED = 20_221_010


@dataclass
class Evaluation:
    """Per-step evaluation results, each ``[T]``.

    Attributes:
        kl: mean exact KL(Bayes || model).
        kl_sem: standard error of that mean over tasks.
        model_nll: mean NLL of the model on the held-out next observations.
        bayes_nll: mean NLL of the exact predictive on the same observations.
        expected_nll: the exact expected NLL of the Bayes predictive (no sampling error).
        num_tasks: held-out tasks.
    """

    kl: np.ndarray
    kl_sem: np.ndarray
    model_nll: np.ndarray
    bayes_nll: np.ndarray
    expected_nll: np.ndarray
    num_tasks: int

    @property
    def mean_kl(self) -> float:
        """KL averaged over t = 0..T-1."""
        return float(np.mean(self.kl))

    def table(self) -> str:
        """A fixed-width text table, one row per t."""
        lines = [f"{'t':>4} {'KL(Bayes||model)':>18} {'+-sem':>9} {'model NLL':>10} {'Bayes NLL':>10} {'exact E[NLL]':>13}"]
        for t in range(len(self.kl)):
            lines.append(
                f"{t:>4} {self.kl[t]:>18.6f} {self.kl_sem[t]:>9.6f} {self.model_nll[t]:>10.5f} "
                f"{self.bayes_nll[t]:>10.5f} {self.expected_nll[t]:>13.5f}"
            )
        lines.append(f"mean KL over t = 0..{len(self.kl) - 1}: {self.mean_kl:.6f} nats ({self.num_tasks} held-out tasks)")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """Long-format CSV: t, metric, value."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(("t", "metric", "value"))
        for name in ("kl", "kl_sem", "model_nll", "bayes_nll", "expected_nll"):
            for t, value in enumerate(getattr(self, name)):
                writer.writerow((t, name, repr(float(value))))
        return buffer.getvalue()


def held_out_observations(task: Task, num_tasks: int, seed: int = HELD_OUT_SEED) -> np.ndarray:
    """``[T, num_tasks, 1]`` float64 observations from the numpy reference sampler."""
    return task.sample(np.random.default_rng(seed), num_tasks, np.float64).observations


def score_predictions(task: Task, observations: np.ndarray, model: Mapping[str, np.ndarray]) -> Evaluation:
    """Compare model predictive parameters (``[T, B]`` each) with the exact predictive."""
    exact = task.posterior_predictive(observations)
    kl = kl_divergence(task.family, exact, model)
    batch = kl.shape[1]
    return Evaluation(
        kl=kl.mean(axis=1),
        kl_sem=kl.std(axis=1, ddof=1) / np.sqrt(batch) if batch > 1 else np.zeros(kl.shape[0]),
        model_nll=nll(task.family, model, observations).mean(axis=1),
        bayes_nll=nll(task.family, exact, observations).mean(axis=1),
        expected_nll=task.expected_nll(),
        num_tasks=batch,
    )


def evaluate(
    config: RunConfig,
    weights: Mapping[str, np.ndarray],
    backend: str,
    num_tasks: int = 20_000,
    seed: int = HELD_OUT_SEED,
    chunk: int = 5_000,
) -> Evaluation:
    """Run the model with ``backend`` on held-out tasks and score it against exact Bayes."""
    from cogmeta.backends import load_backend

    if num_tasks < 2:
        raise ValueError(f"num_tasks must be >= 2, got {num_tasks}")
    module = load_backend(backend)
    observations = held_out_observations(config.task, num_tasks, seed)
    parts = [module.predict(config, weights, observations[:, i : i + chunk]) for i in range(0, num_tasks, chunk)]
    model = {name: np.concatenate([part[name] for part in parts], axis=1) for name in parts[0]}
    return score_predictions(config.task, observations, model)
