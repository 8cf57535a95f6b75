"""Training the bounded meta-learner: Adam + clipping (``jax_impl.optim``) on loss = NLL + kl_weight * KL.

Functional core as in ``jax_impl.training``: the model is split once into ``graphdef`` and ``params``;
every builder takes the ``graphdef`` as its ``model`` and returns a step or a loop over steps, pure in
``(params, opt_state, ...)`` and scanned with ``lax.scan``. :func:`make_run` trains from a PRNG key with
the condition and beta as (traceable) arguments, so :func:`make_grid_run` ``vmap``s whole training runs
over conditions x betas x seeds in one compiled program.

The KL weight of step k (0-based) ramps linearly, kl_weight = beta * min((k + 1) / warmup, 1)
(``cogmeta.experiments.heuristics.kl_weight``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta.config import TrainConfig
from cogmeta.tasks.paired_comparison import CONDITIONS, PairedComparisonTask
from jax_impl.bounded_gru import bounded_loss
from jax_impl.optim import adam_step, clip_by_global_norm, init_adam
from jax_impl.paired_comparison_samplers import model_inputs, sample_batch
from jax_impl.svdo import LOG_SIGMA_INIT

CONDITION_INDEX = {name: i for i, name in enumerate(CONDITIONS)}


class StepOutputs(NamedTuple):
    """Per-step values (``[N]`` each for a loop of N steps)."""

    loss: jax.Array
    nll: jax.Array
    kl: jax.Array
    grad_norm: jax.Array


def make_train_step(model: nnx.GraphDef, train: TrainConfig) -> Callable:
    """``step(params, opt_state, cues, targets, noise, weight) -> (params, opt_state, StepOutputs)``.

    ``cues`` ``[T, B, K]``, ``targets`` ``[T, B]``; ``noise`` is ``{layer: eps (out, in)}`` or a PRNG key.
    Clip, then Adam at ``train.learning_rate`` (``jax_impl.optim``), returned as new pytrees. A non-finite
    loss or gradient norm leaves params and optimizer state unchanged.
    """
    lr = jnp.asarray(train.learning_rate)

    def loss_fn(params, cues, targets, noise, weight):
        merged = nnx.merge(model, params)
        is_key = isinstance(noise, jax.Array) and jnp.issubdtype(noise.dtype, jax.dtypes.prng_key)
        injected, key = (None, noise) if is_key else (noise, None)
        return bounded_loss(merged, model_inputs(cues, targets), cues, targets, weight, injected, key)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(params, opt_state, cues, targets, noise, weight):
        (loss, (nll, kl)), grads = grad_fn(params, cues, targets, noise, weight)
        grads, norm = clip_by_global_norm(grads, train.clip_norm)
        finite = jnp.isfinite(loss) & jnp.isfinite(norm)
        params, opt_state = adam_step(params, grads, opt_state, lr, train, apply=finite)
        return params, opt_state, StepOutputs(loss, nll, kl, norm)

    return step


def make_train_on_batches(model: nnx.GraphDef, train: TrainConfig) -> Callable:
    """Jitted ``run(params, opt_state, cues [N,T,B,K], targets [N,T,B], noises {layer: [N,out,in]}, weights [N])``
    -> ``(params, opt_state, StepOutputs [N])``: given batches and weight noise, as the torch twin (jitted)."""
    step = make_train_step(model, train)

    @jax.jit
    def run(params, opt_state, cues, targets, noises, weights):
        def body(carry, xs):
            params, opt_state, outputs = step(*carry, *xs)
            return (params, opt_state), outputs

        (params, opt_state), outputs = jax.lax.scan(body, (params, opt_state), (cues, targets, noises, weights))
        return params, opt_state, outputs

    return run


def make_run(model: nnx.GraphDef, task: PairedComparisonTask, train: TrainConfig, chunk: int, warmup: int) -> Callable:
    """``run(params, opt_state, key, condition, beta, start) -> (params, opt_state, StepOutputs [chunk])``.

    Runs steps ``start .. start + chunk - 1`` (pure, not jitted: vmap it); step k samples its batch and
    weight noise from ``fold_in(key, k)`` and uses kl_weight = beta * min((k + 1) / warmup, 1).
    ``condition`` is an index into ``CONDITIONS`` (traceable).
    """
    step = make_train_step(model, train)

    def run(params, opt_state, key, condition, beta, start):
        leaf_dtype = jax.tree.leaves(params)[0].dtype

        def body(carry, k):
            params, opt_state = carry
            batch_key, noise_key = jax.random.split(jax.random.fold_in(key, k))
            batch = sample_batch(task, batch_key, train.batch_size, leaf_dtype, condition)
            ramp = jnp.minimum((k + 1) / warmup, 1.0) if warmup > 0 else 1.0
            weight = (beta * ramp).astype(leaf_dtype)
            params, opt_state, outputs = step(params, opt_state, batch.cues, batch.targets, noise_key, weight)
            return (params, opt_state), outputs

        (params, opt_state), outputs = jax.lax.scan(body, (params, opt_state), start + jnp.arange(chunk))
        return params, opt_state, outputs

    return run


def make_grid_run(model: nnx.GraphDef, task: PairedComparisonTask, train: TrainConfig, chunk: int, warmup: int) -> Callable:
    """Jitted :func:`make_run` vmapped over a flat grid of G runs (params, opt_state, keys, conditions,
    betas with a leading G axis; ``start`` shared): conditions x betas x seeds in one compiled program."""
    return jax.jit(jax.vmap(make_run(model, task, train, chunk, warmup), in_axes=(0, 0, 0, 0, 0, None)))


def reset_log_sigma(params):
    """log sigma <- -5 in every layer (the paper's fine-tuning starts from the beta = 0 model this way).

    ``params``: a pytree of parameters (an ``nnx.State``; leading grid axes allowed); returns a new one.
    """

    def reset(path, leaf):
        names = [getattr(entry, "key", getattr(entry, "name", None)) for entry in path]
        return jnp.full_like(leaf, LOG_SIGMA_INIT) if "log_sigma" in names else leaf

    return jax.tree_util.tree_map_with_path(reset, params)


def train_grid(task: PairedComparisonTask, recipe, conditions, seeds, dtype=jnp.float32, progress: Callable | None = None,
               chunk: int = 500) -> dict:
    """Both stages of the recipe for every (condition, seed), beta grid included, as two compiled
    programs (stage 1: conditions x seeds; stage 2: conditions x betas x seeds, vmapped).

    Returns ``{(condition, beta, seed): canonical weights}``; beta = 0 holds the stage-1 ("MI") model.
    """
    from jax_impl.bounded_gru import BoundedMetaLearner
    from jax_impl.weights import state_to_canonical

    train = recipe.train_config()
    names = list(conditions)
    cells = [(c, s) for c in names for s in seeds]
    starts = []
    for _, seed in cells:
        model = BoundedMetaLearner(task.num_cues, recipe.hidden_size, rngs=nnx.Rngs(seed), dtype=dtype)
        graphdef, params = nnx.split(model, nnx.Param)
        starts.append(params)
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    index = jnp.asarray([CONDITION_INDEX[c] for c, _ in cells])

    def stage(params, keys, conditions_, betas, steps, warmup, label):
        opt_state = jax.vmap(init_adam)(params)
        size = min(chunk, max(steps, 1))
        run = make_grid_run(graphdef, task, train, size, warmup)
        done = 0
        while done < steps:
            params, opt_state, outputs = run(params, opt_state, keys, conditions_, betas, done)
            done += size
            if progress is not None:
                progress(label, min(done, steps), steps, np.asarray(outputs.nll[:, -1]), np.asarray(outputs.kl[:, -1]))
        return params

    keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), CONDITION_INDEX[c]) for c, seed in cells])
    pretrained = stage(stack(starts), keys, index, jnp.zeros(len(cells), dtype), recipe.pretrain_steps, 0, "pretrain")
    results = {}
    for g, (condition, seed) in enumerate(cells):
        results[(condition, 0.0, seed)] = state_to_canonical(jax.tree.map(lambda x: x[g], pretrained))
    betas = [b for b in recipe.betas if b > 0]
    if betas and recipe.finetune_steps > 0:
        grid = [(g, beta) for beta in betas for g in range(len(cells))]
        params = reset_log_sigma(jax.tree.map(lambda x: x[jnp.asarray([g for g, _ in grid])], pretrained))
        fine_keys = jnp.stack([jax.random.fold_in(keys[g], 1 + i // len(cells)) for i, (g, _) in enumerate(grid)])
        tuned = stage(params, fine_keys, index[jnp.asarray([g for g, _ in grid])], jnp.asarray([b for _, b in grid], dtype),
                      recipe.finetune_steps, recipe.warmup_steps, "fine-tune")
        for i, (g, beta) in enumerate(grid):
            condition, seed = cells[g]
            results[(condition, beta, seed)] = state_to_canonical(jax.tree.map(lambda x: x[i], tuned))
    return results


def predict(weights, cues, targets, hidden_size: int, mode: str = "pruned", key: int = 0):
    """Model outputs on numpy ``cues [T, B, K]``, ``targets [T, B]``: (mean ``[T, B, K]``, p(y=1) ``[T, B]``)."""
    from jax_impl.bounded_gru import BoundedMetaLearner
    from jax_impl.weights import load_canonical

    dtype = jnp.asarray(next(iter(weights.values()))).dtype
    model = BoundedMetaLearner(cues.shape[-1], hidden_size, rngs=nnx.Rngs(0), dtype=dtype)
    load_canonical(model, weights)
    cues_j, targets_j = jnp.asarray(cues, dtype), jnp.asarray(targets, dtype)
    out = model(model_inputs(cues_j, targets_j), cues_j, mode, key=jax.random.key(key) if mode == "sample" else None)
    return np.asarray(out.mean), np.asarray(jax.scipy.special.ndtr(out.z))


__all__ = ["CONDITION_INDEX", "StepOutputs", "make_grid_run", "make_run", "make_train_on_batches", "make_train_step", "predict",
           "reset_log_sigma", "train_grid"]
