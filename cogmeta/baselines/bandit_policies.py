"""Classic bandit policies played on a :class:`~cogmeta.tasks.bandit.BanditBatch`, and their metrics (numpy).

Every policy sees only its own past actions and rewards, summed up per arm as ``successes [B, k]`` and
``failures [B, k]``; rewards come from :func:`cogmeta.tasks.bandit.step`, so on the same batch every policy
meets the same luck. Policies (``play(name, ...)``):

* ``random``: uniform over arms, drawn from ``action_uniform`` by inverse CDF.
* ``greedy``: highest posterior mean ``(a + s) / (a + b + s + f)``; ties broken uniformly at random with
  ``action_uniform``.
* ``thompson`` (Thompson 1933): draw ``p_i ~ Beta(a + s_i, b + f_i)`` with the Generator ``rng``, play the
  argmax.
* ``ucb1`` (Auer, Cesa-Bianchi & Fischer 2002): play each arm once (lowest unplayed arm first), then
  ``argmax_i s_i / n_i + sqrt(2 ln t / n_i)`` with t the trials done so far; ties -> lowest arm.
* ``gittins``: largest Gittins index at discount ``gamma`` (:mod:`cogmeta.baselines.gittins`); ties broken at
  random like greedy. Default ``gamma = DEFAULT_GITTINS_GAMMA`` (0.95). The index policy is optimal for
  discounted rewards, so over a finite horizon the discount is a tuning knob; on 20,000 bandits of horizon 100
  (same bandits for each gamma) the expected totals were 64.83 / 64.92 / 64.98 for gamma = 0.9 / 0.93 / 0.95
  at k = 2 (Bayes-optimal 65.06 on those bandits) and 78.00 / 78.27 / 78.41 at k = 5. 0.95 is near the largest
  discount whose 1e-9-accurate index table stays cheap (about 14 s once, 4x the cost of 0.9).
* ``bayes_optimal``: the exact finite-horizon policy (:mod:`cogmeta.baselines.bandit_dp`); two arms only.

Prior (a, b): the task's alpha, beta for :class:`BernoulliBanditTask`. For :class:`DependentBanditTask` the
Bayesian policies use the task's own model: ``p_0 ~ Beta(1 + h, 1 + m)`` with ``h = s_0 + f_1`` and
``m = f_0 + s_1``, greedy plays arm 0 iff ``E p_0 > 1/2`` (ties at random), Thompson draws p_0 and plays arm 0
iff ``p_0 > 1/2``; ``gittins`` is refused there (its theorem needs independent arms).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from cogmeta._validation import require_choice
from cogmeta.baselines.bandit_dp import solve_dependent, solve_two_armed
from cogmeta.baselines.gittins import GittinsPolicy
from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask, sample_action, step

POLICIES = ("random", "greedy", "thompson", "ucb1", "gittins", "bayes_optimal")
DEFAULT_GITTINS_GAMMA = 0.95


class PlayResult(NamedTuple):
    """``actions [n, B]`` int64 and ``rewards [n, B]`` in the batch's float dtype."""

    actions: np.ndarray
    rewards: np.ndarray


# A chooser maps (trial, successes [B, k], failures [B, k], action_uniform [B]) to actions [B].
Chooser = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _argmax_random_ties(scores: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """argmax over the last axis, a tie broken uniformly by ``uniform [B]`` (inverse CDF over the tied arms)."""
    best = scores == scores.max(axis=-1, keepdims=True)
    return sample_action(best / best.sum(axis=-1, keepdims=True), uniform)


def _dependent_evidence(successes: np.ndarray, failures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, m): evidence for and against p_0 in the dependent bandit."""
    return successes[:, 0] + failures[:, 1], failures[:, 0] + successes[:, 1]


def _chooser(name: str, task: Any, rng: np.random.Generator | None, gamma: float) -> Chooser:
    dependent = isinstance(task, DependentBanditTask)
    a, b = (1.0, 1.0) if dependent else (task.alpha, task.beta)

    if name == "random":
        return lambda t, s, f, u: sample_action(np.full(s.shape, 1.0 / s.shape[-1]), u)
    if name == "greedy" and dependent:
        def greedy_dependent(t, s, f, u):
            h, m = _dependent_evidence(s, f)
            mean = (1 + h) / (2 + h + m)
            return _argmax_random_ties(np.stack([mean, 1 - mean], axis=-1), u)
        return greedy_dependent
    if name == "greedy":
        return lambda t, s, f, u: _argmax_random_ties((a + s) / (a + b + s + f), u)
    if name == "thompson":
        if not isinstance(rng, np.random.Generator):
            raise ValueError("play: thompson needs rng=np.random.default_rng(seed) for its posterior samples")
        if dependent:
            def thompson_dependent(t, s, f, u):
                h, m = _dependent_evidence(s, f)
                return (rng.beta(1 + h, 1 + m) <= 0.5).astype(np.int64)
            return thompson_dependent
        return lambda t, s, f, u: np.argmax(rng.beta(a + s, b + f), axis=-1)
    if name == "ucb1":
        def ucb1(t, s, f, u):
            pulls = s + f
            unplayed = pulls == 0
            with np.errstate(divide="ignore", invalid="ignore"):
                score = s / pulls + np.sqrt(2 * np.log(max(t, 1)) / pulls)
            return np.where(unplayed.any(axis=-1), np.argmax(unplayed, axis=-1), np.argmax(score, axis=-1))
        return ucb1
    if name == "gittins":
        if dependent:
            raise ValueError("play: gittins needs independent arms; DependentBanditTask's arms are coupled")
        policy = GittinsPolicy(gamma, a, b)
        return lambda t, s, f, u: _argmax_random_ties(policy.indices(s, f), u)
    # bayes_optimal
    if dependent:
        solution = solve_dependent(task.horizon)
    elif task.arms != 2:
        raise ValueError(f"play: bayes_optimal solves two-armed bandits only, task has arms={task.arms}")
    else:
        solution = solve_two_armed(task.horizon, a, b)
    return lambda t, s, f, u: solution.optimal_action(s[:, 0], f[:, 0], s[:, 1], f[:, 1])


def play(
    policy_name: str,
    task: BernoulliBanditTask | DependentBanditTask,
    batch: BanditBatch,
    *,
    rng: np.random.Generator | None = None,
    gamma: float = DEFAULT_GITTINS_GAMMA,
) -> PlayResult:
    """Play ``policy_name`` on every episode of ``batch`` (drawn from ``task``).

    Args:
        policy_name: one of :data:`POLICIES`.
        task: the task the batch came from (its prior and horizon).
        batch: ``probabilities [B, k]``, ``reward_uniform [n, B, k]``, ``action_uniform [n, B]``.
        rng: seeded Generator, required by ``thompson``.
        gamma: discount of ``gittins``.

    Returns:
        :class:`PlayResult` with ``actions [n, B]`` and ``rewards [n, B]``.
    """
    require_choice("play", "policy_name", policy_name, POLICIES)
    if not isinstance(task, (BernoulliBanditTask, DependentBanditTask)):
        raise ValueError(f"play: task must be a BernoulliBanditTask or DependentBanditTask, got {type(task).__name__}")
    uniform = np.asarray(batch.reward_uniform)
    horizon, size, arms = uniform.shape
    if (horizon, arms) != (task.horizon, task.arms):
        raise ValueError(f"play: batch has n={horizon}, k={arms} but the task has n={task.horizon}, k={task.arms}")
    choose = _chooser(policy_name, task, rng, gamma)
    successes = np.zeros((size, arms), dtype=np.int64)
    failures = np.zeros((size, arms), dtype=np.int64)
    actions = np.empty((horizon, size), dtype=np.int64)
    rewards = np.empty((horizon, size), dtype=uniform.dtype)
    rows = np.arange(size)
    for t in range(horizon):
        actions[t] = choose(t, successes, failures, np.asarray(batch.action_uniform)[t])
        rewards[t] = step(batch, t, actions[t])
        won = rewards[t].astype(np.int64)
        successes[rows, actions[t]] += won
        failures[rows, actions[t]] += 1 - won
    return PlayResult(actions, rewards)


def chosen_probability(batch: BanditBatch, actions: np.ndarray) -> np.ndarray:
    """``p_{a_t}``, the expected reward of each action: ``[n, B]``."""
    probabilities = np.asarray(batch.probabilities)
    actions = np.asarray(actions)
    return np.take_along_axis(probabilities[None], actions[..., None], axis=-1)[..., 0]


def regret_per_trial(batch: BanditBatch, actions: np.ndarray) -> np.ndarray:
    """Expected regret against the best arm, ``max_i p_i - p_{a_t}``: ``[n, B]``."""
    return np.max(np.asarray(batch.probabilities), axis=-1)[None] - chosen_probability(batch, actions)


def best_arm_probability(batch: BanditBatch, actions: np.ndarray) -> np.ndarray:
    """Fraction of episodes whose action at trial t is a best arm (``p_{a_t} = max_i p_i``): ``[n]``."""
    return np.mean(regret_per_trial(batch, actions) == 0, axis=-1)


def total_expected_reward(batch: BanditBatch, actions: np.ndarray) -> np.ndarray:
    """``sum_t p_{a_t}``, each episode's expected total reward given its arms' p: ``[B]``."""
    return np.sum(chosen_probability(batch, actions), axis=0)
