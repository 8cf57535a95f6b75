"""Heuristics from bounded meta-learned inference: samplers, the sparse-variational GRU, its KL, gradients
and training steps, torch vs JAX, fed identical numpy noise (tasks and reparameterisation epsilon).

Layered like the rest of the suite: transform (bit-identical) -> forward in the three weight modes ->
KL -> loss and gradients -> end-to-end Adam steps of the one trainer (``Trainer.run_on`` on
``BoundedObjective``) on identical batches carrying identical weight noise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl.bounded_gru as jax_model
import jax_impl.paired_comparison_samplers as jax_samplers
import jax_impl.trainer as jax_trainer
import jax_impl.weights as jax_weights
import torch_impl.bounded_gru as torch_model
import torch_impl.paired_comparison_samplers as torch_samplers
import torch_impl.trainer as torch_trainer
import torch_impl.weights as torch_weights
from cogmeta.contract import Checkpoint
from cogmeta.experiments.heuristics import base_config
from cogmeta.tasks import draw_noise
from cogmeta.tasks.paired_comparison import (
    CONDITIONS,
    ComparisonBatch,
    PairedComparisonTask,
    model_inputs,
)
from parity_tests._cases import jax_dtype, torch_dtype, x64
from parity_tests._compare import assert_all, assert_bitwise, assert_bitwise_on_cpu, assert_parity

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

CUES, HIDDEN, BATCH = 3, 7, 5  # deliberately unequal (3H = 21 rows, K + 2 = 5 inputs)


@pytest.fixture(params=CONDITIONS)
def task(request):
    return PairedComparisonTask(condition=request.param, num_cues=4, flip_direction_targets=True)


def _noise(task, dtype, seed, batch=64):
    return draw_noise(task.noise_spec(batch), np.random.default_rng(seed), np.dtype(dtype))


# ------------------------------------------------------------------------------ layer 0: samplers
def test_torch_transform(task, dtype, seed):
    """Weights bit-identical; cues within one rounding of torch's inexact sqrt (framework-differences.md#sqrt-rounding);
    targets identical except on near-ties of the two criteria."""
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    batch = torch_samplers.transform(task, {k: torch.from_numpy(v) for k, v in noise.items()})
    assert_bitwise(f"{task.condition} weights (torch)", batch.weights.numpy(), reference.weights)
    assert_parity(f"{task.condition} cues (torch)", batch.cues.numpy(), reference.cues, "forward", dtype)
    assert np.mean(batch.targets.numpy() != reference.targets) <= 0.01


def test_jax_transform_matches_numpy(task, dtype, seed):
    """Eager (bit for bit on CPU, elsewhere within the forward tolerance: ``assert_bitwise_on_cpu``) and jitted
    (with the condition as a traced index, as under the grid's vmap)."""
    noise = _noise(task, dtype, seed)
    reference = task.transform(noise)
    with x64(dtype):
        arrays = {k: jnp.asarray(v) for k, v in noise.items()}
        eager = jax_samplers.transform(task, arrays)
        traced = jax.jit(lambda n, c: jax_samplers.transform(task, n, c))(arrays, jnp.asarray(task.condition_index))
        for name in ComparisonBatch._fields:
            assert_bitwise_on_cpu(f"{task.condition} {name} (jax eager)", np.asarray(getattr(eager, name)),
                                  getattr(reference, name), "forward", dtype)
        # jit may contract the criterion's multiply-adds (FMA): targets may only differ on exact near-ties
        assert_parity(f"{task.condition} cues (jit)", np.asarray(traced.cues), reference.cues, "forward", dtype)
        assert np.mean(np.asarray(traced.targets) != reference.targets) <= 0.01


# ------------------------------------------------------------------------------ models
def _models(dtype: str, seed: int, prune: bool = False):
    torch.manual_seed(seed)
    reference = torch_model.BoundedMetaLearner(CUES, HIDDEN, torch_dtype(dtype))
    if prune:  # large log sigma on a third of the weights, so that log alpha >= 3 and "pruned" masks them
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            for layer in reference.layers().values():
                mask = torch.from_numpy(rng.random(layer.log_sigma.shape) < 1 / 3)
                layer.log_sigma[mask] = 1.0
    with x64(dtype):
        twin = jax_model.BoundedMetaLearner(CUES, HIDDEN, rngs=nnx.Rngs(seed), dtype=jax_dtype(dtype))
        jax_weights.load_canonical(twin, torch_weights.model_to_canonical(reference))
    return reference, twin


def _data(dtype: str, seed: int, steps: int | None = None):
    task = PairedComparisonTask(condition="none", num_cues=CUES, num_trials=6)
    rng = np.random.default_rng(seed)
    count = 1 if steps is None else steps
    batches = [task.sample(rng, BATCH, np.dtype(dtype)) for _ in range(count)]
    cues = np.stack([b.cues for b in batches])
    targets = np.stack([b.targets for b in batches])
    shapes = {"ih": (3 * HIDDEN, CUES + 2), "hh": (3 * HIDDEN, HIDDEN), "mu": (CUES, HIDDEN), "logscale": (CUES, HIDDEN)}
    eps = {name: rng.standard_normal((count, *shape)).astype(dtype) for name, shape in shapes.items()}
    if steps is None:
        return cues[0], targets[0], {name: value[0] for name, value in eps.items()}
    return cues, targets, eps


@pytest.mark.parametrize("mode", ["sample", "mean", "pruned"])
def test_forward_and_kl(mode, dtype, seed, record):
    reference, twin = _models(dtype, seed, prune=True)
    cues, targets, eps = _data(dtype, seed)
    inputs = model_inputs(cues, targets)
    out = reference(torch.from_numpy(inputs), torch.from_numpy(cues), mode, {k: torch.from_numpy(v) for k, v in eps.items()})
    with x64(dtype):
        got = twin(jnp.asarray(inputs), jnp.asarray(cues), mode, {k: jnp.asarray(v) for k, v in eps.items()})
        kl = twin.kl()
        log_alpha = {name: np.asarray(layer.log_alpha()) for name, layer in twin.layers().items()}
    pairs = [(f"{mode} {name}", np.asarray(getattr(got, name)), getattr(out, name).detach().numpy()) for name in ("mean", "scale", "z")]
    pairs += [("kl", np.asarray(kl), reference.kl().detach().numpy())]
    pairs += [(f"log_alpha {n}", log_alpha[n], l.log_alpha().detach().numpy()) for n, l in reference.layers().items()]
    record("model", "svdo-gru", dtype, assert_all(pairs, "forward", dtype))
    if mode == "pruned":  # the mask acted, and identically
        kept = [np.mean(log_alpha[n] < 3) for n in log_alpha]
        assert 0.2 < np.mean(kept) < 0.9


def test_loss_and_gradients(dtype, seed, record):
    reference, twin = _models(dtype, seed)
    cues, targets, eps = _data(dtype, seed)
    inputs = model_inputs(cues, targets)
    loss, nll, kl = torch_model.bounded_loss(reference, torch.from_numpy(inputs), torch.from_numpy(cues),
                                             torch.from_numpy(targets), 3e-3, {k: torch.from_numpy(v) for k, v in eps.items()})
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in reference.named_parameters()}
    with x64(dtype):
        graphdef, params = nnx.split(twin, nnx.Param)

        def fn(params):
            model = nnx.merge(graphdef, params)
            return jax_model.bounded_loss(model, jnp.asarray(inputs), jnp.asarray(cues), jnp.asarray(targets), 3e-3,
                                          {k: jnp.asarray(v) for k, v in eps.items()})

        (value, (nll_j, kl_j)), jgrads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params)  # eager: 12 s
        jgrads = jax_weights.state_to_canonical(jgrads)
    record("loss", "svdo-gru", dtype, assert_all([("loss", np.asarray(value), loss.detach().numpy()),
                                                  ("nll", np.asarray(nll_j), nll.detach().numpy())], "forward", dtype))
    assert set(jgrads) == set(grads)
    record("grad", "svdo-gru", dtype, assert_all([(f"grad {n}", jgrads[n], grads[n]) for n in grads], "grad", dtype))


def _train_both(dtype: str, seed: int, steps: int, beta: float, warmup: int, lr: float = 1e-3):
    """Both twins' ``Trainer.run_on`` from the same weights on the same batches and weight noise (the KL
    weight of step k, beta * min((k + 1) / warmup, 1), computed by each objective)."""
    reference, _ = _models(dtype, seed)
    cues, targets, eps = _data(dtype, seed, steps)
    task = PairedComparisonTask(condition="none", num_cues=CUES, num_trials=6)
    train = dataclasses.replace(base_config(learning_rate=lr, pretrain_steps=steps, dtype=dtype).train, clip_norm=1.0)
    weights = torch_weights.model_to_canonical(reference)
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    start = Checkpoint(0, weights, zeros, zeros, "torch")
    trainer = torch_trainer.Trainer(torch_model.BoundedObjective(task, HIDDEN, train, beta, warmup), start, seed=seed)
    batches = [torch_model.BoundedBatch(torch.from_numpy(cues[k]), torch.from_numpy(targets[k]),
                                        {name: torch.from_numpy(value[k]) for name, value in eps.items()})
               for k in range(steps)]
    history = trainer.run_on(batches)
    assert trainer.step == steps and set(history.aux) == {"nll", "kl"}
    with x64(dtype):
        twin_trainer = jax_trainer.Trainer(jax_model.BoundedObjective(task, HIDDEN, train, beta, warmup), start, seed=seed)
        stacked = jax_model.BoundedBatch(jnp.asarray(cues), jnp.asarray(targets), {k: jnp.asarray(v) for k, v in eps.items()})
        outputs = twin_trainer.run_on(stacked)
        got = twin_trainer.weights()
    return np.asarray(history.loss).astype(dtype), np.asarray(outputs.loss), got, trainer.weights()


def test_train_steps(dtype, seed, record):
    """60 Adam steps (clip 1.0, lr 1e-3) on identical batches and weight noise, KL weight warming up.

    With beta > 0 the horizon is short on purpose: the KL's gradient grows like 1/|W_mu| for weights
    pushed towards 0, which amplifies rounding differences exponentially once weights get pruned
    (docs/framework-differences.md#kl-amplifies-rounding); at beta = 0 :func:`test_train_1000_steps_float64` runs 1000.
    """
    steps = 60
    history, losses, got, expected = _train_both(dtype, seed, steps, 1e-3, warmup=steps // 2)
    record("train 60 steps: loss", "svdo-gru", dtype, assert_parity("loss curve", losses, history, "loss_curve", dtype))
    record("train 60 steps: params", "svdo-gru", dtype,
           assert_all([(n, got[n], expected[n]) for n in expected], "train_steps", dtype))


@pytest.mark.slow
def test_train_1000_steps_float64(record):
    """1000 float64 steps at beta = 0 (sampled weights, log sigma trained through the NLL alone)."""
    history, losses, got, expected = _train_both("float64", 11, 1000, 0.0, warmup=0)
    record("train 1000 steps: loss", "svdo-gru", "float64", assert_parity("loss curve", losses, history, "loss_curve", "float64"))
    record("train 1000 steps: params", "svdo-gru", "float64",
           assert_all([(n, got[n], expected[n]) for n in expected], "train_steps", "float64"))


def test_detects_shared_noise_mixup(dtype, seed):
    """The check can fail: swapping the epsilon of two layers' rows changes the forward pass."""
    reference, twin = _models(dtype, seed)
    cues, targets, eps = _data(dtype, seed)
    inputs = model_inputs(cues, targets)
    out = reference(torch.from_numpy(inputs), torch.from_numpy(cues), "sample", {k: torch.from_numpy(v) for k, v in eps.items()})
    wrong = dict(eps, hh=eps["hh"][::-1].copy())
    with x64(dtype):
        got = twin(jnp.asarray(inputs), jnp.asarray(cues), "sample", {k: jnp.asarray(v) for k, v in wrong.items()})
    with pytest.raises(AssertionError):
        assert_parity("z", np.asarray(got.z), out.z.detach().numpy(), "forward", dtype)
