"""Fitting people to the paired-comparison models: the participant CSV (format and errors), the likelihood
against hand computations, the lapse fit, BIC arithmetic, random-effects model selection in closed-form
cases, model recovery on a small simulated study, and the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from cogmeta.experiments.heuristics_fitting import (
    FitResult,
    fit_participants,
    format_fit_summary,
    model_probabilities,
    num_parameters,
)
from cogmeta.experiments.heuristics_recovery import accuracy, beta_recovery, confusion, recover
from cogmeta.fitting import (
    ParticipantDataError,
    bic,
    bic_weights,
    fit_lapse,
    from_arrays,
    load_participants,
    log_likelihood,
    random_effects_bms,
    write_participants,
)

TAU = math.sqrt(2) * 0.1  # the probit learners' tau = sqrt(2) sigma, sigma = 0.1

BINZ_HEADER = "participant,task,step,x0,x1,x2,x3,choice,target,time"


def _csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------- data format
def test_reads_binz_format(tmp_path):
    """Binz et al.'s header (``step``, ``time`` ignored); tasks of different length are padded and masked."""
    path = _csv(tmp_path, "\n".join([
        BINZ_HEADER,
        "7,0,0,0.5,-1,2,0,1,1,100.0",
        "7,0,1,1.5,0,0,-2,0,1,200.0",
        "7,1,0,-0.5,1,0,0,0,0,300.0",
        "8,0,0,1,1,1,1,1,0,400.0",
    ]) + "\n")
    first, second = load_participants(path)
    assert (first.participant, first.tasks, second.participant) == ("7", ("0", "1"), "8")
    assert first.cues.shape == (2, 2, 4) and first.num_trials == 3
    np.testing.assert_array_equal(first.cues[:, 0], [[0.5, -1, 2, 0], [1.5, 0, 0, -2]])
    np.testing.assert_array_equal(first.cues[:, 1], [[-0.5, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(first.mask, [[True, True], [True, False]])
    np.testing.assert_array_equal(first.choices, [[1, 0], [0, 0]])
    np.testing.assert_array_equal(first.targets, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(load_participants(path, negate_cues=True)[0].cues, -first.cues)


def test_option_cues_give_differences(tmp_path):
    path = _csv(tmp_path, "participant,task,trial,a0,a1,b0,b1,choice,target\np,t,1,1,2,0.5,3,1,0\np,t,2,0,0,1,1,0,1\n")
    (data,) = load_participants(path)
    np.testing.assert_array_equal(data.cues[:, 0], [[0.5, -1], [-1, -1]])


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    participants = [from_arrays(f"p{i}", rng.standard_normal((4, 3, 2)), rng.integers(0, 2, (4, 3)),
                                rng.integers(0, 2, (4, 3))) for i in range(2)]
    write_participants(tmp_path / "out.csv", participants, {"generator": ["a", "b"]})
    for written, read in zip(participants, load_participants(tmp_path / "out.csv")):
        assert read.participant == written.participant and read.tasks == written.tasks
        for name in ("cues", "targets", "choices", "mask"):
            np.testing.assert_array_equal(getattr(read, name), getattr(written, name))


@pytest.mark.parametrize("text, message", [
    ("participant,task,trial,x0,x1,choice\n", "missing column(s) target"),
    ("participant,task,x0,choice,target\n", "missing column(s) trial"),
    ("participant,task,trial,choice,target\np,t,0,1,1\n", "no cue columns"),
    ("participant,task,trial,x0,x2,choice,target\n", "numbered from 0 without gaps"),
    ("participant,task,trial,x0,choice,target\n", "no trials"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,2,1\n", "line 2, column choice: '2' is not 0 or 1"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,1,0.5\n", "column target: '0.5' is not 0 or 1"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,1,1\np,t,1,nan,1,1\n", "line 3, column x0: 'nan' is not finite"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,,1\n", "column choice: '' is not a number"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,1,1\np,t,2,1,1,1\n", "trial 2 follows 0"),
    ("participant,task,trial,x0,choice,target\np,t,1,1,1,1\np,t,0,1,1,1\n", "trial 0 follows 1"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,1,1\np,t,0,1,1,1\n", "trial 0 follows 0"),
    ("participant,task,trial,x0,choice,target\np,t,2,1,1,1\n", "starts at trial 2"),
    ("participant,task,trial,x0,choice,target\np,t,0,1,1,1\np,u,0,1,1,1\np,t,1,1,1,1\n", "not contiguous"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ParticipantDataError, match=None) as error:
        load_participants(_csv(tmp_path, text))
    assert message in str(error.value) and str(tmp_path / "data.csv") in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no participant data"):
        load_participants(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------- likelihood
def _tiny(tmp_path):
    """One participant, one task of two trials: cue 1 = 0.8 then -0.5, feedback 1, choices 1 then 0."""
    path = _csv(tmp_path, "participant,task,trial,x0,x1,choice,target\nann,0,0,0.8,0.3,1,1\nann,0,1,-0.5,0.2,0,0\n")
    return load_participants(path)


def test_take_the_best_log_likelihood_by_hand(tmp_path):
    """Assumed-density filtering on cue 1 written out: trial 1 p = Phi(0) = 1/2; after feedback y = 1 on
    dx = a, m = a rho / c and S = 1 - a^2 rho^2 / c^2 with c = sqrt(tau^2 + a^2), rho = phi(0) / Phi(0)."""
    participants = _tiny(tmp_path)
    a, b = 0.8, -0.5
    c, rho = math.sqrt(TAU**2 + a * a), math.sqrt(2 / math.pi)
    mean, var = a * rho / c, 1 - a * a * rho * rho / (c * c)
    p2 = special.ndtr(b * mean / math.sqrt(TAU**2 + b * b * var))
    expected = math.log(0.5) + math.log(1 - p2)  # choices: 1 (q = 1/2), then 0 (q = 1 - p2)

    # equal weighting: the same filter on the summed cues 0.8 + 0.3 and -0.5 + 0.2
    a2, b2 = 1.1, -0.3
    c2 = math.sqrt(TAU**2 + a2 * a2)
    mean2, var2 = a2 * rho / c2, 1 - a2 * a2 * rho * rho / (c2 * c2)
    expected_ew = math.log(0.5) + math.log(1 - special.ndtr(b2 * mean2 / math.sqrt(TAU**2 + b2 * b2 * var2)))

    models = ("guess", "take_the_best", "equal_weighting")
    probs = model_probabilities(participants, models)
    result = fit_participants(participants, probs, models, lapse=False)
    np.testing.assert_allclose(result.log_lik[0], [2 * math.log(0.5), expected, expected_ew], rtol=1e-12)
    np.testing.assert_array_equal(result.num_params, [0, 0, 0])
    # with a lapse: q1 = 1/2 whatever eps, and q2 = 1 - p2 > 1/2 (the choice followed cue 1), so LL(eps)
    # falls from eps = 0: the fitted lapse is 0 and the LL unchanged, now with k = 1
    assert 1 - p2 > 0.5
    fitted = fit_participants(participants, probs, models, lapse=True)
    np.testing.assert_array_equal(fitted.lapse[0], [0, 0, 0])
    np.testing.assert_allclose(fitted.log_lik[0], result.log_lik[0], rtol=1e-14)
    np.testing.assert_array_equal(fitted.num_params, [0, 1, 1])
    # the opposite choice on trial 2 (q2 = p2 < 1/2): the best lapse is 1 (pure guessing), LL = 2 log(1/2)
    flipped = [from_arrays("bob", participants[0].cues, participants[0].targets, [[1.0], [1.0]])]
    worse = fit_participants(flipped, model_probabilities(flipped, models), models, lapse=True)
    np.testing.assert_allclose(worse.lapse[0, 1], 1.0)
    np.testing.assert_allclose(worse.log_lik[0, 1], 2 * math.log(0.5), rtol=1e-14)


def test_lapse_fit_closed_form():
    """q = (1, 1, 0): LL(eps) = 2 log(1 - eps/2) + log(eps/2), maximal at eps = 2/3."""
    eps, ll = fit_lapse(np.array([[1.0, 1.0, 0.0]]), np.ones((1, 3), bool))
    np.testing.assert_allclose(eps, [2 / 3], atol=1e-15)
    np.testing.assert_allclose(ll, [2 * math.log(2 / 3) + math.log(1 / 3)], rtol=1e-14)
    # no lapse needed: every choice had q >= 1/2 -> eps = 0; masked trials are ignored
    eps, ll = fit_lapse(np.array([[0.9, 0.6, 0.0]]), np.array([[True, True, False]]))
    assert eps[0] == 0 and math.isclose(ll[0], math.log(0.9) + math.log(0.6), rel_tol=1e-14)


def test_lapse_fit_is_the_maximum_of_a_dense_grid():
    rng = np.random.default_rng(0)
    chosen = np.clip(rng.beta(2, 1, (5, 40)), 0, 1)
    chosen[0, 0] = 0.0  # a choice the model ruled out: LL(0) = -inf, so eps > 0
    mask = rng.random((5, 40)) < 0.9
    eps, ll = fit_lapse(chosen, mask)
    grid = np.linspace(0, 1, 20001)
    dense = np.stack([log_likelihood(chosen, mask, np.full(5, e)) for e in grid], axis=1)
    np.testing.assert_allclose(ll, dense.max(axis=1), rtol=0, atol=1e-6)
    assert np.all(np.abs(eps - grid[np.argmax(dense, axis=1)]) <= 1e-4) and eps[0] > 0


# ------------------------------------------------------------------------------------------- selection
def test_bic_arithmetic_and_weights():
    np.testing.assert_allclose(bic(-100.0, 2, 300), 200 + 2 * math.log(300))
    np.testing.assert_allclose(bic([-10.0, -12.0], [0, 1], 50), [20, 24 + math.log(50)])
    weights = bic_weights(np.array([[10.0, 12.0], [0.0, 0.0]]))
    np.testing.assert_allclose(weights[0], [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))], rtol=1e-14)
    np.testing.assert_allclose(weights[1], [0.5, 0.5])
    assert [num_parameters(m) for m in ("guess", "take_the_best", "bmli")] == [0, 1, 2]
    assert [num_parameters(m, lapse=False) for m in ("guess", "exact_bayes", "bmli")] == [0, 0, 1]


def test_random_effects_closed_forms():
    """One model overwhelmingly better for every participant: alpha = alpha0 + (N, 0, ...); equal evidence
    for every model: by symmetry alpha = alpha0 + N / M."""
    dominant = random_effects_bms(np.array([[0.0, -800.0, -900.0]] * 6))
    np.testing.assert_allclose(dominant["alpha"], [7, 1, 1], atol=1e-12)
    # two models: P(r_1 > r_2) = P(r_1 > 1/2) = 1 - I_{1/2}(alpha_1, alpha_2) = 1 - 2^-7 for Dir(7, 1)
    pair = random_effects_bms(np.array([[0.0, -800.0]] * 6))
    np.testing.assert_allclose(pair["alpha"], [7, 1], atol=1e-12)
    np.testing.assert_allclose(pair["exceedance"], [1 - 2.0**-7, 2.0**-7], atol=2e-3)  # MC: sd 3e-4
    np.testing.assert_allclose(1 - special.betainc(7, 1, 0.5), 1 - 2.0**-7)
    flat = random_effects_bms(np.zeros((6, 3)))
    np.testing.assert_allclose(flat["alpha"], [3, 3, 3], atol=1e-12)
    np.testing.assert_allclose(flat["frequency"], [1 / 3] * 3, atol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        random_effects_bms(np.array([[0.0, -np.inf]]))


def test_bmli_counts_beta_and_takes_the_best_one():
    """The bmli column is the best beta's LL (per participant), with k = 2 (beta and lapse)."""
    participants = [from_arrays("p", np.ones((2, 1, 1)), np.ones((2, 1)), np.array([[1.0], [1.0]]))]
    probs = {("bmli", 0.0): [np.full((2, 1), 0.6)], ("bmli", 0.1): [np.full((2, 1), 0.9)]}
    result = fit_participants(participants, probs, ("bmli",))
    assert result.best_beta[0] == 0.1 and result.betas == (0.0, 0.1)
    np.testing.assert_allclose(result.log_lik[0, 0], 2 * math.log(0.9), rtol=1e-14)
    np.testing.assert_allclose(result.bic[0, 0], -4 * math.log(0.9) + 2 * math.log(2), rtol=1e-14)


# ------------------------------------------------------------------------------------------- recovery
def test_recovery_of_heuristics_small_study():
    """5 participants x 3 generators, 30 tasks x 10 trials, lapse 0.1: every one assigned correctly."""
    generators = ["take_the_best", "equal_weighting", "guess"]
    participants, truth, result = recover(generators, generators, 5, (0.0,), seed=1)
    labels, counts = confusion(truth, result)
    assert labels == generators and counts.sum() == 15
    assert accuracy(truth, result) >= 0.9, counts
    assert all(p.num_trials == 300 for p in participants)
    assert "| take_the_best |" in format_fit_summary(result, "t")


@pytest.mark.torch
def test_recovery_of_the_beta_grid_machinery():
    """Two bmli "betas" that are different (random, sharpened) networks: the fitted beta names the generator.
    Checks the plumbing of bmli simulation and fitting (trained models: docs/tasks/heuristics-fitting.md)."""
    pytest.importorskip("torch")
    import torch

    import torch_impl.bounded_gru as bounded
    import torch_impl.weights as torch_weights

    weights = {}
    for beta, seed in ((0.0, 1), (0.5, 2)):
        torch.manual_seed(seed)
        model = bounded.BoundedMetaLearner(4, 8, torch.float64)
        with torch.no_grad():
            model.mu.weight.mul_(20.0)  # confident, seed-specific cue weights
        weights[beta] = torch_weights.model_to_canonical(model)
    generators = [("bmli", 0.0), ("bmli", 0.5)]
    _, truth, result = recover(generators, ("take_the_best", "bmli"), 4, (0.0, 0.5), weights, "torch", seed=2)
    assert accuracy(truth, result) >= 0.9
    generating, counts, means = beta_recovery(truth, result)
    assert generating == [0.0, 0.5] and np.trace(counts) >= 7 and means[0] < means[1]


def test_fit_result_shapes():
    participants = [from_arrays(f"p{i}", np.ones((3, 2, 2)), np.ones((3, 2)), np.ones((3, 2))) for i in range(3)]
    result = fit_participants(participants, model_probabilities(participants, ("guess", "ideal_observer")),
                              ("guess", "ideal_observer"))
    assert isinstance(result, FitResult) and result.log_lik.shape == (3, 2) and result.num_trials.tolist() == [6] * 3


# ------------------------------------------------------------------------------------------- command line
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from cogmeta.cli import main

    path = _csv(tmp_path, "participant,task,trial,x0,choice\np,t,0,1,1\n")
    assert main(["experiment", "heuristics-fit", "--data", str(path), "--models", "guess"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cogmeta: error:") and "missing column(s) target" in err and "\n" not in err
    assert main(["experiment", "heuristics-fit", "--simulate", "--lapse-rate", "2", "--models", "guess"]) == 2
    assert "--lapse-rate must lie in [0, 1]" in capsys.readouterr().err
    assert main(["experiment", "heuristics-fit", "--data", str(path), "--betas", "-1"]) == 2
    assert "betas must be >= 0" in capsys.readouterr().err


def test_cli_simulate_then_fit_heuristics(tmp_path, capsys):
    from cogmeta.cli import main

    out = tmp_path / "recovery"
    argv = ["experiment", "heuristics-fit", "--simulate", "--participants", "2", "--tasks", "5", "--generators",
            "take_the_best", "equal_weighting", "--models", "take_the_best", "equal_weighting", "--out", str(out)]
    assert main(argv) == 0
    assert "Correct assignment" in capsys.readouterr().out
    for name in ("simulated.csv", "recovery.csv", "recovery.md", "heuristics-recovery.png",
                 "heuristics-recovery-confusion.png"):
        assert (out / name).is_file(), name
    fit = tmp_path / "fit"
    assert main(["experiment", "heuristics-fit", "--data", str(out / "simulated.csv"), "--models", "guess",
                 "take_the_best", "--out", str(fit), "--no-figures"]) == 0
    assert (fit / "fit.csv").read_text().count("\n") == 5 and not (fit / "heuristics-fit.png").exists()
