"""The PyTorch backend: native samplers, model, gradients, optimizer, Trainer, driver and a short training run.

tests/test_jax_backend.py holds the same tests for the JAX backend, in the same order.
References: the task spec (scipy distributions), a numpy forward pass (tests/reference_rnn.py), central
finite differences, the documented Adam + clipping update, and the exact Bayes predictive.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from scipy import special, stats

torch = pytest.importorskip("torch")

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
from cogmeta.tasks import CoinTask, GaussianMeanTask, model_inputs  # noqa: E402
from cogmeta.training import train  # noqa: E402
from cogmeta.weights import WeightsError, load_weights, parameter_shapes  # noqa: E402
from torch_impl import (
    backend,  # noqa: E402
    samplers,  # noqa: E402
)
from torch_impl import heads as torch_heads  # noqa: E402
from torch_impl.backend import MetaLearnerObjective, native_batch  # noqa: E402
from torch_impl.model import sequence_nll  # noqa: E402
from torch_impl.optim import init_adam  # noqa: E402
from torch_impl.trainer import make_train_step  # noqa: E402

BACKEND = "torch"
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
    return x.detach().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# native samplers
# --------------------------------------------------------------------------------------------------
def _native_sample(task, batch, seed, dtype=torch.float32):
    return samplers.sample_batch(task, torch.Generator().manual_seed(seed), batch, dtype)


def test_native_gaussian_sampler_matches_the_spec():
    task, batch = GAUSSIAN, STAT_BATCH
    sample = _native_sample(task, batch, seed=1)
    assert sample.observations.shape == (5, batch, 1) and sample.observations.dtype == torch.float32
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
    sample = _native_sample(GAUSSIAN, 3, seed=3, dtype=torch.float64)
    assert sample.observations.dtype == torch.float64 and sample.latent.dtype == torch.float64
    assert tuple(sample.observations.shape) == (5, 3, 1)


@pytest.mark.parametrize("task", [GAUSSIAN, COIN], ids=lambda t: t.name)
def test_batch_of_step_k_depends_only_on_seed_and_k(task):
    config = _config(task, seed=7, batch_size=STAT_BATCH)
    first = native_batch(config, 5, torch.float32)
    torch.manual_seed(123)  # the global RNG must not matter
    native_batch(config, 4, torch.float32)
    again = native_batch(config, 5, torch.float32)
    assert torch.equal(first, again)
    direct = samplers.sample_batch(task, samplers.step_generator(7, 5), STAT_BATCH).observations
    assert torch.equal(first, direct)
    assert not torch.equal(first, native_batch(config, 6, torch.float32))
    other_seed = _config(task, seed=8, batch_size=STAT_BATCH)
    assert not torch.equal(first, native_batch(other_seed, 5, torch.float32))


def test_model_inputs_match_the_core_layout():
    observations = np.random.default_rng(0).normal(size=(6, 4, 1)).astype(np.float32)
    inputs = samplers.model_inputs(torch.as_tensor(observations))
    np.testing.assert_array_equal(_to_numpy(inputs), model_inputs(observations))
    assert inputs.dtype == torch.float32
    with pytest.raises(ValueError, match=re.escape("[T, B, 1]")):
        samplers.model_inputs(torch.zeros(6, 4))


# --------------------------------------------------------------------------------------------------
# model: parameters, forward pass, input checks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("task", [GaussianMeanTask(), CoinTask()], ids=lambda t: t.name)
def test_parameters_have_canonical_names_shapes_and_dtype(cell, layers, task):
    config = _config(task, cell, layers, hidden=5)
    model = backend.build_model(config)
    assert {name: tuple(value.shape) for name, value in model.state_dict().items()} == parameter_shapes(config)
    assert all(value.dtype == torch.float32 for value in model.state_dict().values())


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


@pytest.mark.parametrize("cell, task", [("gru", GAUSSIAN), ("lstm", COIN)], ids=["gru-gaussian", "lstm-coin"])
def test_predict_matches_numpy_reference(cell, task):
    config = _config(task, cell, layers=2, hidden=3, dtype="float64")
    weights = random_weights(parameter_shapes(config), seed=11)
    observations = task.sample(np.random.default_rng(12), 3).observations
    predicted = backend.predict(config, weights, observations)
    expected = reference_predictive(config, weights, observations)
    assert set(predicted) == set(expected)
    for name in expected:
        assert predicted[name].shape == (task.sequence_length, 3) and predicted[name].dtype == np.float64
        np.testing.assert_allclose(predicted[name], expected[name], rtol=1e-12, atol=1e-14)


def test_predict_refuses_weights_that_do_not_fit():
    config = _config()
    weights = random_weights(parameter_shapes(config), seed=0, dtype=np.float32)
    del weights["head.bias"]
    with pytest.raises(WeightsError, match="head.bias"):
        backend.predict(config, weights, np.zeros((7, 2, 1)))


def test_model_rejects_bad_inputs():
    model = backend.build_model(_config(GAUSSIAN, "gru", layers=2, hidden=6))
    good = torch.zeros(5, 3, 2)
    assert tuple(model(good).shape) == (5, 3, 2)
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(5, 3\)"):
        model(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(5, 3, 1\)"):
        model(torch.zeros(5, 3, 1))
    with pytest.raises(ValueError, match=r"shape \[T, B, 2\].*\(1, 5, 3, 2\)"):
        model(torch.zeros(1, 5, 3, 2))
    with pytest.raises(ValueError, match="dtype torch.float64.*torch.float32"):
        model(good.double())
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(np.zeros((5, 3, 2), np.float32))
    model64 = backend.build_model(_config(GAUSSIAN, "gru", layers=2, hidden=3, dtype="float64"))
    with pytest.raises(ValueError, match="dtype torch.float32.*torch.float64"):
        model64(good)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_outputs_are_causal(cell):
    """Output t sees x_1..x_t only: observation index j (x_{j+1}) moves outputs t >= j + 1 and no earlier one."""
    config = _config(GAUSSIAN, cell, layers=2, hidden=6)
    weights = random_weights(parameter_shapes(config), seed=15, dtype=np.float32)
    observations = GAUSSIAN.sample(np.random.default_rng(16), 4).observations.astype(np.float32)
    base = backend.predict(config, weights, observations)["mean"]
    steps = GAUSSIAN.sequence_length
    for j in range(steps):
        changed = observations.copy()
        changed[j] += 1.5
        moved = backend.predict(config, weights, changed)["mean"]
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
    got = _to_numpy(torch_heads.nll("gaussian", torch.as_tensor(raw), torch.as_tensor(y)))
    np.testing.assert_allclose(got, -stats.norm.logpdf(y[..., 0], raw[..., 0], np.exp(raw[..., 1])), rtol=1e-13)
    got = _to_numpy(torch_heads.nll("bernoulli", torch.as_tensor(raw[..., :1]), torch.as_tensor(flips)))
    logit = raw[..., 0]
    expected = -(flips[..., 0] * special.log_expit(logit) + (1 - flips[..., 0]) * special.log_expit(-logit))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    params = torch_heads.predictive_params("bernoulli", torch.as_tensor(raw[..., :1]))
    np.testing.assert_allclose(params["prob"], special.expit(logit), rtol=1e-14)
    with pytest.raises(ValueError, match="poisson"):
        torch_heads.nll("poisson", torch.as_tensor(raw), torch.as_tensor(y))


def _central_differences(loss_fn, params, eps=1e-6):
    grads = []
    with torch.no_grad():
        for p in params:
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                original = flat[i].item()
                flat[i] = original + eps
                plus = loss_fn().item()
                flat[i] = original - eps
                minus = loss_fn().item()
                flat[i] = original
                gflat[i] = (plus - minus) / (2 * eps)
            grads.append(g)
    return grads


@pytest.mark.parametrize("cell, task", [("gru", GAUSSIAN), ("lstm", COIN)], ids=["gru-gaussian", "lstm-coin"])
def test_loss_gradient_matches_finite_differences(cell, task):
    config = _config(task, cell, layers=1, hidden=3, dtype="float64")
    model = backend.build_model(config)
    backend.load_canonical(model, random_weights(parameter_shapes(config), seed=18))
    observations = torch.as_tensor(task.sample(np.random.default_rng(19), 3).observations)
    inputs = samplers.model_inputs(observations)

    def loss_fn():
        return sequence_nll(model, inputs, observations)

    params = list(model.parameters())
    analytic = torch.autograd.grad(loss_fn(), params)
    numeric = _central_differences(loss_fn, params)
    for a, n in zip(analytic, numeric):
        np.testing.assert_allclose(_to_numpy(a), _to_numpy(n), rtol=1e-6, atol=1e-9)
    assert max(float(a.abs().max()) for a in analytic) > 1e-3


def test_train_step_is_clipped_adam_on_the_schedule():
    # With clip_norm 0.25 the pre-clip norms of these six steps are 0.46, 0.24, 0.21, 0.29, 0.11, 0.05:
    # both branches of min(1, c / (||g|| + 1e-6)) run (asserted below).
    clip_norm = 0.25
    config = _config(
        COIN, "lstm", layers=1, hidden=3, dtype="float64", steps=6, learning_rate=0.05, final_lr_fraction=0.1,
        clip_norm=clip_norm, adam_beta1=0.8, adam_beta2=0.95, adam_eps=1e-7,
    )
    model = backend.build_model(config)
    backend.load_canonical(model, random_weights(parameter_shapes(config), seed=20))
    state = init_adam(model.named_parameters())
    train = config.train
    reference = AdamReference(
        backend.model_to_canonical(model), clip_norm, train.adam_beta1, train.adam_beta2, train.adam_eps
    )
    rng = np.random.default_rng(21)
    names = [name for name, _ in model.named_parameters()]
    norms = []
    objective = MetaLearnerObjective(config)
    step_fn, member = make_train_step(objective, model), objective.member(config.train.seed)
    train_step = lambda state, observations, k: step_fn(state, observations, k, member)[:3]  # noqa: E731
    for k in range(6):
        observations = torch.as_tensor(COIN.sample(rng, 8).observations)
        loss = sequence_nll(model, samplers.model_inputs(observations), observations)
        grads = dict(zip(names, (_to_numpy(g) for g in torch.autograd.grad(loss, list(model.parameters())))))
        lr = learning_rate(k, train.learning_rate, train.steps, train.schedule, train.final_lr_fraction)
        expected_norm = reference.step(grads, lr)
        value, norm, rate = train_step(state, observations, k)
        assert value == pytest.approx(float(loss.detach()), rel=1e-14)
        assert norm == pytest.approx(expected_norm, rel=1e-12)
        assert rate == lr
        norms.append(norm)
        weights = backend.model_to_canonical(model)
        for name in names:
            np.testing.assert_allclose(weights[name], reference.params[name], rtol=1e-10, atol=1e-13, err_msg=f"step {k}")
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
    """600 uninterrupted steps of SMALL, run in calls of 3, 197, 100, 100, 3, 197 steps, with snapshots."""
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
    observations = _to_numpy(native_batch(SMALL, 0, torch.float32))
    predictive = backend.predict(SMALL, reference_run["initial"], observations)
    assert reference_run["loss"][0] == pytest.approx(nll("gaussian", predictive, observations).mean(), rel=1e-5)
    train = SMALL.train
    expected = [learning_rate(k, train.learning_rate, 600, "cosine", train.final_lr_fraction) for k in range(600)]
    np.testing.assert_allclose(reference_run["learning_rate"], expected, rtol=1e-6)


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


def test_non_finite_loss_keeps_the_last_good_state_and_resumes(reference_run, tmp_path, monkeypatch):
    original = MetaLearnerObjective.sample  # the batch of the one trainer's loop (make_run_steps)

    def poisoned(self, step, member):
        observations = original(self, step, member)
        return torch.full_like(observations, float("nan")) if step == POISONED_STEP else observations

    monkeypatch.setattr(MetaLearnerObjective, "sample", poisoned)
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
        model = backend.predict(SMALL, reference_run["snapshots"][step].params, held_out)
        assert value == pytest.approx(kl_divergence("gaussian", exact, model).mean(), rel=1e-6), step


def test_diverging_run_stops_with_a_loadable_finite_checkpoint(tmp_path):
    config = RunConfig(
        model=ModelConfig(hidden_size=8),
        train=TrainConfig(steps=100, batch_size=8, learning_rate=1e6, schedule="constant", log_every=10),
        jax=JaxOptions(steps_per_call=20),
    )
    run = RunDir.at(tmp_path / "run")
    with pytest.raises(NonFiniteLossError) as excinfo:
        train(config, run.root, BACKEND, progress=False, figures=False)
    last_good = int(re.search(r"last good state \(step (\d+)\)", str(excinfo.value)).group(1))
    checkpoint = load_checkpoint(run.checkpoint, config)
    assert checkpoint.step == last_good < 100
    assert all(np.all(np.isfinite(value)) for value in checkpoint.params.values())
    assert not run.weights.exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, run.root, BACKEND, progress=False, figures=False)


def test_log_windows_cover_every_step_including_a_final_partial_window(tmp_path):
    """(Driver behaviour, independent of the backend; the cheap torch trainer carries it.)"""
    config = RunConfig(
        model=ModelConfig(hidden_size=8),
        train=TrainConfig(steps=25, batch_size=8, log_every=10, eval_every=100, eval_tasks=50, checkpoint_every=100),
    )
    losses = backend.make_tutorial_trainer(config).run(25).loss
    result = train(config, tmp_path / "run", BACKEND, progress=False, figures=False)
    steps, values = metric_series(read_metrics(result.run_dir / "metrics.csv"), "loss")
    assert steps == [10, 20, 25]
    for value, window in zip(values, (slice(0, 10), slice(10, 20), slice(20, 25))):
        assert value == pytest.approx(np.mean(losses[window].astype(np.float64)), rel=1e-12)
    assert result.final_loss == values[-1]
    assert load_checkpoint(result.run_dir / "checkpoint.safetensors", config).step == 25


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


def test_member_chunk_with_another_seed_is_that_seeds_run():
    """``make_member_chunk(member of seed s)`` trains on the stream of seed s, exactly like ``make_run_steps`` of a run seeded s."""
    from torch_impl.backend import build_model
    from torch_impl.optim import init_adam
    from torch_impl.trainer import make_member_chunk, make_run_steps

    other = dataclasses.replace(SMALL, train=dataclasses.replace(SMALL.train, seed=SMALL.train.seed + 7))
    models = [build_model(SMALL), build_model(SMALL)]
    objective, other_objective = MetaLearnerObjective(SMALL), MetaLearnerObjective(other)
    member = make_member_chunk(objective, models[0], 5)(init_adam(models[0].named_parameters()), 0, 5,
                                                        objective.member(other.train.seed))
    reference = make_run_steps(other_objective, models[1], 5, other_objective.member(other.train.seed))(
        init_adam(models[1].named_parameters()), 0, 5)
    np.testing.assert_array_equal(member.loss, reference.loss)
    for (name, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        assert torch.equal(a, b), name
