"""The JAX backend: native samplers, model, gradients, optimizer, Trainer, driver and a short training run.

tests/test_torch_backend.py holds the same tests for the PyTorch backend, in the same order.
References: the task spec (scipy distributions), a numpy forward pass (tests/reference_rnn.py), central
finite differences, the documented Adam + clipping update, and the exact Bayes predictive.
float64 runs inside ``with jax.enable_x64(True):`` so that no test flips JAX's global flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np
import pytest
from scipy import special, stats

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from reference_rnn import AdamReference, random_weights, reference_predictive  # noqa: E402
from sampler_checks import assert_coin_sample, assert_gaussian_sample  # noqa: E402

from cogmeta.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from cogmeta.contract import NonFiniteLossError  # noqa: E402
from cogmeta.evaluation import HELD_OUT_SEED, evaluate, held_out_observations  # noqa: E402
from cogmeta.metrics_log import metric_series, read_metrics  # noqa: E402
from cogmeta.predictive import kl_divergence, nll  # noqa: E402
from cogmeta.runs import RunDir  # noqa: E402
from cogmeta.schedules import learning_rate  # noqa: E402
from cogmeta.tasks import CoinTask, GaussianMeanTask, TaskBatch, model_inputs  # noqa: E402
from cogmeta.training import train  # noqa: E402
from cogmeta.weights import WeightsError, load_weights, parameter_shapes  # noqa: E402
from jax_impl import (
    backend,  # noqa: E402
    samplers,  # noqa: E402
)
from jax_impl import heads as jax_heads  # noqa: E402
from jax_impl.backend import MetaLearnerObjective  # noqa: E402
from jax_impl.optim import init_adam  # noqa: E402
from jax_impl.trainer import make_train_step  # noqa: E402
from jax_impl.weights import state_to_canonical  # noqa: E402

BACKEND = "jax"
KS_ALPHA = 1e-3
STAT_BATCH = 100_000  # also the batch of the step test, so JAX compiles each sampler once
GAUSSIAN = GaussianMeanTask(prior_mean=0.7, prior_std=1.3, noise_std=0.6, sequence_length=5)
COIN = CoinTask(alpha=2.0, beta=5.0, sequence_length=6)


def _config(task=None, cell="gru", layers=1, hidden=4, dtype="float32", **train):
    train = {"steps": 60, "batch_size": 16, "log_every": 10, "checkpoint_every": 20, "dtype": dtype, **train}
    return RunConfig(
        task=task or GaussianMeanTask(),
        model=ModelConfig(cell=cell, hidden_size=hidden, num_layers=layers),
        train=TrainConfig(**train),
        jax=JaxOptions(steps_per_call=20),
    )


def _to_numpy(x):
    return np.asarray(x)


def _model_from_weights(config, weights):
    """A model holding ``weights``, built without running the initialisers (each would compile)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: backend.build_model(config)))
    nested = {}
    for name, value in weights.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    nnx.replace_by_pure_dict(state, nested)
    return nnx.merge(graphdef, state)


@functools.lru_cache(maxsize=None)
def _compiled_forward(config):
    """One jitted forward pass per float32 config, fed any canonical weights.

    ``backend.predict`` compiles a fresh program on every call (~0.5 s on a CI core); the tests that
    call the model many times use this instead. It is ``backend.predict`` with the jit hoisted out;
    ``backend.predict`` itself is tested against the numpy reference below.
    """
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: backend.build_model(config)))
    return jax.jit(lambda params, inputs: nnx.merge(graphdef, params)(inputs))


def _predict(config, weights, observations):
    _, params = nnx.split(_model_from_weights(config, weights))
    inputs = samplers.model_inputs(jnp.asarray(np.asarray(observations), jnp.float32))
    return jax_heads.predictive_params(config.task.family, _compiled_forward(config)(params, inputs))


# --------------------------------------------------------------------------------------------------
# native samplers
# --------------------------------------------------------------------------------------------------
def _native_sample(task, batch, seed, dtype=jnp.float32):
    return samplers.sample_batch(task, jax.random.key(seed), batch, dtype)


def test_native_gaussian_sampler_matches_the_spec():
    task, batch = GAUSSIAN, STAT_BATCH
    sample = _native_sample(task, batch, seed=1)
    assert sample.observations.shape == (5, batch, 1) and sample.observations.dtype == jnp.float32
    x, mu = _to_numpy(sample.observations)[..., 0].astype(np.float64), _to_numpy(sample.latent).astype(np.float64)
    assert_gaussian_sample(task, x, mu)


def test_native_coin_sampler_matches_the_spec():
    task, batch = COIN, STAT_BATCH
    sample = _native_sample(task, batch, seed=2)
    x, theta = _to_numpy(sample.observations)[..., 0].astype(np.float64), _to_numpy(sample.latent).astype(np.float64)
    assert set(np.unique(x)) == {0.0, 1.0}
    assert_coin_sample(task, x, theta)


def test_native_sampler_in_float64():
    """(float32, the training default, is checked by the statistical tests above.)"""
    with jax.enable_x64(True):
        sample = _native_sample(GAUSSIAN, 3, seed=3, dtype=jnp.float64)
        assert sample.observations.dtype == jnp.float64 and sample.latent.dtype == jnp.float64
    assert sample.observations.shape == (5, 3, 1)


@pytest.mark.parametrize("task", [GAUSSIAN, COIN], ids=lambda t: t.name)
def test_batch_of_step_k_depends_only_on_seed_and_k(task):
    def batch(seed, step):
        return _to_numpy(samplers.sample_batch(task, samplers.step_key(seed, step), STAT_BATCH).observations)

    first = batch(7, 5)
    batch(7, 4)
    np.testing.assert_array_equal(batch(7, 5), first)
    assert not np.array_equal(batch(7, 6), first)
    assert not np.array_equal(batch(8, 5), first)


def test_model_inputs_match_the_core_layout():
    observations = np.random.default_rng(0).normal(size=(6, 4, 1)).astype(np.float32)
    inputs = samplers.model_inputs(jnp.asarray(observations))
    np.testing.assert_array_equal(_to_numpy(inputs), model_inputs(observations))
    assert inputs.dtype == jnp.float32
    with pytest.raises(ValueError, match=re.escape("[T, B, 1]")):
        samplers.model_inputs(jnp.zeros((6, 4)))


# --------------------------------------------------------------------------------------------------
# model: parameters, forward pass, input checks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("task", [GaussianMeanTask(), CoinTask()], ids=lambda t: t.name)
def test_parameters_have_canonical_names_shapes_and_dtype(cell, layers, task):
    config = _config(task, cell, layers, hidden=5)
    # eval_shape: the model's structure without running the initialisers (each would compile)
    abstract = nnx.eval_shape(lambda: backend.build_model(config))
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(name, value)
            else:
                flat[name] = value

    walk("", nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
    assert {name: tuple(value.shape) for name, value in flat.items()} == parameter_shapes(config)
    assert all(value.dtype == jnp.float32 for value in flat.values())


def test_init_is_torch_default_uniform(reference_run):
    """Every tensor ~ U(-1/sqrt(H), 1/sqrt(H)) (fan-in H for the head too); the Trainer starts from it."""
    weights = reference_run["initial"]
    assert {name: value.shape for name, value in weights.items()} == parameter_shapes(SMALL)
    bound = 1 / math.sqrt(SMALL.model.hidden_size)
    values = np.concatenate([value.ravel() for value in weights.values()])
    assert values.size > 900 and np.all(np.abs(values) <= bound)
    assert stats.kstest(values, stats.uniform(-bound, 2 * bound).cdf).pvalue > KS_ALPHA
    _assert_same_weights(backend.init_weights(SMALL, seed=SMALL.train.seed), weights)
    other = backend.init_weights(SMALL, seed=SMALL.train.seed + 1)
    assert not np.array_equal(other["core.weight_ih_l0"], weights["core.weight_ih_l0"])


def test_eager_uniform_init_is_jax_random_uniform_from_one_program_per_dtype():
    """``jax_impl.linear.uniform_init`` (every uniform initialiser of the JAX models) gives the bits of
    ``jax.random.uniform(key, shape, dtype, -bound, bound)``, eagerly, under ``jit`` and above its block size, while
    eager draws of every shape up to ``UNIFORM_INIT_COUNT`` numbers share one compiled program."""
    from jax_impl.linear import UNIFORM_INIT_COUNT, _uniform_program, uniform_init

    shapes = [(1,), (7, 3), (192, 64), (3, 5, 2), (UNIFORM_INIT_COUNT,), (UNIFORM_INIT_COUNT + 1,)]
    for dtype, bound in ((jnp.float32, 0.125), (jnp.float64, 1 / math.sqrt(3))):
        with jax.enable_x64(dtype == jnp.float64):
            _uniform_program.cache_clear()
            for index, shape in enumerate(shapes):
                key = jax.random.key(index)
                want = np.asarray(jax.random.uniform(key, shape, dtype, -bound, bound))
                got = uniform_init(key, shape, dtype, bound)
                assert got.shape == shape and got.dtype == dtype
                np.testing.assert_array_equal(np.asarray(got), want)
                traced = jax.jit(lambda k, shape=shape: uniform_init(k, shape, dtype, bound))(key)
                np.testing.assert_array_equal(np.asarray(traced), want)
            # one program for the five shapes up to the block size, one for the next power of two
            assert _uniform_program.cache_info().currsize == 2
            assert _uniform_program(UNIFORM_INIT_COUNT, jnp.dtype(dtype))._cache_size() == 1
    legacy = jax.random.PRNGKey(0)  # a raw uint32 key: drawn by jax.random.uniform itself
    np.testing.assert_array_equal(np.asarray(uniform_init(legacy, (4,), jnp.float32, 1.0)),
                                  np.asarray(jax.random.uniform(legacy, (4,), jnp.float32, -1.0, 1.0)))


@pytest.mark.parametrize("cell, task", [("gru", GAUSSIAN), ("lstm", COIN)], ids=["gru-gaussian", "lstm-coin"])
def test_predict_matches_numpy_reference(cell, task):
    config = _config(task, cell, layers=2, hidden=3, dtype="float64")
    weights = random_weights(parameter_shapes(config), seed=11)
    observations = task.sample(np.random.default_rng(12), 3).observations
    with jax.enable_x64(True):
        predicted = backend.predict(config, weights, observations)
    expected = reference_predictive(config, weights, observations)
    assert set(predicted) == set(expected)
    for name in expected:
        assert predicted[name].shape == (task.sequence_length, 3) and predicted[name].dtype == np.float64
        np.testing.assert_allclose(predicted[name], expected[name], rtol=1e-12, atol=1e-14)


def test_predictions_of_every_batch_size_share_one_compiled_program_and_match_a_single_call():
    """JAX only (PyTorch compiles nothing): the 16 tasks of the figures, the 1,000 of a held-out check and the
    2,500 of a summary run through one program, padded to pieces of ``FORWARD_TASKS``, with the outputs of one
    call on all tasks at once up to float32 rounding (XLA's CPU matmul for 16 rows is another kernel than for
    1,000, and rounds differently: 1-2 ulp measured)."""
    config = _config(GAUSSIAN, "gru", layers=1, hidden=8, dtype="float32")
    weights = random_weights(parameter_shapes(config), seed=3, dtype=np.float32)
    forward = backend._compiled_forward(config, None)  # one device: no split
    params = backend.canonical_to_state(backend._abstract_split(config)[1], weights)
    samples = {tasks: GAUSSIAN.sample(np.random.default_rng(tasks), tasks).observations for tasks in (16, 1_000, 2_500)}
    whole = {tasks: backend.predictive_params("gaussian", forward(params, jnp.asarray(observations, jnp.float32)))
             for tasks, observations in samples.items()}
    forward.clear_cache()  # the references compiled a program per size
    for tasks, observations in samples.items():
        predicted = backend.predict(config, weights, observations)
        for name in whole[tasks]:
            np.testing.assert_allclose(predicted[name], whole[tasks][name], rtol=2e-6, atol=1e-7)
    assert forward._cache_size() == 1, "a batch size compiled a program besides the shared one"
    with pytest.raises(ValueError, match=r"\[T, B, 1\]"):
        backend.predict(config, weights, np.zeros((7, 3)))


def test_predict_refuses_weights_that_do_not_fit():
    config = _config()
    weights = random_weights(parameter_shapes(config), seed=0, dtype=np.float32)
    del weights["head.bias"]
    with pytest.raises(WeightsError, match="head.bias"):
        backend.predict(config, weights, np.zeros((7, 2, 1)))


def test_model_rejects_bad_inputs():
    config = _config(GAUSSIAN, "gru", layers=2, hidden=6)
    model = _model_from_weights(config, random_weights(parameter_shapes(config), seed=0, dtype=np.float32))
    good = jnp.zeros((5, 3, 2), jnp.float32)
    assert model(good).shape == (5, 3, 2)
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(5, 3\)"):
        model(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(5, 3, 1\)"):
        model(jnp.zeros((5, 3, 1)))
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(1, 5, 3, 2\)"):
        model(jnp.zeros((1, 5, 3, 2)))
    with pytest.raises(TypeError, match="array"):
        model([[0.0, 1.0]])
    # the checks also run at trace time under jit
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda params, inputs: nnx.merge(graphdef, params)(inputs))
    with pytest.raises(ValueError, match=r"\(5, 3, 1\)"):
        forward(params, jnp.zeros((5, 3, 1), jnp.float32))
    with jax.enable_x64(True):  # float64 arrays exist only in 64-bit mode
        with pytest.raises(ValueError, match="dtype float64.*float32"):
            model(good.astype(jnp.float64))
        with pytest.raises(ValueError, match="dtype float64.*float32"):
            forward(params, good.astype(jnp.float64))
        config64 = _config(GAUSSIAN, "gru", layers=2, hidden=3, dtype="float64")
        model64 = _model_from_weights(config64, random_weights(parameter_shapes(config64), seed=0))
        with pytest.raises(ValueError, match="dtype float32.*float64"):
            model64(good)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_outputs_are_causal(cell):
    """Output t sees x_1..x_t only: observation index j (x_{j+1}) moves outputs t >= j + 1 and no earlier one."""
    config = _config(GAUSSIAN, cell, layers=2, hidden=6)
    weights = random_weights(parameter_shapes(config), seed=15, dtype=np.float32)
    observations = GAUSSIAN.sample(np.random.default_rng(16), 4).observations.astype(np.float32)
    base = _predict(config, weights, observations)["mean"]
    steps = GAUSSIAN.sequence_length
    for j in range(steps):
        changed = observations.copy()
        changed[j] += 1.5
        moved = _predict(config, weights, changed)["mean"]
        np.testing.assert_array_equal(moved[: j + 1], base[: j + 1], err_msg=f"observation {j} leaked backwards")
        if j + 1 < steps:
            assert np.all(moved[j + 1] != base[j + 1]), f"observation {j} does not reach output {j + 1}"


# --------------------------------------------------------------------------------------------------
# loss, gradients, optimizer
# --------------------------------------------------------------------------------------------------
def test_head_nll_matches_scipy():
    rng = np.random.default_rng(17)
    raw = rng.normal(size=(4, 5, 2)) * 2
    raw[0, :, 0] = [-60.0, -20.0, 0.0, 20.0, 60.0]  # saturated logits stay finite and exact
    y = rng.normal(size=(4, 5, 1))
    flips = (rng.uniform(size=(4, 5, 1)) < 0.5).astype(np.float64)
    flips[0, :, 0] = [1, 0, 1, 1, 0]
    logit = raw[..., 0]
    with jax.enable_x64(True):
        got = _to_numpy(jax_heads.nll("gaussian", jnp.asarray(raw), jnp.asarray(y)))
        np.testing.assert_allclose(got, -stats.norm.logpdf(y[..., 0], raw[..., 0], np.exp(raw[..., 1])), rtol=1e-13)
        got = _to_numpy(jax_heads.nll("bernoulli", jnp.asarray(raw[..., :1]), jnp.asarray(flips)))
        expected = -(flips[..., 0] * special.log_expit(logit) + (1 - flips[..., 0]) * special.log_expit(-logit))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
        params = jax_heads.predictive_params("bernoulli", jnp.asarray(raw[..., :1]))
        np.testing.assert_allclose(params["prob"], special.expit(logit), rtol=1e-14)
        with pytest.raises(ValueError, match="poisson"):
            jax_heads.nll("poisson", jnp.asarray(raw), jnp.asarray(y))


def _split_float64_model(config, seed):
    return nnx.split(_model_from_weights(config, random_weights(parameter_shapes(config), seed=seed)))


@pytest.mark.parametrize("cell, task", [("gru", GAUSSIAN), ("lstm", COIN)], ids=["gru-gaussian", "lstm-coin"])
def test_loss_gradient_matches_finite_differences(cell, task):
    config = _config(task, cell, layers=1, hidden=3, dtype="float64")
    observations = task.sample(np.random.default_rng(19), 3).observations
    eps = 1e-6
    with jax.enable_x64(True):
        graphdef, params = _split_float64_model(config, seed=18)
        objective = MetaLearnerObjective(config)
        member = objective.member(0)
        loss = lambda p, observations: objective.loss(p, observations, 0, member)[0]  # noqa: E731  (what training differentiates)
        flat, unravel = ravel_pytree(params)
        assert flat.dtype == jnp.float64

        def flat_loss(vector):
            return loss(unravel(vector), jnp.asarray(observations))

        analytic = _to_numpy(jax.jit(jax.grad(flat_loss))(flat))
        basis = eps * jnp.eye(flat.size, dtype=jnp.float64)
        batched = jax.jit(jax.vmap(flat_loss))
        numeric = (_to_numpy(batched(flat + basis)) - _to_numpy(batched(flat - basis))) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert np.abs(analytic).max() > 1e-3


def test_train_step_is_clipped_adam_on_the_schedule():
    # With clip_norm 0.25 the pre-clip norms of these six steps are 0.46, 0.24, 0.21, 0.29, 0.11, 0.05:
    # both branches of min(1, c / (||g|| + 1e-6)) run (asserted below).
    clip_norm = 0.25
    config = _config(
        COIN, "lstm", layers=1, hidden=3, dtype="float64", steps=6, learning_rate=0.05, final_lr_fraction=0.1,
        clip_norm=clip_norm, adam_beta1=0.8, adam_beta2=0.95, adam_eps=1e-7,
    )
    train = config.train
    rng = np.random.default_rng(21)
    with jax.enable_x64(True):
        graphdef, params = _split_float64_model(config, seed=20)
        opt_state = init_adam(params)
        objective = MetaLearnerObjective(config)
        member = objective.member(config.train.seed)
        step_fn = jax.jit(lambda p, o, x, k: make_train_step(objective)(p, o, x, k, member))
        grad_fn = jax.jit(jax.value_and_grad(lambda p, x: objective.loss(p, x, 0, member)[0]))
        reference = AdamReference(state_to_canonical(params), clip_norm, train.adam_beta1, train.adam_beta2, train.adam_eps)
        norms = []
        for k in range(6):
            observations = jnp.asarray(COIN.sample(rng, 8).observations)
            loss, grads = grad_fn(params, observations)
            lr = learning_rate(k, train.learning_rate, train.steps, train.schedule, train.final_lr_fraction)
            expected_norm = reference.step(state_to_canonical(grads), lr)
            params, opt_state, outputs = step_fn(params, opt_state, observations, jnp.asarray(k))
            assert float(outputs.loss) == pytest.approx(float(loss), rel=1e-14)
            assert float(outputs.grad_norm) == pytest.approx(expected_norm, rel=1e-12)
            assert float(outputs.learning_rate) == pytest.approx(lr, rel=1e-14)
            norms.append(expected_norm)
            weights = state_to_canonical(params)
            for name, value in reference.params.items():
                np.testing.assert_allclose(weights[name], value, rtol=1e-10, atol=1e-13, err_msg=f"step {k}")
    assert max(norms) > clip_norm > min(norms)


# --------------------------------------------------------------------------------------------------
# Trainer and training driver: loss, resume, non-finite loss, short-budget correctness
# --------------------------------------------------------------------------------------------------
#: One run serves every Trainer and driver test and the Gaussian correctness check (a JAX Trainer
#: compiles for several seconds, so the tests share one configuration).
SMALL = RunConfig(
    task=GaussianMeanTask(),
    model=ModelConfig(hidden_size=32),
    train=TrainConfig(steps=600, batch_size=64, log_every=100, checkpoint_every=200, eval_every=300),
    jax=JaxOptions(steps_per_call=200),
)
#: 600 steps of SMALL reach a mean KL of ~1e-3 nats for both tasks (seeds 0-4, either backend); the
#: untrained model is at 0.1-0.23. 0.01 leaves a 10x margin on both sides.
KL_BOUND = 0.01
POISONED_STEP = 403


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """600 uninterrupted steps of SMALL, run in calls of 3, 197, 100, 100, 3, 197 steps, with snapshots.

    A JAX call always scans steps_per_call = 200 steps and masks those past ``count``, so the short
    calls also check that masked steps change nothing.
    """
    trainer = backend.make_tutorial_trainer(SMALL)
    snapshots, metrics = {0: trainer.checkpoint()}, []
    for count in (3, 197, 100, 100, 3, 197):
        metrics.append(trainer.run(count))
        snapshots[trainer.step] = trainer.checkpoint()
    path = tmp_path_factory.mktemp("reference") / "checkpoint.safetensors"
    save_checkpoint(path, snapshots[400], SMALL)
    return {
        "initial": snapshots[0].params,
        "snapshots": snapshots,
        "checkpoint400": path,
        "final": snapshots[600],
        "step": trainer.step,
        "loss": np.concatenate([m.loss for m in metrics]),
        "grad_norm": np.concatenate([m.grad_norm for m in metrics]),
        "learning_rate": np.concatenate([m.learning_rate for m in metrics]),
    }


def _assert_same_weights(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def _assert_same_state(actual, expected):
    assert actual.step == expected.step
    for group in ("params", "exp_avg", "exp_avg_sq"):
        _assert_same_weights(getattr(actual, group), getattr(expected, group))


def test_trainer_reduces_the_loss(reference_run):
    loss = reference_run["loss"]
    assert reference_run["step"] == 600 and loss.shape == (600,) and np.all(np.isfinite(loss))
    # The initial loss is ~1.7 nats; the Bayes-optimal predictive's expected NLL is 1.5675 nats, which no
    # model beats on average. The mean of 100 batch losses has a standard error of ~0.003 nats.
    bayes = np.mean(SMALL.task.expected_nll())
    assert loss[:20].mean() > loss[-100:].mean() + 0.05
    assert bayes - 0.02 < loss[-100:].mean() < bayes + 0.02


def test_trainer_reports_the_loss_of_batch_k_and_the_schedule(reference_run):
    key = samplers.step_key(SMALL.train.seed, 0)
    observations = _to_numpy(samplers.sample_batch(SMALL.task, key, SMALL.train.batch_size).observations)
    predictive = _predict(SMALL, reference_run["initial"], observations)
    assert reference_run["loss"][0] == pytest.approx(nll("gaussian", predictive, observations).mean(), rel=1e-5)
    train = SMALL.train
    expected = [learning_rate(k, train.learning_rate, 600, "cosine", train.final_lr_fraction) for k in range(600)]
    # the jnp schedule runs in float32 (the torch trainer reports Python floats)
    np.testing.assert_allclose(reference_run["learning_rate"], expected, rtol=1e-5)


def test_resume_from_checkpoint_is_exact(reference_run):
    """Trainer(config, checkpoint after 400 steps).run(200) == 600 uninterrupted steps, bit for bit."""
    checkpoint = load_checkpoint(reference_run["checkpoint400"], SMALL)
    assert checkpoint.framework == BACKEND
    _assert_same_state(checkpoint, reference_run["snapshots"][400])
    trainer = backend.make_tutorial_trainer(SMALL, checkpoint)
    assert trainer.step == 400
    metrics = trainer.run(200)
    assert trainer.step == 600
    np.testing.assert_array_equal(metrics.loss, reference_run["loss"][400:])
    _assert_same_state(trainer.checkpoint(), reference_run["final"])


def test_run_refuses_more_steps_than_one_call_holds():
    """(JAX only: a call scans steps_per_call steps; the torch Trainer runs any count.)"""
    trainer = backend.make_tutorial_trainer(SMALL)
    with pytest.raises(ValueError, match="steps_per_call"):
        trainer.run(SMALL.jax.steps_per_call + 1)
    assert trainer.step == 0


def test_non_finite_loss_keeps_the_last_good_state_and_resumes(reference_run, tmp_path, monkeypatch):
    # The batch is sampled inside the compiled scan, so the poison is traced in: NaN observations
    # where the key is that of step POISONED_STEP. The poisoned program computes the steps before it
    # bit-identically to the reference program on XLA:CPU (the select does not change the arithmetic),
    # so the comparisons below are exact.
    original = backend.sample_batch
    poisoned_key = jax.random.key_data(samplers.step_key(SMALL.train.seed, POISONED_STEP))

    def poisoned(task, key, batch_size, dtype):
        batch = original(task, key, batch_size, dtype)
        hit = jnp.all(jax.random.key_data(key) == poisoned_key)
        return TaskBatch(jnp.where(hit, jnp.nan, batch.observations), batch.latent)

    monkeypatch.setattr(backend, "sample_batch", poisoned)
    run = RunDir.at(tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match=rf"at step {POISONED_STEP};.*last good state \(step {POISONED_STEP}\)"):
        train(SMALL, run.root, BACKEND, progress=False, figures=False)
    monkeypatch.undo()
    assert not run.weights.exists()
    checkpoint = load_checkpoint(run.checkpoint, SMALL)
    assert all(np.all(np.isfinite(value)) for value in checkpoint.params.values())
    _assert_same_state(checkpoint, reference_run["snapshots"][POISONED_STEP])
    _check_resume_and_log(reference_run, run)


def _check_resume_and_log(reference_run, run):
    """Resume the stopped run; it must end where the uninterrupted one did, with a consistent log."""
    result = train(SMALL, run.root, BACKEND, resume=True, progress=False, figures=False)
    assert result.steps == 600
    _assert_same_weights(load_weights(run.weights, SMALL), reference_run["final"].params)
    # Rows up to step 403 survive from the first run; the resumed log's first window holds steps 403..499.
    rows = read_metrics(run.metrics)
    series = {name: dict(zip(*metric_series(rows, name))) for name in ("loss", "grad_norm", "learning_rate")}
    windows = {s: slice(s - 100, s) for s in (100, 200, 300, 400, 600)}
    windows[500] = slice(POISONED_STEP, 500)
    for name, values in series.items():
        assert sorted(values) == sorted(windows), name
    for step, window in windows.items():
        for name in ("loss", "grad_norm"):
            expected = np.mean(reference_run[name][window].astype(np.float64))
            assert series[name][step] == pytest.approx(expected, rel=1e-12), (name, step)
        assert series["learning_rate"][step] == pytest.approx(float(reference_run["learning_rate"][step - 1]), rel=1e-12)
    assert result.final_loss == pytest.approx(series["loss"][600], rel=1e-12)
    # Held-out KL at steps 0 and 300 (first run) and 600 (resumed), on held-out set HELD_OUT_SEED + 1.
    kl_steps, kl_values = metric_series(rows, "heldout_kl")
    assert kl_steps == [0, 300, 600]
    held_out = held_out_observations(SMALL.task, SMALL.train.eval_tasks, HELD_OUT_SEED + 1)
    exact = SMALL.task.posterior_predictive(held_out)
    for step, value in zip(kl_steps, kl_values):
        model = _predict(SMALL, reference_run["snapshots"][step].params, held_out)
        assert value == pytest.approx(kl_divergence("gaussian", exact, model).mean(), rel=1e-6), step


# (The torch file also trains with a huge learning rate until the loss overflows; the driver path is the
# same, and here the injected NaN above covers the compiled loop's stop. Each JAX run compiles for
# several seconds, so that test is not repeated here.)


def _check_close_to_bayes(config, weights, untrained_kl):
    evaluation = evaluate(config, weights, BACKEND, num_tasks=2000)
    assert evaluation.mean_kl < KL_BOUND, evaluation.table()
    assert np.all(evaluation.kl >= 0)
    assert untrained_kl > 5 * KL_BOUND  # the bound separates trained from untrained


def test_short_training_approaches_bayes_gaussian(reference_run):
    """The reference run is the driver's Trainer for 600 steps (the driver reproduces it exactly, above)."""
    untrained = evaluate(SMALL, reference_run["initial"], BACKEND, num_tasks=2000).mean_kl
    _check_close_to_bayes(SMALL, reference_run["final"].params, untrained)


def test_short_training_approaches_bayes_coin(tmp_path):
    config = dataclasses.replace(SMALL, task=CoinTask())
    result = train(config, tmp_path / "run", BACKEND, progress=False, figures=False)
    assert result.steps == 600
    weights = load_weights(result.run_dir / "weights.safetensors", config)
    kl_steps, kl_values = metric_series(read_metrics(result.run_dir / "metrics.csv"), "heldout_kl")
    assert kl_steps == [0, 300, 600] and kl_values[-1] < KL_BOUND
    _check_close_to_bayes(config, weights, untrained_kl=kl_values[0])


def test_an_abstract_template_takes_weights_like_a_drawn_model():
    """``abstract_split`` draws no weights, and canonical weights fill its abstract state exactly as they fill a
    drawn model's (same names, dtypes and values); a wrong name or shape is refused either way."""
    from jax_impl.backend import MetaLearner
    from jax_impl.weights import abstract_split, canonical_to_state

    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(cell="lstm", hidden_size=5, num_layers=2))
    build = lambda: MetaLearner(config, jnp.float32, rngs=nnx.Rngs(3))  # noqa: E731
    graphdef, abstract = abstract_split(build)
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(abstract))
    drawn = nnx.split(build())[1]
    weights = {name: np.random.default_rng(0).standard_normal(value.shape)  # float64: cast to the model's float32
               for name, value in state_to_canonical(drawn).items()}
    from_abstract, from_drawn = canonical_to_state(abstract, weights), canonical_to_state(drawn, weights)
    assert graphdef == nnx.split(build())[0]
    for name, value in state_to_canonical(from_abstract).items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, state_to_canonical(from_drawn)[name])
        np.testing.assert_array_equal(value, weights[name].astype(np.float32))
    with pytest.raises(ValueError, match="missing"):
        canonical_to_state(abstract, {k: v for k, v in weights.items() if k != "head.bias"})
    name = next(iter(weights))
    with pytest.raises(ValueError, match="shape"):
        canonical_to_state(abstract, {**weights, name: np.zeros((7, 7, 7))})
