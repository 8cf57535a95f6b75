"""Training the bounded meta-learner: Adam + clipping (``torch_impl.optim``) on loss = NLL + kl_weight * KL.

Eager core as in ``torch_impl.training``: every builder closes over the ``nn.Module`` and returns a step
or a loop over steps that updates its parameters and the Adam state in place. :func:`make_run` trains
from a ``torch.Generator`` with the condition and beta as arguments; :func:`train_grid` runs the grid of
conditions x betas x seeds one run after another.

The KL weight of step k (0-based) ramps linearly, kl_weight = beta * min((k + 1) / warmup, 1)
(``cogmeta.experiments.heuristics.kl_weight``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, NamedTuple

import numpy as np
import torch

from cogmeta.config import TrainConfig
from cogmeta.contract import kl_weight
from cogmeta.tasks.paired_comparison import CONDITIONS, PairedComparisonTask
from torch_impl.bounded_gru import LAYERS, BoundedMetaLearner, bounded_loss
from torch_impl.optim import init_adam
from torch_impl.paired_comparison_samplers import model_inputs, sample_batch
from torch_impl.svdo import LOG_SIGMA_INIT
from torch_impl.training import clip_and_adam_in_place

CONDITION_INDEX = {name: i for i, name in enumerate(CONDITIONS)}


class StepOutputs(NamedTuple):
    """Per-step values (``[N]`` each for a loop of N steps)."""

    loss: float | np.ndarray
    nll: float | np.ndarray
    kl: float | np.ndarray
    grad_norm: float | np.ndarray


def make_train_step(model: BoundedMetaLearner, train: TrainConfig) -> Callable:
    """``step(opt_state, cues, targets, noise, weight) -> StepOutputs`` (floats).

    ``cues`` ``[T, B, K]``, ``targets`` ``[T, B]``; ``noise`` is ``{layer: eps (out, in)}`` or a
    ``torch.Generator``. Clip, then Adam at ``train.learning_rate`` (``torch_impl.optim``), written into the
    parameters and ``opt_state`` in place. A non-finite loss or gradient norm applies no update.
    """
    params = dict(model.named_parameters())

    def step(opt_state, cues, targets, noise, weight):
        injected, generator = (None, noise) if isinstance(noise, torch.Generator) else (noise, None)
        for param in params.values():
            param.grad = None
        loss, nll, kl = bounded_loss(model, model_inputs(cues, targets), cues, targets, weight, injected, generator)
        value = float(loss.detach())
        if not np.isfinite(value):
            return StepOutputs(value, float(nll.detach()), float(kl.detach()), float("nan"))
        loss.backward()
        norm = clip_and_adam_in_place(params, opt_state, train.learning_rate, train)
        return StepOutputs(value, float(nll.detach()), float(kl.detach()), norm)

    return step


def make_train_on_batches(model: BoundedMetaLearner, train: TrainConfig) -> Callable:
    """``run(opt_state, cues [N,T,B,K], targets [N,T,B], noises {layer: [N,out,in]}, weights [N])``
    -> ``StepOutputs [N]``: given batches and weight noise, as the JAX twin."""
    step = make_train_step(model, train)
    dtype = model.initial_state.dtype

    def run(opt_state, cues, targets, noises, weights):
        outputs = []
        for k in range(len(cues)):
            noise = {name: torch.as_tensor(noises[name][k], dtype=dtype) for name in LAYERS}
            outputs.append(step(opt_state, torch.as_tensor(cues[k], dtype=dtype), torch.as_tensor(targets[k], dtype=dtype),
                                noise, float(weights[k])))
        return _stack(outputs)

    return run


def make_run(model: BoundedMetaLearner, task: PairedComparisonTask, train: TrainConfig, chunk: int, warmup: int) -> Callable:
    """``run(opt_state, generator, condition, beta, start) -> StepOutputs [chunk]``.

    Runs steps ``start .. start + chunk - 1``; step k samples its batch, then its weight noise, from
    ``generator`` (one stream for the whole run) and uses kl_weight = beta * min((k + 1) / warmup, 1).
    ``condition`` is an index into ``CONDITIONS``.
    """
    step = make_train_step(model, train)
    dtype = model.initial_state.dtype

    def run(opt_state, generator, condition, beta, start):
        spec = replace(task, condition=CONDITIONS[condition])
        outputs = []
        for k in range(start, start + chunk):
            batch = sample_batch(spec, generator, train.batch_size, dtype)
            outputs.append(step(opt_state, batch.cues, batch.targets, generator, kl_weight(k, beta, warmup)))
        return _stack(outputs)

    return run


def reset_log_sigma(params):
    """log sigma <- -5 in every layer (the paper's fine-tuning starts from the beta = 0 model this way).

    ``params``: name -> tensor (``dict(model.named_parameters())``), filled in place and returned.
    """
    with torch.no_grad():
        for name in LAYERS:
            params[f"{name}.log_sigma"].fill_(LOG_SIGMA_INIT)
    return params


def train_grid(task: PairedComparisonTask, recipe, conditions, seeds, dtype: torch.dtype = torch.float32,
               progress: Callable | None = None, chunk: int = 500) -> dict:
    """Both stages of the recipe for every (condition, seed), beta grid included, one run after another.

    Returns ``{(condition, beta, seed): canonical weights}``; beta = 0 holds the stage-1 ("MI") model.
    """
    import copy

    from torch_impl.weights import model_to_canonical

    train = recipe.train_config()
    results = {}
    for condition in conditions:
        for seed in seeds:
            torch.manual_seed(seed)
            model = BoundedMetaLearner(task.num_cues, recipe.hidden_size, dtype)
            generator = torch.Generator().manual_seed(1000 * seed + CONDITION_INDEX[condition])
            _stages(model, task, train, recipe.pretrain_steps, 0.0, 0, generator, CONDITION_INDEX[condition], progress,
                    f"pretrain {condition} seed {seed}", chunk)
            results[(condition, 0.0, seed)] = model_to_canonical(model)
            for beta in (b for b in recipe.betas if b > 0):
                if recipe.finetune_steps == 0:
                    break
                tuned = copy.deepcopy(model)
                reset_log_sigma(dict(tuned.named_parameters()))
                _stages(tuned, task, train, recipe.finetune_steps, beta, recipe.warmup_steps, generator,
                        CONDITION_INDEX[condition], progress, f"fine-tune {condition} beta {beta:g} seed {seed}", chunk)
                results[(condition, beta, seed)] = model_to_canonical(tuned)
    return results


def _stages(model, task, train, steps, beta, warmup, generator, condition, progress, label, chunk):
    """Train ``steps`` steps with one Adam state, reporting progress every ``chunk`` steps."""
    state = init_adam(model.named_parameters())
    done = 0
    while done < steps:
        size = min(chunk, steps - done)
        outputs = make_run(model, task, train, size, warmup)(state, generator, condition, beta, done)
        done += size
        if progress is not None:
            progress(label, done, steps, outputs.nll[-1:], outputs.kl[-1:])
        if not np.isfinite(outputs.loss[-1]):
            raise FloatingPointError(f"{label}: non-finite loss at step {done}; lower the learning rate or beta")


def predict(weights, cues, targets, hidden_size: int, mode: str = "pruned", key: int = 0):
    """Model outputs on numpy ``cues [T, B, K]``, ``targets [T, B]``: (mean ``[T, B, K]``, p(y=1) ``[T, B]``)."""
    from torch_impl.weights import load_canonical

    dtype = torch.from_numpy(np.asarray(next(iter(weights.values())))).dtype
    model = BoundedMetaLearner(cues.shape[-1], hidden_size, dtype)
    load_canonical(model, weights)
    cues_t, targets_t = torch.as_tensor(cues, dtype=dtype), torch.as_tensor(targets, dtype=dtype)
    with torch.no_grad():
        out = model(model_inputs(cues_t, targets_t), cues_t, mode, generator=torch.Generator().manual_seed(key))
        return out.mean.numpy(), torch.special.ndtr(out.z).numpy()


def _stack(outputs: list[StepOutputs]) -> StepOutputs:
    return StepOutputs(*(np.asarray([getattr(o, f) for o in outputs]) for f in StepOutputs._fields))
