"""Learning to infer: the urn samplers, the amortized posterior, its KL loss, gradients and SGD, torch vs JAX.

Layered like the rest of the suite: transform (bit-identical on identical numpy noise) -> forward ->
loss -> gradients -> 1000 plain-SGD steps of the one trainer (``AmortizedObjective``) on identical numpy
queries, starting from identical canonical weights. Population training (``train_population``; torch:
one trainer run of the stacked population model; JAX: the engine's vmap of the member's scan) must
follow the single-participant runs of its own framework and the other framework's population, and stop
a diverging participant without touching the others.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl.amortized as jax_model
import jax_impl.trainer as jax_trainer
import jax_impl.urn_samplers as jax_samplers
import torch_impl.amortized as torch_model
import torch_impl.trainer as torch_trainer
import torch_impl.urn_samplers as torch_samplers
from cogmeta.experiments.amortized_spec import OPTIMIZERS, PARAMETER_NAMES
from cogmeta.tasks import draw_noise
from cogmeta.tasks.urn import (
    EU_ID,
    EU_UD,
    NOISE_BLOCKS,
    SIZE_LADDER,
    UrnQueries,
    UrnQueryDistribution,
    concatenate,
    logit,
)
from jax_impl.weights import state_to_canonical
from parity_tests._cases import x64
from parity_tests._compare import assert_all, assert_bitwise, assert_bitwise_on_cpu, assert_parity, jax_platform

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

SPECS = {"EU_ID": EU_ID, "EU_UD": EU_UD, "noise": NOISE_BLOCKS, "ladder": SIZE_LADDER,
         # the paper's draws (balls from the other urn's likelihood)
         "EU_UD_swapped": dataclasses.replace(EU_UD, swapped_draws=True),
         "noise_swapped": dataclasses.replace(NOISE_BLOCKS, swapped_draws=True)}
HIDDEN = (1, 4)


@pytest.fixture(params=sorted(SPECS))
def spec(request):
    return SPECS[request.param]


def _noise(spec, dtype, seed, batch=64):
    return draw_noise(spec.noise_spec(batch), np.random.default_rng(seed), np.dtype(dtype))


# ------------------------------------------------------------------------------ layer 0: samplers
def test_torch_urn_transform_bit_identical(spec, dtype, seed):
    noise = _noise(spec, dtype, seed)
    reference = spec.transform(noise)
    queries = torch_samplers.transform(spec, {k: torch.from_numpy(v) for k, v in noise.items()})
    for name in UrnQueries._fields:
        assert_bitwise(f"{spec.name} {name} (torch)", getattr(queries, name).numpy(), getattr(reference, name))


def test_jax_urn_transform_matches_numpy(spec, dtype, seed):
    """On CPU: eager, every field bit-identical; jit, inputs bit-identical, log-odds within one rounding (FMA).
    Elsewhere every field within the forward tolerance (``assert_bitwise_on_cpu`` says why)."""
    noise = _noise(spec, dtype, seed)
    reference = spec.transform(noise)
    with x64(dtype):
        arrays = {k: jnp.asarray(v) for k, v in noise.items()}
        eager = jax.tree.map(np.asarray, jax_samplers.transform(spec, arrays))
        jitted = jax.tree.map(np.asarray, jax.jit(lambda n: jax_samplers.transform(spec, n))(arrays))
    for name in UrnQueries._fields:
        assert_bitwise_on_cpu(f"{spec.name} {name} (jax eager)", getattr(eager, name), getattr(reference, name),
                              "forward", dtype)
        if name != "log_odds":
            assert_bitwise_on_cpu(f"{spec.name} {name} (jax jit)", getattr(jitted, name), getattr(reference, name),
                                  "forward", dtype)
    if jax_platform() != "cpu":
        assert_parity(f"{spec.name} log_odds (jax jit)", jitted.log_odds, reference.log_odds, "forward", dtype)
        return
    # L = logit(p) + n logit(l): a fused multiply-add rounds once, so the difference is <= 1 ulp of the largest term
    n_term = (2 * reference.heads.astype(np.float64) - reference.draws) * logit(reference.likelihood)
    largest = np.maximum.reduce([np.abs(logit(reference.prior)), np.abs(n_term), np.abs(reference.log_odds)])
    ulp = np.spacing(largest.astype(reference.log_odds.dtype)).astype(np.float64)
    diff = np.abs(jitted.log_odds.astype(np.float64) - reference.log_odds)
    assert np.all(diff <= ulp), f"{spec.name} jitted log-odds off by {np.max(diff / ulp):.2f} ulp of the largest term"


@pytest.mark.parametrize("swapped", [False, True])
def test_native_samplers_follow_the_spec(swapped):
    """Each framework's own noise gives queries with the spec's support and P(draw = 1) = E[p l + (1-p)(1-l)]
    (swapped draws: E[p (1-l) + (1-p) l]: 0.325 here against 0.675)."""
    spec = UrnQueryDistribution(priors=(0.9, 0.8), likelihoods=(0.8, 0.7), swapped_draws=swapped)
    theta = [(1 - l if swapped else l) for l in spec.likelihoods]
    expected = np.mean([p * t + (1 - p) * (1 - t) for p in spec.priors for t in theta])
    torch_queries = torch_samplers.sample_queries(spec, torch_samplers.seed_generator(3), 20_000, torch.float64)
    with jax.enable_x64(True):
        jax_queries = jax.tree.map(np.asarray, jax_samplers.sample_queries(spec, jax_samplers.seed_key(3), 20_000,
                                                                          jnp.float64))
    for label, q in (("torch", jax.tree.map(lambda t: t.numpy(), tuple(torch_queries))), ("jax", tuple(jax_queries))):
        q = UrnQueries(*q)
        assert set(np.unique(q.prior)) <= set(spec.priors), label
        assert set(np.unique(q.likelihood)) <= set(spec.likelihoods), label
        rate = q.heads.mean()
        assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / 20_000), (label, rate, expected)


# ------------------------------------------------------------------------------ layers 1-3: model, loss, grads
def _models(hidden, dtype, seed):
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.manual_seed(seed)
    tm = torch_model.AmortizedPosterior(hidden, dtype=tdt)
    weights = torch_model.get_weights(tm)
    # nonzero centres and spread widths, so every parameter matters
    rng = np.random.default_rng(seed)
    weights["rbf.centre"] = rng.normal(0, 0.5, hidden).astype(dtype)
    weights["rbf.beta"] = rng.uniform(0.05, 1.0, hidden).astype(dtype)
    torch_model.set_weights(tm, weights)
    with x64(dtype):
        jm = jax_model.set_weights(jax_model.AmortizedPosterior(hidden, rngs=nnx.Rngs(0), dtype=jnp.dtype(dtype)), weights)
    return tm, jm, weights


def _queries(dtype, seed, batch=64):
    rng = np.random.default_rng(seed)
    return concatenate([spec.sample(rng, batch // 4, np.dtype(dtype)) for spec in SPECS.values()])


@pytest.mark.parametrize("hidden", HIDDEN)
def test_forward_and_loss(hidden, dtype, seed, record):
    tm, jm, _ = _models(hidden, dtype, seed)
    q = _queries(dtype, seed)
    t_logits = tm(torch.from_numpy(q.inputs))
    t_loss = torch_model.kl_loss(t_logits, torch.from_numpy(q.log_odds))
    t_kl = torch_model.kl_divergence(t_logits, torch.from_numpy(q.log_odds))
    with x64(dtype):
        j_logits = jm(jnp.asarray(q.inputs))
        j_loss = jax_model.kl_loss(j_logits, jnp.asarray(q.log_odds))
        j_kl = jax_model.kl_divergence(j_logits, jnp.asarray(q.log_odds))
        j_logits, j_loss, j_kl = np.asarray(j_logits), np.asarray(j_loss), np.asarray(j_kl)
    record("model", f"amortized H{hidden}", dtype, assert_parity("logits", j_logits, t_logits, "forward", dtype))
    record("loss", f"amortized H{hidden}", dtype, assert_parity("KL loss", j_loss, t_loss, "forward", dtype))
    assert_parity("KL per query", j_kl, t_kl, "forward", dtype)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients(hidden, dtype, seed, record):
    tm, jm, _ = _models(hidden, dtype, seed)
    q = _queries(dtype, seed)
    torch_model.kl_loss(tm(torch.from_numpy(q.inputs)), torch.from_numpy(q.log_odds)).backward()
    t_grads = {name: p.grad for name, p in tm.named_parameters()}
    with x64(dtype):
        graphdef, state = nnx.split(jm)
        grads = jax.grad(lambda s: jax_model.kl_loss(nnx.merge(graphdef, s)(jnp.asarray(q.inputs)),
                                                      jnp.asarray(q.log_odds)))(state)
        j_grads = state_to_canonical(grads)
    assert sorted(t_grads) == sorted(PARAMETER_NAMES)
    error = assert_all([(f"grad {n}", j_grads[n], t_grads[n]) for n in PARAMETER_NAMES], "grad", dtype)
    record("grad", f"amortized H{hidden}", dtype, error)


def test_detects_a_different_kl_formula(seed):
    """The forward KL(p || q) (the other direction) must fail the loss comparison: the test can fail."""
    tm, jm, _ = _models(1, "float64", seed)
    q = _queries("float64", seed)
    t_logits = tm(torch.from_numpy(q.inputs))
    t_loss = torch_model.kl_loss(t_logits, torch.from_numpy(q.log_odds))
    log_q = torch.log_softmax(t_logits, -1)
    log_p = torch.stack([torch_model.log_sigmoid(-torch.from_numpy(q.log_odds)),
                         torch_model.log_sigmoid(torch.from_numpy(q.log_odds))], -1)
    forward_kl = torch.mean(torch.sum(torch.exp(log_p) * (log_p - log_q), -1))
    with pytest.raises(AssertionError):
        assert_parity("KL loss", forward_kl, t_loss, "forward", "float64")


# ------------------------------------------------------------------------------ layer 4: 1000 training steps
FRAMEWORKS = {"torch": (torch_model, torch_trainer), "jax": (jax_model, jax_trainer)}


def _objective(framework, inputs, log_odds, lr, dtype, optimizer="sgd", weights=None, seeds=None, hidden=None):
    """``framework``'s AmortizedObjective: participants = rows of ``inputs [S, K, 6]``."""
    hidden = np.shape(weights["rbf.beta"])[-1] if hidden is None else hidden
    return FRAMEWORKS[framework][0].AmortizedObjective(inputs, log_odds, hidden=hidden, learning_rate=lr,
                                                       optimizer=optimizer, dtype=dtype, seeds=seeds, weights=weights)


def _train_one(framework, objective, seed, steps=None):
    """One participant, one trainer run of ``steps`` updates: (canonical weights, losses [steps] in the run's dtype;
    torch's trainer reports them as float64, exactly)."""
    steps = objective.train.steps if steps is None else steps
    with x64(objective.train.dtype):
        trainer = FRAMEWORKS[framework][1].Trainer(objective, seed=seed, steps_per_call=steps)
        metrics = trainer.run(steps)
        return trainer.weights(), np.asarray(metrics.loss).astype(objective.train.dtype)


def _train_population(framework, objective):
    with x64(objective.train.dtype):
        return FRAMEWORKS[framework][0].train_population(objective)

#: float32 Adam on single queries is compared over its first 200 steps: its direction g / (|g| + 1e-8)
#: turns a one-ulp difference in a near-zero gradient into an O(lr) step, so after a few hundred steps
#: the two float32 trajectories separate chaotically (measured: 5e-6 relative up to step 200, then up
#: to 5e-4 for some seeds); float64 Adam and both SGDs agree over all 1000 steps.
F32_ADAM_STEPS = 200


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_1000_steps(hidden, optimizer, dtype, seed, record):
    """Identical weights and queries: float64 params within 1e-10 normalized; float32 loss curve within 1e-5 rel."""
    _, _, weights = _models(hidden, dtype, seed)
    rng = np.random.default_rng(seed)
    q = concatenate([EU_ID.sample(rng, 500, np.dtype(dtype)), EU_UD.sample(rng, 500, np.dtype(dtype))])
    order = rng.permutation(1000)[: F32_ADAM_STEPS if (optimizer, dtype) == ("adam", "float32") else None]
    inputs, log_odds = q.inputs[order], q.log_odds[order]
    lr = 0.05 if optimizer == "sgd" else 0.01
    stacked = {n: w[None] for n, w in weights.items()}
    t_weights, t_losses = _train_one("torch", _objective("torch", inputs[None], log_odds[None], lr, dtype, optimizer,
                                                         stacked), 0)
    j_weights, j_losses = _train_one("jax", _objective("jax", inputs[None], log_odds[None], lr, dtype, optimizer,
                                                       stacked), 0)
    assert t_weights["input.weight"].dtype == j_weights["input.weight"].dtype == np.dtype(dtype)
    assert t_losses.dtype == j_losses.dtype == np.dtype(dtype)
    assert np.mean(t_losses[-50:]) < np.mean(t_losses[:50]), "training should reduce the loss"
    params_error = assert_all([(n, j_weights[n], t_weights[n]) for n in PARAMETER_NAMES], "train_steps", dtype)
    record(f"train 1000 steps ({optimizer}): params", f"amortized H{hidden}", dtype, params_error)
    # KL = sum q (log q - log p) cancels terms of size O(1): its absolute rounding error is ~1 ulp of O(1)
    # whatever its value, so a relative bound (1e-5 float32, 1e-11 float64) is meaningful only where
    # KL >= 0.05; the whole curve must agree to optim_steps' tolerance of its largest value.
    keep = t_losses >= 0.05
    assert keep.sum() >= 20, f"only {keep.sum()} losses >= 0.05"
    error = assert_parity("loss curve", j_losses[keep], t_losses[keep], "loss_curve", dtype)
    assert_parity("whole loss curve", j_losses, t_losses, "optim_steps", dtype)
    record(f"train 1000 steps ({optimizer}): loss", f"amortized H{hidden}", dtype, error)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_population_equals_single_participant(framework, optimizer):
    """``train_population`` (torch: one run of the stacked model; JAX: engine vmap) = one trainer run per
    participant, float64, from each participant's own fresh init and queries."""
    model = FRAMEWORKS[framework][0]
    seeds = [4, 9, 11]
    queries = model.sample_training_queries([EU_ID, SIZE_LADDER], seeds, 300, "float64")
    lr = 0.05 if optimizer == "sgd" else 0.01
    objective = _objective(framework, queries.inputs, queries.log_odds, lr, "float64", optimizer, seeds=seeds, hidden=3)
    run = _train_population(framework, objective)
    np.testing.assert_array_equal(run.steps, 300)
    assert not run.stopped.any()
    for s, seed in enumerate(seeds):
        single, _ = _train_one(framework, objective, seed)
        assert_all([(n, run.weights[n][s], single[n]) for n in PARAMETER_NAMES], "train_steps", "float64")
    # participants differ (own seeds, own queries)
    assert not np.allclose(run.weights["input.weight"][0], run.weights["input.weight"][1])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_populations_agree_across_frameworks(optimizer, record):
    """Identical weights and queries: torch's population and JAX's agree (float64, 1e-10 normalized)."""
    _, _, first = _models(2, "float64", 1)
    _, _, second = _models(2, "float64", 2)
    weights = {n: np.stack([first[n], second[n]]) for n in PARAMETER_NAMES}
    rng = np.random.default_rng(3)
    q = [concatenate([EU_ID.sample(rng, 250), NOISE_BLOCKS.sample(rng, 250)]) for _ in range(2)]
    inputs, log_odds = np.stack([x.inputs for x in q]), np.stack([x.log_odds for x in q])
    lr = 0.05 if optimizer == "sgd" else 0.01
    runs = {f: _train_population(f, _objective(f, inputs, log_odds, lr, "float64", optimizer, weights, seeds=[7, 8]))
            for f in FRAMEWORKS}
    error = assert_all([(n, runs["jax"].weights[n], runs["torch"].weights[n]) for n in PARAMETER_NAMES], "train_steps",
                       "float64")
    record(f"population 500 steps ({optimizer}): params", "amortized H2 x2", "float64", error)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_diverging_participant_stops_alone(framework):
    """Participant 1's query 5 has an infinite target (loss inf): it stops after 5 updates with its weights
    of then; the others train all K steps exactly as without it."""
    model = FRAMEWORKS[framework][0]
    seeds, steps = [0, 1, 2], 40
    queries = model.sample_training_queries([EU_ID], seeds, steps, "float64")
    log_odds = queries.log_odds.copy()
    log_odds[1, 5] = np.inf
    objective = _objective(framework, queries.inputs, log_odds, 0.05, "float64", seeds=seeds, hidden=2)
    run = _train_population(framework, objective)
    np.testing.assert_array_equal(run.stopped, [False, True, False])
    np.testing.assert_array_equal(run.steps, [steps, 5, steps])
    first_five, _ = _train_one(framework, objective, 1, steps=5)
    for s, expected in ((0, _train_one(framework, objective, 0)[0]), (1, first_five), (2, _train_one(framework, objective, 2)[0])):
        assert_all([(f"{n} of participant {s}", run.weights[n][s], expected[n]) for n in PARAMETER_NAMES], "train_steps",
                   "float64")
