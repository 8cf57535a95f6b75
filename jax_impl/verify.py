"""What ``cogmeta verify`` measures in JAX: every rung of the parity ladder of one run config, on numpy in, numpy out.

``cogmeta.verify`` (framework-free) gives both twins (this module and ``torch_impl.verify``, same names and
parameters) the same canonical weights, the same numpy batches and the same numpy gradients, and compares
what they return under the parity suite's tolerances (``cogmeta.tolerances``). Everything here runs the
library's own code paths (the tutorial objective ``backend.MetaLearnerObjective`` and the one trainer
``trainer``), so a bug in them shows up here:

    cell             core(inputs) -> outputs [T, B, H], final state [L, B, H] (LSTM: h and c)
    model forward    model(inputs) -> raw outputs [T, B, O]
    loss             objective.loss(params, observations) -> scalar mean NLL
    gradients        d loss / d theta by canonical name, and ||g||_2
    optimizer        K trainer updates (clip, schedule, Adam/SGD) on injected gradients g_1..g_K
    training         the Trainer from the given weights, one ``run_on`` per batch: loss_k, ||g_k||, lr_k, theta_k

``device`` is "cpu" or "gpu"; every call runs under ``jax.default_device`` of that kind and
``jax.enable_x64(config.train.dtype == "float64")`` (float32 stays 32-bit whatever the global flag says).
Programs are jitted per call (never cached across calls), so what runs is the code as it is now.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from jax_impl import backend, recurrent
from jax_impl.heads import predictive_params
from jax_impl.model import MetaLearner
from jax_impl.numerics import resolve_dtype
from jax_impl.optim import clip_by_global_norm, init_adam
from jax_impl.samplers import model_inputs
from jax_impl.trainer import make_train_on_batches, stack_on_host
from jax_impl.weights import canonical_to_state, load_canonical, state_to_canonical

FRAMEWORK = "jax"


def library_versions() -> dict[str, str]:
    """The framework's library versions by package name."""
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__}


def device_kinds() -> list[str]:
    """The device kinds this framework can run on here: "cpu", and "gpu" when a GPU backend has devices."""
    return ["cpu", "gpu"] if _devices("gpu") else ["cpu"]


def device_name(device: str) -> str:
    """A description of the device of kind ``device`` ("cpu" or "gpu") that this framework uses."""
    devices = _devices(device)
    if not devices:
        return f"{device} (not available)"
    return f"{devices[0].platform}:{devices[0].id} ({devices[0].device_kind})"


def check_supported(config: RunConfig) -> None:
    """Raise ValueError if this framework lacks a part of ``config``'s model (its recurrent cell)."""
    if config.model.cell not in recurrent.CORES:
        raise ValueError(f"model.cell {config.model.cell!r}: the jax backend has no such cell (it has "
                         f"{', '.join(sorted(recurrent.CORES))}); verify needs the model in both frameworks")


def ladder_values(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
                  device: str) -> dict[str, dict[str, np.ndarray]]:
    """The rungs below training for the model with ``weights`` on ``observations`` ``[T, B, 1]``.

    Returns ``{"cell": {"core outputs", "core h_n"[, "core c_n"]}, "model forward": {"raw outputs"},
    "loss": {"training loss"}, "gradients": {"gradient norm", "grad <name>" ...}}`` as numpy arrays.
    """
    with _on(config, device):
        objective = backend.MetaLearnerObjective(config)
        member = objective.member(config.train.seed)
        graphdef, params = nnx.split(_model(config, weights))
        clip = config.train.clip_norm

        @jax.jit
        def probe(params, observations):
            model = nnx.merge(graphdef, params)
            inputs = model_inputs(observations)
            hidden, final = model.core(inputs)
            raw = model(inputs)
            (loss, _), grads = jax.value_and_grad(objective.loss, has_aux=True)(params, observations, 0, member)
            norm = optax.tree.norm(grads) if clip is None else clip_by_global_norm(grads, clip)[1]
            return hidden, final, raw, loss, grads, norm

        hidden, final, raw, loss, grads, norm = probe(params, _array(observations, config))
        cell = {"core outputs": np.array(hidden)}
        if isinstance(final, tuple):
            cell.update({"core h_n": np.array(final[0]), "core c_n": np.array(final[1])})
        else:
            cell["core h_n"] = np.array(final)
        gradients = {"gradient norm": np.array(norm),
                     **{f"grad {name}": value for name, value in state_to_canonical(grads).items()}}
        return {"cell": cell, "model forward": {"raw outputs": np.array(raw)}, "loss": {"training loss": np.array(loss)},
                "gradients": gradients}


def optimizer_values(config: RunConfig, weights: Mapping[str, np.ndarray], gradients: Sequence[Mapping[str, np.ndarray]],
                     device: str) -> dict[str, np.ndarray]:
    """K updates of the one trainer from ``weights`` whose step k sees the gradient ``gradients[k]`` (by name).

    The trainer's own step (``trainer.make_train_on_batches``) with its loss-and-gradient replaced by the
    injected gradient: clipping, the schedule lr_k = schedule(k) and Adam (or SGD) are the trainer's.
    Returns ``learning_rate`` and ``grad_norm`` ``[K]`` and, by canonical name, ``param``, ``exp_avg``,
    ``exp_avg_sq`` after the K updates.
    """
    with _on(config, device):
        objective = backend.MetaLearnerObjective(config)
        _, params = nnx.split(_model(config, weights))
        state = init_adam(params)
        dtype = resolve_dtype(config.train.dtype)

        def injected(params, batch, step, member):
            return (jnp.zeros((), dtype), {}), batch

        run = make_train_on_batches(objective, injected)
        batches = stack_on_host([canonical_to_state(params, g) for g in gradients])
        params, state, outputs = run(params, state, batches, jnp.asarray(0), objective.member(config.train.seed))
        values = {"learning_rate": np.asarray(outputs.learning_rate, np.float64),
                  "grad_norm": np.asarray(outputs.grad_norm, np.float64)}
        values.update({f"param {name}": value for name, value in state_to_canonical(params).items()})
        for key in ("exp_avg", "exp_avg_sq"):
            values.update({f"{key} {name}": value for name, value in state_to_canonical(getattr(state, key)).items()})
        return values


def train_trajectory(config: RunConfig, weights: Mapping[str, np.ndarray], batches: Sequence[np.ndarray],
                     device: str) -> dict[str, object]:
    """The one trainer (``backend.make_tutorial_trainer``) from ``weights``, one ``run_on`` per batch.

    Returns ``loss``, ``grad_norm``, ``learning_rate`` (``[N]`` float64) and ``params``: the canonical
    weights after each step (N dicts). A non-finite step ends the trajectory early (the trainer stops there).
    """
    with _on(config, device):
        zeros = {name: np.zeros_like(value) for name, value in weights.items()}
        trainer = backend.make_tutorial_trainer(config, Checkpoint(0, dict(weights), zeros, dict(zeros), "verify"))
        losses, norms, rates, params = [], [], [], []
        for observations in batches:
            metrics = trainer.run_on(_array(np.asarray(observations)[None], config))
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
    with _on(config, device):
        graphdef, params = nnx.split(_model(config, weights))
        forward = jax.jit(lambda params, inputs: nnx.merge(graphdef, params)(inputs))
        return predictive_params(config.task.family, forward(params, model_inputs(_array(observations, config))))


@contextlib.contextmanager
def _on(config: RunConfig, device: str) -> Iterator[None]:
    """Run on the first device of kind ``device``, with 64-bit types iff the config is float64."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device kind {device!r}; choose cpu or gpu")
    devices = _devices(device)
    if not devices:
        raise ValueError(f"device {device!r}: JAX {jax.__version__} has no {device} device here (it sees "
                         f"{', '.join(sorted({d.platform for d in jax.devices()}))}); use --device cpu")
    with jax.enable_x64(config.train.dtype == "float64"), jax.default_device(devices[0]):
        yield


def _devices(kind: str) -> list:
    try:
        return list(jax.devices(kind))
    except RuntimeError:  # no backend of that kind
        return []


def _model(config: RunConfig, weights: Mapping[str, np.ndarray]) -> MetaLearner:
    """The model holding ``weights``: built abstractly (no random init to compile), zero-filled, then loaded."""
    dtype = resolve_dtype(config.train.dtype)
    abstract = nnx.eval_shape(lambda: MetaLearner(config, dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    model = nnx.merge(graphdef, jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), state))
    load_canonical(model, weights)
    return model


def _array(value: np.ndarray, config: RunConfig) -> jax.Array:
    return jnp.asarray(np.asarray(value), dtype=resolve_dtype(config.train.dtype))


__all__ = ["FRAMEWORK", "check_supported", "device_kinds", "device_name", "ladder_values", "library_versions",
           "optimizer_values", "predictive", "train_trajectory"]
