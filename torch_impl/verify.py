"""What ``cogmeta verify`` measures in PyTorch: every rung of the parity ladder of one run config, on numpy in, numpy out.

``cogmeta.verify`` (framework-free) gives both twins (this module and ``jax_impl.verify``, same names and
parameters) the same canonical weights, the same numpy batches and the same numpy gradients, and compares
what they return under the parity suite's tolerances (``cogmeta.tolerances``). Everything here runs the
library's own code paths (the tutorial objective ``backend.MetaLearnerObjective`` and the one trainer
``trainer``), so a bug in them shows up here:

    cell             core(inputs) -> outputs [T, B, H], final state [L, B, H] (LSTM: h and c)
    model forward    model(inputs) -> raw outputs [T, B, O]
    loss             objective.loss(model, observations) -> scalar mean NLL
    gradients        d loss / d theta by canonical name, and ||g||_2
    optimizer        K trainer updates (clip, schedule, Adam/SGD) on injected gradients g_1..g_K
    training         the Trainer from the given weights, one ``run_on`` per batch: loss_k, ||g_k||, lr_k, theta_k

``device`` is "cpu" or "gpu" (CUDA); inputs are numpy arrays in ``config.train.dtype``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import torch

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from torch_impl import backend, recurrent
from torch_impl.heads import predictive_params
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.optim import clip_by_global_norm, init_adam
from torch_impl.samplers import model_inputs
from torch_impl.trainer import make_train_on_batches
from torch_impl.weights import load_canonical, model_to_canonical

FRAMEWORK = "torch"


def library_versions() -> dict[str, str]:
    """The framework's library versions by package name."""
    return {"torch": torch.__version__}


def device_kinds() -> list[str]:
    """The device kinds this framework can run on here: "cpu", and "gpu" when CUDA is available."""
    return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]


def device_name(device: str) -> str:
    """A description of the device of kind ``device`` ("cpu" or "gpu") that this framework uses."""
    if device == "gpu":
        return f"cuda:0 ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cuda (not available)"
    return "cpu"


def check_supported(config: RunConfig) -> None:
    """Raise ValueError if this framework lacks a part of ``config``'s model (its recurrent cell)."""
    if config.model.cell not in recurrent.CORES:
        raise ValueError(f"model.cell {config.model.cell!r}: the torch backend has no such cell (it has "
                         f"{', '.join(sorted(recurrent.CORES))}); verify needs the model in both frameworks")


def ladder_values(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
                  device: str) -> dict[str, dict[str, np.ndarray]]:
    """The rungs below training for the model with ``weights`` on ``observations`` ``[T, B, 1]``.

    Returns ``{"cell": {"core outputs", "core h_n"[, "core c_n"]}, "model forward": {"raw outputs"},
    "loss": {"training loss"}, "gradients": {"gradient norm", "grad <name>" ...}}`` as numpy arrays.
    """
    config = _on(config, device)
    objective = backend.MetaLearnerObjective(config)
    model = _model(config, weights)
    observations_t = _tensor(observations, config)
    inputs = model_inputs(observations_t)
    with torch.no_grad():
        hidden, final = model.core(inputs)
        raw = model(inputs)
    cell = {"core outputs": _np(hidden)}
    if isinstance(final, tuple):
        cell.update({"core h_n": _np(final[0]), "core c_n": _np(final[1])})
    else:
        cell["core h_n"] = _np(final)
    model.zero_grad(set_to_none=True)
    loss, _ = objective.loss(model, observations_t, 0, objective.member(config.train.seed))
    loss.backward()
    grads = {name: param.grad for name, param in model.named_parameters()}
    clip = math.inf if config.train.clip_norm is None else config.train.clip_norm
    _, norm = clip_by_global_norm(grads, clip)
    gradients = {"gradient norm": _np(norm), **{f"grad {name}": _np(g) for name, g in grads.items()}}
    return {"cell": cell, "model forward": {"raw outputs": _np(raw)}, "loss": {"training loss": _np(loss)},
            "gradients": gradients}


def optimizer_values(config: RunConfig, weights: Mapping[str, np.ndarray], gradients: Sequence[Mapping[str, np.ndarray]],
                     device: str) -> dict[str, np.ndarray]:
    """K updates of the one trainer from ``weights`` whose step k sees the gradient ``gradients[k]`` (by name).

    The trainer's own step (``trainer.make_train_on_batches``) with its loss-and-gradient replaced by the
    injected gradient: clipping, the schedule lr_k = schedule(k) and Adam (or SGD) are the trainer's.
    Returns ``learning_rate`` and ``grad_norm`` ``[K]`` and, by canonical name, ``param``, ``exp_avg``,
    ``exp_avg_sq`` after the K updates.
    """
    config = _on(config, device)
    objective = backend.MetaLearnerObjective(config)
    model = _model(config, weights)
    state = init_adam(model.named_parameters())
    zero = torch.zeros((), dtype=objective.dtype, device=objective.device)

    def injected(batch, step, member):
        return zero, {}, batch

    run = make_train_on_batches(objective, model, injected)
    batches = [{name: _tensor(g[name], config) for name in g} for g in gradients]
    outputs = run(state, batches, 0, objective.member(config.train.seed))
    values = {"learning_rate": np.asarray(outputs.learning_rate), "grad_norm": np.asarray(outputs.grad_norm)}
    values.update({f"param {name}": value for name, value in model_to_canonical(model).items()})
    for key in ("exp_avg", "exp_avg_sq"):
        values.update({f"{key} {name}": _np(value) for name, value in getattr(state, key).items()})
    return values


def train_trajectory(config: RunConfig, weights: Mapping[str, np.ndarray], batches: Sequence[np.ndarray],
                     device: str) -> dict[str, object]:
    """The one trainer (``backend.make_tutorial_trainer``) from ``weights``, one ``run_on`` per batch.

    Returns ``loss``, ``grad_norm``, ``learning_rate`` (``[N]`` float64) and ``params``: the canonical
    weights after each step (N dicts). A non-finite step ends the trajectory early (the trainer stops there).
    """
    config = _on(config, device)
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    trainer = backend.make_tutorial_trainer(config, Checkpoint(0, dict(weights), zeros, dict(zeros), "verify"))
    losses, norms, rates, params = [], [], [], []
    for observations in batches:
        metrics = trainer.run_on([_tensor(observations, config)])
        losses += list(np.asarray(metrics.loss, np.float64))
        norms += list(np.asarray(metrics.grad_norm, np.float64))
        rates += list(np.asarray(metrics.learning_rate, np.float64))
        params.append(trainer.weights())
        if not (np.all(np.isfinite(metrics.loss)) and np.all(np.isfinite(metrics.grad_norm))):
            break
    return {"loss": np.asarray(losses), "grad_norm": np.asarray(norms), "learning_rate": np.asarray(rates),
            "params": params}


def predictive(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
               device: str) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``."""
    config = _on(config, device)
    model = _model(config, weights)
    with torch.no_grad():
        raw = model(model_inputs(_tensor(observations, config))).cpu()
    return predictive_params(config.task.family, raw)


def _on(config: RunConfig, device: str) -> RunConfig:
    """``config`` with torch on ``device`` ("cpu" or "gpu": cuda), eager (no CUDA graph), threads set."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device kind {device!r}; choose cpu or gpu")
    configure(config.torch.threads)
    options = dataclasses.replace(config.torch, device="cuda" if device == "gpu" else "cpu", cuda_graphs=False)
    return dataclasses.replace(config, torch=options)


def _model(config: RunConfig, weights: Mapping[str, np.ndarray]):
    model = backend.build_model(config)
    load_canonical(model, weights)
    return model.to(torch.device(config.torch.device))


def _tensor(value: np.ndarray, config: RunConfig) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value), dtype=resolve_dtype(config.train.dtype))
    return tensor.to(torch.device(config.torch.device))


def _np(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy().copy()


__all__ = ["FRAMEWORK", "check_supported", "device_kinds", "device_name", "ladder_values", "library_versions",
           "optimizer_values", "predictive", "train_trajectory"]
