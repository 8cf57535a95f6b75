"""Training the bounded meta-learner: Adam + clipping (``torch_impl.optim``) on loss = NLL + kl_weight * KL.

The KL weight of step k (0-based) ramps linearly, kl_weight = beta * min((k + 1) / warmup, 1)
(``cogmeta.experiments.heuristics.kl_weight``). Batches come from ``paired_comparison_samplers`` and the
weight noise from the same ``torch.Generator``; :func:`train_on_batches` takes both from outside
(the parity tests feed identical numpy arrays to both frameworks).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from cogmeta.config import TrainConfig
from cogmeta.contract import kl_weight
from cogmeta.tasks.paired_comparison import PairedComparisonTask
from torch_impl.bounded_gru import LAYERS, BoundedMetaLearner, bounded_loss
from torch_impl.optim import AdamState, init_adam
from torch_impl.paired_comparison_samplers import model_inputs, sample_batch
from torch_impl.svdo import LOG_SIGMA_INIT
from torch_impl.training import clip_and_adam_in_place


def train_step(
    model: BoundedMetaLearner,
    state: AdamState,
    cues: torch.Tensor,
    targets: torch.Tensor,
    weight: float,
    train: TrainConfig,
    noise: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, float, float, float]:
    """One update on ``cues`` ``[T, B, K]``, ``targets`` ``[T, B]``; returns (loss, nll, kl, pre-clip norm).

    ``state`` (``torch_impl.optim.init_adam``) and the parameters are updated in place. A non-finite
    loss applies no update.
    """
    for param in model.parameters():
        param.grad = None
    loss, nll, kl = bounded_loss(model, model_inputs(cues, targets), cues, targets, weight, noise, generator)
    value = float(loss.detach())
    if not np.isfinite(value):
        return value, float(nll.detach()), float(kl.detach()), float("nan")
    loss.backward()
    norm = clip_and_adam_in_place(dict(model.named_parameters()), state, train.learning_rate, train)
    return value, float(nll.detach()), float(kl.detach()), norm


def train_on_batches(
    model: BoundedMetaLearner,
    state: AdamState,
    cues: np.ndarray,
    targets: np.ndarray,
    noises: Mapping[str, np.ndarray],
    weights: Sequence[float],
    train: TrainConfig,
) -> np.ndarray:
    """Train on given batches ``cues [N, T, B, K]``, ``targets [N, T, B]`` with given weight noise
    ``{layer: [N, out, in]}`` and KL weights ``[N]``; returns ``[N, 3]`` (loss, nll, kl)."""
    dtype = model.initial_state.dtype
    history = []
    for k in range(len(cues)):
        noise = {name: torch.as_tensor(noises[name][k], dtype=dtype) for name in LAYERS}
        step = train_step(model, state, torch.as_tensor(cues[k], dtype=dtype), torch.as_tensor(targets[k], dtype=dtype),
                          float(weights[k]), train, noise)
        history.append(step[:3])
    return np.asarray(history)


def reset_log_sigma(model: BoundedMetaLearner) -> None:
    """log sigma <- -5 in every layer (the paper's fine-tuning starts from the beta = 0 model this way)."""
    with torch.no_grad():
        for name in LAYERS:
            getattr(model, name).log_sigma.fill_(LOG_SIGMA_INIT)


def train_grid(task: PairedComparisonTask, recipe, conditions, seeds, dtype: torch.dtype = torch.float32,
               progress: Callable | None = None, chunk: int = 500) -> dict:
    """Both stages of the recipe for every (condition, seed), beta grid included, one run after another.

    Returns ``{(condition, beta, seed): canonical weights}``; beta = 0 holds the stage-1 ("MI") model.
    """
    import copy
    from dataclasses import replace

    from torch_impl.weights import model_to_canonical

    train = recipe.train_config()
    results = {}
    for condition in conditions:
        spec = replace(task, condition=condition)
        for seed in seeds:
            torch.manual_seed(seed)
            model = BoundedMetaLearner(task.num_cues, recipe.hidden_size, dtype)
            generator = torch.Generator().manual_seed(1000 * seed + spec.condition_index)
            _stages(model, spec, train, recipe.pretrain_steps, 0.0, 0, generator, progress, f"pretrain {condition} seed {seed}", chunk)
            results[(condition, 0.0, seed)] = model_to_canonical(model)
            for beta in (b for b in recipe.betas if b > 0):
                if recipe.finetune_steps == 0:
                    break
                tuned = copy.deepcopy(model)
                reset_log_sigma(tuned)
                _stages(tuned, spec, train, recipe.finetune_steps, beta, recipe.warmup_steps, generator, progress,
                        f"fine-tune {condition} beta {beta:g} seed {seed}", chunk)
                results[(condition, beta, seed)] = model_to_canonical(tuned)
    return results


def _stages(model, task, train, steps, beta, warmup, generator, progress, label, chunk):
    """Train ``steps`` steps with one Adam state, reporting progress every ``chunk`` steps."""
    state = init_adam(model.named_parameters())
    done = 0
    while done < steps:
        size = min(chunk, steps - done)
        weights = [kl_weight(done + k, beta, warmup) for k in range(size)]
        history = []
        for k in range(size):
            batch = sample_batch(task, generator, train.batch_size, model.initial_state.dtype)
            history.append(train_step(model, state, batch.cues, batch.targets, weights[k], train, generator=generator))
        done += size
        if progress is not None:
            progress(label, done, steps, np.array([history[-1][1]]), np.array([history[-1][2]]))
        if not np.isfinite(history[-1][0]):
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
