"""Choice likelihoods and model selection: lapse fit, BIC, BIC weights, random-effects Bayesian model selection.

A model gives p_i = p(choice_i = 1) on each of a participant's n trials; with q_i the probability of the
choice actually made (p_i if choice_i = 1, else 1 - p_i) and a lapse rate eps in [0, 1] (with probability
eps the participant picks an option at random),

    LL(eps) = sum_i log((1 - eps) q_i + eps / 2).

LL is concave in eps (a sum of logs of affine functions), so its maximiser is unique: eps = 0 when
dLL/deps <= 0 at 0, eps = 1 when dLL/deps >= 0 at 1 (the model does worse than chance), otherwise the root
of dLL/deps = sum_i (1/2 - q_i) / ((1 - eps) q_i + eps / 2), found by bisection to 2^-60.

BIC = -2 LL + k ln n, with k the fitted parameters. Convention of this library: the lapse rate counts
1 when fitted; the beta of the meta-learned model, chosen from a grid, counts 1; fixed heuristics have no
other parameter; pure guessing (p = 1/2) has k = 0 (a lapse cannot change it).

Posterior model probabilities per participant (equal prior over the M models, log evidence ~ -BIC / 2):

    w_m = exp(-BIC_m / 2) / sum_j exp(-BIC_j / 2)                                   ("BIC weights")

Group level: random-effects Bayesian model selection (Stephan et al. 2009, NeuroImage 46:1004; the
variational scheme of their eq. 14): model frequencies r ~ Dir(alpha_0 = 1), each participant's model
m_n ~ Cat(r), and with L_nm = -BIC_nm / 2 iterate to convergence

    u_nm = L_nm + psi(alpha_m) - psi(sum_j alpha_j),   g_nm = softmax_m(u_nm),   alpha_m = alpha_0 + sum_n g_nm.

Reported: alpha, the expected frequencies alpha_m / sum_j alpha_j and the exceedance probabilities
P(r_m > r_j for all j != m) under Dir(alpha) (Monte Carlo, fixed seed).
"""

from __future__ import annotations

import numpy as np

#: Bisection steps of the lapse fit (each halves the interval [0, 1]).
BISECTION_STEPS = 60
#: Dirichlet samples for the exceedance probabilities.
EXCEEDANCE_SAMPLES = 100_000


def chosen_probability(prob: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """q = p where the choice is 1, 1 - p where it is 0 (same shape)."""
    prob = np.asarray(prob, np.float64)
    return np.where(np.asarray(choices) == 1, prob, 1.0 - prob)


def log_likelihood(chosen: np.ndarray, mask: np.ndarray, lapse: float | np.ndarray = 0.0) -> np.ndarray:
    """sum over the trials of ``mask`` of log((1 - eps) q + eps / 2), for ``chosen`` q ``[..., n]`` (last axis:
    trials) and ``lapse`` eps broadcast against the leading axes; -inf where a choice had probability 0."""
    chosen, mask = np.asarray(chosen, np.float64), np.asarray(mask, bool)
    lapse = np.asarray(lapse, np.float64)[..., None]
    with np.errstate(divide="ignore"):
        terms = np.log((1.0 - lapse) * chosen + lapse / 2.0)
    return np.sum(np.where(mask, terms, 0.0), axis=-1)


def fit_lapse(chosen: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maximum-likelihood lapse rate of each row: ``chosen``, ``mask`` ``[P, n]`` -> (eps ``[P]``, LL ``[P]``).

    Module doc: the derivative of the concave LL is decreasing in eps, so bisection on its sign converges to
    the unique maximiser; rows whose derivative is <= 0 at 0 (or >= 0 at 1) stay at the boundary.
    """
    chosen, mask = np.atleast_2d(np.asarray(chosen, np.float64)), np.atleast_2d(np.asarray(mask, bool))

    def slope(eps):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = (0.5 - chosen) / ((1.0 - eps[:, None]) * chosen + eps[:, None] / 2.0)
        return np.sum(np.where(mask, terms, 0.0), axis=-1)  # +inf where some q = 0 at eps = 0

    low, high = np.zeros(len(chosen)), np.ones(len(chosen))
    at_zero, at_one = slope(low) <= 0, slope(high) >= 0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        rising = slope(middle) > 0
        low, high = np.where(rising, middle, low), np.where(rising, high, middle)
    lapse = np.where(at_zero, 0.0, np.where(at_one, 1.0, (low + high) / 2))
    return lapse, log_likelihood(chosen, mask, lapse)


def bic(log_lik, num_params, num_trials) -> np.ndarray:
    """BIC = -2 LL + k ln n (elementwise, broadcast)."""
    return -2.0 * np.asarray(log_lik, np.float64) + np.asarray(num_params) * np.log(np.asarray(num_trials, np.float64))


def bic_weights(bics: np.ndarray) -> np.ndarray:
    """Posterior model probabilities exp(-BIC/2) / sum exp(-BIC/2) over the last axis (equal priors)."""
    from scipy import special  # here, not at import: scipy costs every cogmeta command ~0.15 s to load

    log_evidence = -0.5 * np.asarray(bics, np.float64)
    return np.exp(log_evidence - special.logsumexp(log_evidence, axis=-1, keepdims=True))


def random_effects_bms(log_evidence: np.ndarray, alpha0: float = 1.0, tolerance: float = 1e-10,
                       max_iterations: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Random-effects Bayesian model selection (module doc) from ``log_evidence`` ``[N, M]`` (e.g. -BIC / 2).

    Returns ``{"alpha": [M], "frequency": [M], "exceedance": [M], "assignment": [N, M]}`` (``assignment``:
    g_nm, the posterior probability that participant n uses model m under the group-level model).
    """
    from scipy import special

    log_evidence = np.asarray(log_evidence, np.float64)
    if log_evidence.ndim != 2 or 0 in log_evidence.shape:
        raise ValueError(f"log_evidence must have shape [participants, models], got {log_evidence.shape}")
    if not np.all(np.isfinite(log_evidence)):
        raise ValueError("log_evidence must be finite (a model gave a choice probability 0: fit a lapse rate)")
    models = log_evidence.shape[1]
    alpha = np.full(models, float(alpha0))
    for _ in range(max_iterations):
        u = log_evidence + special.digamma(alpha) - special.digamma(alpha.sum())
        g = np.exp(u - special.logsumexp(u, axis=1, keepdims=True))
        updated = alpha0 + g.sum(axis=0)
        converged = np.max(np.abs(updated - alpha)) < tolerance
        alpha = updated
        if converged:
            break
    draws = np.random.default_rng(seed).dirichlet(alpha, EXCEEDANCE_SAMPLES)
    exceedance = np.bincount(np.argmax(draws, axis=1), minlength=models) / EXCEEDANCE_SAMPLES
    return {"alpha": alpha, "frequency": alpha / alpha.sum(), "exceedance": exceedance, "assignment": g}
