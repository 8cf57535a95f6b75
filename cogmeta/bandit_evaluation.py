"""Scoring a meta-learned bandit policy beside the classic and the exact Bayes-optimal policies.

Every policy plays the same held-out bandits with the same luck (the rewards come from the batch's uniforms,
``cogmeta.tasks.bandit.step``), and is scored by expectations given the arms' probabilities p, which removes
the reward noise from the comparison:

    reward   R = sum_t p_{a_t}                        (expected total reward of an episode)
    regret   sum_t (max_i p_i - p_{a_t})              (against an oracle that knows the better arm)
    vs Bayes sum_t (p_{a*_t} - p_{a_t})               (against the exact Bayes-optimal policy a*, two arms)

The exact optimum ``V_0`` of the dynamic programme (``cogmeta.baselines.bandit_dp``) is the expected
total reward of the Bayes-optimal policy over the prior; the mean of ``R`` over the held-out bandits estimates
it with sampling error (the table shows both).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cogmeta.baselines.bandit_policies import DEFAULT_GITTINS_GAMMA, chosen_probability, play
from cogmeta.config import RunConfig
from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask

#: Seed of the held-out bandits of ``cogmeta evaluate``; training draws from framework RNGs seeded by train.seed.
HELD_OUT_SEED = 20_161_109
#: Trials at the end of an episode over which the probability of the better arm is averaged in the table.
LAST_TRIALS = 10
MODEL = "meta-learner"


@dataclass
class PolicyScore:
    """One policy's scores on the held-out bandits.

    Attributes:
        name: policy name (``meta-learner`` for the trained agent).
        rewards: ``[B]`` expected total reward per bandit, ``sum_t p_{a_t}``.
        regret_curve: ``[n]`` mean expected regret against the better arm at each trial.
        best_arm_curve: ``[n]`` fraction of bandits whose action at trial t is a best arm.
        optimal_gap: ``[B]`` expected total reward of the Bayes-optimal policy minus this one's (None: no DP).
    """

    name: str
    rewards: np.ndarray
    regret_curve: np.ndarray
    best_arm_curve: np.ndarray
    optimal_gap: np.ndarray | None = None

    @property
    def mean_reward(self) -> float:
        return float(np.mean(self.rewards))

    @property
    def sem(self) -> float:
        return float(np.std(self.rewards, ddof=1) / np.sqrt(len(self.rewards))) if len(self.rewards) > 1 else 0.0

    @property
    def regret(self) -> float:
        return float(np.sum(self.regret_curve))

    @property
    def regret_vs_optimal(self) -> float | None:
        return None if self.optimal_gap is None else float(np.mean(self.optimal_gap))

    @property
    def best_arm_late(self) -> float:
        return float(np.mean(self.best_arm_curve[-LAST_TRIALS:]))


@dataclass
class BanditEvaluation:
    """Every policy's :class:`PolicyScore` on ``num_tasks`` held-out bandits of ``task``.

    Attributes:
        optimum: the exact Bayes-optimal expected total reward ``V_0`` (None where there is no DP: k > 2).
    """

    task: object
    num_tasks: int
    optimum: float | None
    scores: list[PolicyScore] = field(default_factory=list)

    def row(self, name: str) -> PolicyScore:
        for score in self.scores:
            if score.name == name:
                return score
        raise KeyError(f"no policy {name!r} in this evaluation; it has {', '.join(s.name for s in self.scores)}")

    def table(self) -> str:
        """Plain-text table, best reward first."""
        exact = "" if self.optimum is None else f"; exact Bayes-optimal expected total reward V_0 = {self.optimum:.4f}"
        lines = [f"{self.num_tasks} held-out bandits ({_describe(self.task)}){exact}",
                 f"{'policy':<14} {'reward':>9} {'+-sem':>7} {'regret':>8} {'vs Bayes':>9} "
                 f"{'P(best), last ' + str(LAST_TRIALS):>18}"]
        for score in sorted(self.scores, key=lambda s: -s.mean_reward):
            gap = "" if score.regret_vs_optimal is None else f"{score.regret_vs_optimal:.3f}"
            lines.append(f"{score.name:<14} {score.mean_reward:9.3f} {score.sem:7.3f} {score.regret:8.3f} {gap:>9} "
                         f"{score.best_arm_late:18.3f}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """Long format: policy, metric, trial (empty for totals), value."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(("policy", "metric", "trial", "value"))
        if self.optimum is not None:
            writer.writerow(("bayes_optimal_exact", "expected_total_reward", "", repr(self.optimum)))
        for score in self.scores:
            totals = {"mean_reward": score.mean_reward, "sem": score.sem, "regret": score.regret,
                      "best_arm_late": score.best_arm_late}
            if score.regret_vs_optimal is not None:
                totals["regret_vs_optimal"] = score.regret_vs_optimal
            for name, value in totals.items():
                writer.writerow((score.name, name, "", repr(value)))
            for name in ("regret_curve", "best_arm_curve"):
                for trial, value in enumerate(getattr(score, name)):
                    writer.writerow((score.name, name, trial, repr(float(value))))
        return buffer.getvalue()


def _describe(task) -> str:
    if isinstance(task, DependentBanditTask):
        return f"Wang et al.'s dependent bandit, n = {task.horizon}"
    return f"k = {task.arms}, n = {task.horizon}, p ~ Beta({task.alpha:g}, {task.beta:g})"


def baseline_names(task) -> tuple[str, ...]:
    """The classic policies that apply to ``task``: Gittins needs independent arms, the exact DP two arms."""
    names = ["random", "greedy", "thompson", "ucb1"]
    if isinstance(task, BernoulliBanditTask):
        names.append("gittins")
    if task.arms == 2:
        names.append("bayes_optimal")
    return tuple(names)


def exact_optimum(task) -> float | None:
    """``V_0`` of the exact dynamic programme (two arms), else None."""
    from cogmeta.baselines.bandit_dp import dependent_expected_total_reward, expected_total_reward

    if isinstance(task, DependentBanditTask):
        return dependent_expected_total_reward(task.horizon)
    if task.arms == 2:
        return expected_total_reward(task.horizon, task.alpha, task.beta)
    return None


def score_actions(name: str, batch: BanditBatch, actions: np.ndarray, optimal_actions: np.ndarray | None) -> PolicyScore:
    """A :class:`PolicyScore` from ``actions [n, B]`` on ``batch`` (and the Bayes-optimal ones, if known)."""
    chosen = chosen_probability(batch, actions)  # [n, B]
    best = np.max(np.asarray(batch.probabilities), axis=-1)[None]
    regret = best - chosen
    gap = None if optimal_actions is None else np.sum(chosen_probability(batch, optimal_actions) - chosen, axis=0)
    return PolicyScore(name, chosen.sum(axis=0), regret.mean(axis=1), (regret == 0).mean(axis=1), gap)


def model_actions(config: RunConfig, weights: Mapping[str, np.ndarray], backend: str, batch: BanditBatch,
                  greedy: bool = False, chunk: int = 5_000) -> np.ndarray:
    """``[n, B]`` actions of the trained agent on ``batch`` (``backend``'s ``rl2.play``, ``chunk`` bandits a call)."""
    from cogmeta.backends import load_module

    module = load_module(backend, "rl2")
    probabilities, rewards, actions = (np.asarray(a) for a in batch)
    parts = []
    for start in range(0, probabilities.shape[0], chunk):
        part = slice(start, start + chunk)  # the episode axis: first of p, second of the time-major uniforms
        episodes = BanditBatch(probabilities[part], rewards[:, part], actions[:, part])
        parts.append(module.play(config, weights, episodes, greedy=greedy)["actions"])
    return np.concatenate(parts, axis=1)


def evaluate(config: RunConfig, weights: Mapping[str, np.ndarray], backend: str, num_tasks: int = 10_000,
             seed: int = HELD_OUT_SEED, baselines: bool = True, greedy: bool = False) -> BanditEvaluation:
    """Play the trained agent (with ``backend``) and, with ``baselines``, every classic policy that applies, on
    ``num_tasks`` held-out bandits drawn from the numpy sampler with ``seed``."""
    if num_tasks < 2:
        raise ValueError(f"num_tasks must be >= 2, got {num_tasks}")
    task = config.task
    batch = task.sample(np.random.default_rng(seed), num_tasks, np.float64)
    optimal = None
    if task.arms == 2:
        optimal = play("bayes_optimal", task, batch).actions
    evaluation = BanditEvaluation(task, num_tasks, exact_optimum(task))
    evaluation.scores.append(score_actions(MODEL, batch, model_actions(config, weights, backend, batch, greedy), optimal))
    if baselines:
        for name in baseline_names(task):
            actions = optimal if name == "bayes_optimal" else play(
                name, task, batch, rng=np.random.default_rng(seed + 1), gamma=DEFAULT_GITTINS_GAMMA).actions
            evaluation.scores.append(score_actions(name, batch, actions, optimal))
    return evaluation


def plot_policies(evaluation: BanditEvaluation, title: str = ""):
    """Two panels over trials: mean expected regret against the better arm, and P(best arm), one line per policy."""
    from cogmeta.figures import figure_grid

    fig, (ax_regret, ax_best) = figure_grid(1, 2, (10.5, 3.8), suptitle=True)
    for index, score in enumerate(sorted(evaluation.scores, key=lambda s: -s.mean_reward)):
        trials = np.arange(1, len(score.regret_curve) + 1)
        style = dict(lw=2.2, color="k") if score.name == MODEL else dict(lw=1.1, color=f"C{index}")
        ax_regret.plot(trials, score.regret_curve, label=f"{score.name} ({score.mean_reward:.2f})", **style)
        ax_best.plot(trials, score.best_arm_curve, label=score.name, **style)
    ax_regret.set_xlabel("trial")
    ax_regret.set_ylabel("expected regret per trial")
    ax_regret.legend(frameon=False, fontsize=8, title="policy (mean total reward)", title_fontsize=8)
    ax_best.set_xlabel("trial")
    ax_best.set_ylabel("P(better arm)")
    ax_best.set_ylim(0.4 if evaluation.task.arms == 2 else 0.0, 1.0)
    fig.suptitle(title or f"{_describe(evaluation.task)}, {evaluation.num_tasks} held-out bandits")
    return fig


def plot_training(rows: Sequence[tuple[int, str, float]], optimum: float | None):
    """The A2C loss (window means) and the held-out expected total reward over training, with ``V_0``."""
    from cogmeta.figures import figure_grid
    from cogmeta.metrics_log import metric_series

    fig, (ax_loss, ax_reward) = figure_grid(1, 2, (10, 3.6))
    steps, loss = metric_series(rows, "loss")
    ax_loss.plot(steps, loss, lw=1.2)
    ax_loss.set_xlabel("update")
    ax_loss.set_ylabel("A2C loss (window mean)")
    steps, reward = metric_series(rows, "heldout_reward")
    ax_reward.plot(steps, reward, marker="o", ms=3, lw=1.2, color="C1", label="meta-learner (held-out)")
    if optimum is not None:
        ax_reward.axhline(optimum, color="k", ls="--", lw=1, label=f"Bayes-optimal V_0 = {optimum:.2f}")
    ax_reward.set_xlabel("update")
    ax_reward.set_ylabel("expected total reward")
    ax_reward.legend(frameon=False)
    return fig


def write_figures(evaluation: BanditEvaluation, folder: str | Path, backend: str) -> list[Path]:
    """``policies.png`` (regret and P(better arm) per trial of every policy) into ``folder``."""
    from cogmeta.figures import save_figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{_describe(evaluation.task)}: meta-learner ({backend}) and reference policies, {evaluation.num_tasks} bandits"
    return [save_figure(plot_policies(evaluation, title), folder / "policies.png")]


__all__ = ["BanditEvaluation", "HELD_OUT_SEED", "MODEL", "PolicyScore", "baseline_names", "evaluate", "exact_optimum",
           "model_actions", "plot_policies", "plot_training", "score_actions", "write_figures"]
