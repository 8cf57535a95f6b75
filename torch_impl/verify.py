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

The same functions check the other families (``cogmeta.verify_families``), dispatched on the config: the
bounded GRU (``bounded_gru.BoundedObjective``; batches carry injected weight noise) and the amortized
posterior (``amortized.AmortizedObjective``; one query per step). Their rungs:

    bounded GRU  cell: the sparse-variational layers (weights sampled with the injected eps, log alpha);
                 model forward: mean, scale, z in the modes sample / mean / pruned; loss: NLL + w_0 KL, NLL, KL
    amortized    cell: the input projection and the RBF activations; model forward: logits, log-odds;
                 loss: the mean KL(q || p) of the queries and KL per query

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
from cogmeta.tasks.bandit import BanditBatch
from torch_impl import amortized, backend, bandit, bounded_gru, recurrent, rl2, seq2seq
from torch_impl.heads import predictive_params
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.optim import clip_by_global_norm, init_adam
from torch_impl.paired_comparison_samplers import model_inputs as comparison_inputs
from torch_impl.samplers import model_inputs
from torch_impl.trainer import Trainer, make_train_on_batches
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
    if not isinstance(config, RunConfig):
        return  # the bounded GRU and the amortized posterior exist in both frameworks
    if config.model.cell not in recurrent.CORES:
        raise ValueError(f"model.cell {config.model.cell!r}: the torch backend has no such cell (it has "
                         f"{', '.join(sorted(recurrent.CORES))}); verify needs the model in both frameworks")


def ladder_values(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
                  device: str) -> dict[str, dict[str, np.ndarray]]:
    """The rungs below training for the model with ``weights`` on ``observations`` ``[T, B, 1]``.

    Returns ``{rung: {quantity: {tensor: numpy array}}}`` for the rungs "cell" (core outputs, core final
    state), "model forward" (raw outputs), "loss" (training loss) and "gradients" (gradient tensors by
    canonical name, gradient norm). A family config: its own quantities (module doc) on its batch.
    """
    if not isinstance(config, RunConfig):
        return _FAMILIES[config.family].ladder_values(_on(config, device), weights, observations)
    config = _on(config, device)
    objective = backend.MetaLearnerObjective(config)
    model = _model(config, weights)
    observations_t = _tensor(observations, config)
    inputs = model_inputs(observations_t)
    with torch.no_grad():
        hidden, final = model.core(inputs)
        raw = model(inputs)
    final_state = {"core h_n": _np(final[0]), "core c_n": _np(final[1])} if isinstance(final, tuple) else {
        "core h_n": _np(final)}
    loss, _ = objective.loss(model, observations_t, 0, objective.member(config.train.seed))
    return {"cell": {"core outputs": {"core outputs": _np(hidden)}, "core final state": final_state},
            "model forward": {"raw outputs": {"raw outputs": _np(raw)}}, "loss": {"training loss": {"training loss": _np(loss)}},
            "gradients": _gradients(config, model, loss)}


def optimizer_values(config: RunConfig, weights: Mapping[str, np.ndarray], gradients: Sequence[Mapping[str, np.ndarray]],
                     device: str) -> dict[str, np.ndarray]:
    """K updates of the one trainer from ``weights`` whose step k sees the gradient ``gradients[k]`` (by name).

    The trainer's own step (``trainer.make_train_on_batches``) with its loss-and-gradient replaced by the
    injected gradient: clipping, the schedule lr_k = schedule(k) and Adam (or SGD) are the trainer's.
    Returns ``learning_rate`` and ``grad_norm`` ``[K]`` and, by canonical name, ``param``, ``exp_avg``,
    ``exp_avg_sq`` after the K updates.
    """
    config = _on(config, device)
    objective, model = (backend.MetaLearnerObjective(config), _model(config, weights)) if isinstance(
        config, RunConfig) else _FAMILIES[config.family].objective_and_model(config, weights, len(gradients))
    state = init_adam(model.named_parameters())
    zero = torch.zeros((), dtype=resolve_dtype(config.train.dtype), device=_device(config))

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

    Returns ``loss``, ``grad_norm``, ``learning_rate`` (``[N]`` float64), ``params``: the canonical
    weights after each step (N dicts) and ``aux``: the objective's extra metrics ``[N]`` by name (bounded GRU:
    nll, kl). A non-finite step ends the trajectory early (the trainer stops there). The amortized posterior
    trains with ``Trainer.run(1)`` per step on its own query stream (the N queries of ``batches``).
    """
    config = _on(config, device)
    if not isinstance(config, RunConfig):
        trainer, step = _FAMILIES[config.family].trainer(config, weights, batches)
    else:
        trainer = backend.make_tutorial_trainer(config, _starting_at(weights))
        step = lambda observations: trainer.run_on([_tensor(observations, config)])  # noqa: E731
    losses, norms, rates, params, aux = [], [], [], [], {}
    for batch in batches:
        metrics = step(batch)
        losses += list(np.asarray(metrics.loss, np.float64))
        norms += list(np.asarray(metrics.grad_norm, np.float64))
        rates += list(np.asarray(metrics.learning_rate, np.float64))
        for name, values in (metrics.aux or {}).items():
            aux.setdefault(name, []).extend(np.asarray(values, np.float64))
        params.append(trainer.weights())
        if not (np.all(np.isfinite(metrics.loss)) and np.all(np.isfinite(metrics.grad_norm))):
            break
    return {"loss": np.asarray(losses), "grad_norm": np.asarray(norms), "learning_rate": np.asarray(rates),
            "params": params, "aux": {name: np.asarray(values) for name, values in aux.items()}}


def predictive(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
               device: str) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``
    (a family config: its held-out outputs by name, module doc)."""
    if not isinstance(config, RunConfig):
        return _FAMILIES[config.family].predictive(_on(config, device), weights, observations)
    config = _on(config, device)
    model = _model(config, weights)
    with torch.no_grad():
        raw = model(model_inputs(_tensor(observations, config))).cpu()
    return predictive_params(config.task.family, raw)


def _gradients(config, model, loss: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """The "gradients" rung: ``loss.backward()`` into ``model``; tensors by canonical name and the global norm."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    # a parameter outside the graph (seq2seq without memory: the support encoders) keeps grad None; JAX gives 0
    grads = {name: torch.zeros_like(param) if param.grad is None else param.grad
             for name, param in model.named_parameters()}
    clip = math.inf if config.train.clip_norm is None else config.train.clip_norm
    _, norm = clip_by_global_norm(grads, clip)
    return {"gradient tensors": {name: _np(g) for name, g in grads.items()}, "gradient norm": {"gradient norm": _np(norm)}}


# ------------------------------------------------------------------------------------------ the bounded GRU
class _Bounded:
    """The bounded GRU of the heuristics study (``bounded_gru.BoundedObjective``)."""

    @staticmethod
    def objective(config) -> bounded_gru.BoundedObjective:
        return bounded_gru.BoundedObjective(config.task, config.hidden_size, config.train, config.beta, config.warmup)

    @classmethod
    def objective_and_model(cls, config, weights, steps: int):
        objective = cls.objective(config)
        model = objective.init(0)
        load_canonical(model, weights)
        return objective, model.to(_device(config))

    @staticmethod
    def batch(batch: Mapping, config) -> bounded_gru.BoundedBatch:
        return bounded_gru.BoundedBatch(_tensor(batch["cues"], config), _tensor(batch["targets"], config),
                                        {layer: _tensor(eps, config) for layer, eps in batch["noise"].items()})

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, model = cls.objective_and_model(config, weights, 1)
        data = cls.batch(batch, config)
        inputs = comparison_inputs(data.cues, data.targets)
        with torch.no_grad():
            layers = model.layers()
            cell = {"sampled weights": {name: _np(layer.effective_weight("sample", data.noise[name]))
                                        for name, layer in layers.items()},
                    "log alpha": {name: _np(layer.log_alpha()) for name, layer in layers.items()}}
            forward = {}
            for mode in ("sample", "mean", "pruned"):
                out = model(inputs, data.cues, mode, data.noise if mode == "sample" else None)
                forward[f"{mode}-mode outputs"] = {f"{mode} {k}": _np(getattr(out, k)) for k in ("mean", "scale", "z")}
        loss, aux = objective.loss(model, data, 0, objective.member(config.train.seed))
        return {"cell": cell, "model forward": forward,
                "loss": {"training loss": {"loss": _np(loss)}, "NLL and KL": {k: _np(v) for k, v in aux.items()}},
                "gradients": _gradients(config, model, loss)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(cls.objective(config), _starting_at(weights), device=_device(config))
        return trainer, lambda batch: trainer.run_on([cls.batch(batch, config)])

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        _, model = cls.objective_and_model(config, weights, 1)
        cues, targets = _tensor(heldout["cues"], config), _tensor(heldout["targets"], config)
        outputs = {}
        with torch.no_grad():
            for mode in ("mean", "pruned"):
                out = model(comparison_inputs(cues, targets), cues, mode)
                outputs.update({f"{mode} {k}": _np(getattr(out, k)).astype(np.float64) for k in ("mean", "scale", "z")})
        return outputs


# ------------------------------------------------------------------------------------------ the amortized posterior
class _Amortized:
    """One participant of learning-to-infer (``amortized.AmortizedObjective``)."""

    @staticmethod
    def objective(config, weights, inputs: np.ndarray, log_odds: np.ndarray) -> amortized.AmortizedObjective:
        train = config.train
        return amortized.AmortizedObjective(np.asarray(inputs)[None], np.asarray(log_odds)[None], hidden=config.hidden,
                                            learning_rate=train.learning_rate, optimizer=train.optimizer,
                                            dtype=train.dtype, seeds=[train.seed],
                                            weights={name: np.asarray(w)[None] for name, w in weights.items()})

    @classmethod
    def objective_and_model(cls, config, weights, steps: int):
        dtype = config.train.dtype
        objective = cls.objective(config, weights, np.zeros((steps, 6), dtype), np.zeros(steps, dtype))
        return objective, objective.init(config.train.seed).to(_device(config))

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective = cls.objective(config, weights, batch["inputs"], batch["log_odds"])
        model = objective.init(config.train.seed).to(_device(config))
        x, target = _tensor(batch["inputs"], config), _tensor(batch["log_odds"], config)
        with torch.no_grad():
            projected = model.input(x)
            phi = model.rbf(projected)
            logits = model(x)
            per_query = amortized.kl_divergence(logits, target)
        loss, _ = objective.loss(model, (x, target), 0, objective.member(config.train.seed))
        return {"cell": {"input projection": {"input(x)": _np(projected)}, "RBF activations": {"rbf": _np(phi)}},
                "model forward": {"logits and log-odds": {"logits": _np(logits),
                                                          "log-odds": _np(amortized.model_log_odds(logits))}},
                "loss": {"KL per query, mean": {"KL(q || p), then the loss": np.append(_np(per_query), _np(loss))}},
                "gradients": _gradients(config, model, loss)}

    @classmethod
    def trainer(cls, config, weights, batches):
        inputs = np.concatenate([batch["inputs"] for batch in batches])
        log_odds = np.concatenate([batch["log_odds"] for batch in batches])
        objective = cls.objective(config, weights, inputs, log_odds)
        trainer = Trainer(objective, seed=config.train.seed, steps_per_call=1, device=_device(config))
        for name in ("inputs", "log_odds"):  # the objective keeps its queries on the host; the steps read them here
            trainer.member[name] = trainer.member[name].to(_device(config))
        return trainer, lambda batch: trainer.run(1)

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        _, model = cls.objective_and_model(config, weights, 1)
        with torch.no_grad():
            logits = model(_tensor(heldout["inputs"], config))
        return {"logits": _np(logits).astype(np.float64),
                "log-odds": _np(amortized.model_log_odds(logits)).astype(np.float64)}


# ------------------------------------------------------------------------------------------ the RL² agent
class _RL2:
    """The RL² agent (``rl2.RL2Objective``: A2C on the batch's bandit episodes, actions drawn with its uniforms)."""

    @staticmethod
    def run_config(config) -> RunConfig:
        """The wrapped run config with torch on the check's device (eager)."""
        run = config.run
        return dataclasses.replace(run, torch=dataclasses.replace(run.torch, device=config.torch_device, cuda_graphs=False))

    @classmethod
    def objective_and_model(cls, config, weights, steps: int):
        run = cls.run_config(config)
        model = rl2.build_model(run)
        load_canonical(model, weights)
        return rl2.RL2Objective(run), model.to(_device(config))

    @staticmethod
    def batch(batch: Mapping, config) -> BanditBatch:
        return BanditBatch(*(_tensor(batch[name], config) for name in BanditBatch._fields))

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, model = cls.objective_and_model(config, weights, 1)
        data = cls.batch(batch, config)
        horizon, size, arms = data.reward_uniform.shape
        dtype, device = data.reward_uniform.dtype, data.reward_uniform.device
        first = torch.arange(size, device=device) % arms  # a fixed first pull: every arm, no draw involved
        with torch.no_grad():
            logits_0, values_0, state = model(torch.zeros(size, arms + 2, dtype=dtype, device=device),
                                              model.initial_state(size, dtype, device))
            time = rl2.trial_times(max(horizon, 2), dtype)[1].to(device).expand(size, 1)
            onehot = (first[:, None] == torch.arange(arms, device=device)).to(dtype)
            inputs = torch.cat([onehot, bandit.step(data, 0, first, validate=False)[:, None], time], dim=-1)
            logits_1, values_1, state = model(inputs, state)
            played = rl2.rollout(model, data)
        states = state if isinstance(state, tuple) else (state,)
        cell = {"two trials (pull 1 fixed)": {"logits t=0": _np(logits_0), "values t=0": _np(values_0),
                                                 "logits t=1": _np(logits_1), "values t=1": _np(values_1)},
                "core state after trial 2": {f"state {i}": _np(value) for i, value in enumerate(states)}}
        forward = {"rollout": {"actions": _np(played.actions).astype(np.float64), "rewards": _np(played.rewards),
                               "logits": _np(played.logits), "values": _np(played.values)}}
        rl = config.run.rl
        loss, aux = objective.loss(model, data, 0, objective.member(config.train.seed))
        return {"cell": cell, "model forward": forward,
                "loss": {"A2C loss": {"loss": _np(loss)}, "loss terms": {k: _np(v) for k, v in aux.items()},
                         "discounted returns": {"returns": _np(rl2.discounted_returns(played.rewards, rl.discount))}},
                "gradients": _gradients(config, model, loss)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(rl2.RL2Objective(cls.run_config(config)), _starting_at(weights), device=_device(config))
        return trainer, lambda batch: trainer.run_on([cls.batch(batch, config)])

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        """The agent playing the held-out bandits with their action uniforms: actions, rewards, pi_t, V_t."""
        _, model = cls.objective_and_model(config, weights, 1)
        with torch.no_grad():
            played = rl2.rollout(model, cls.batch(heldout, config))
        return {"actions": _np(played.actions).astype(np.float64), "rewards": _np(played.rewards).astype(np.float64),
                "probabilities": _np(torch.softmax(played.logits, dim=-1)).astype(np.float64),
                "values": _np(played.values).astype(np.float64)}


# ------------------------------------------------------------------------------------------ meta seq2seq
class _Seq2Seq:
    """The meta seq2seq learner (``seq2seq.Seq2SeqObjective``: one episode per step, the batch's dropout masks)."""

    @classmethod
    def objective_and_model(cls, config, weights, steps: int):
        run = config.run
        model = seq2seq.load_model(run, weights).to(_device(config))
        return seq2seq.Seq2SeqObjective(run), model

    @staticmethod
    def batch(batch: Mapping, config) -> dict:
        """numpy episode (ids, lengths, flags as they are) -> tensors, with ``"masks"`` in the check's dtype."""
        tensors = seq2seq.to_tensors({name: value for name, value in batch.items() if name != "masks"},
                                     _device(config))
        return {**tensors, "masks": {name: _tensor(mask, config) for name, mask in batch["masks"].items()}}

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, model = cls.objective_and_model(config, weights, 1)
        data = cls.batch(batch, config)
        model.train()  # dropout on, with the injected masks
        with torch.no_grad():
            encoded = model.encode_episode(data, data["masks"])
            out = model(data, data["masks"])
        loss, _ = objective.loss(model, data, 0, objective.member(config.train.seed))
        return {"cell": {"episode encoding": {k: _np(v) for k, v in encoded.items() if v is not None}},
                "model forward": {"teacher-forced outputs": {k: _np(v) for k, v in out.items() if v is not None}},
                "loss": {"training loss": {"loss": _np(loss)}}, "gradients": _gradients(config, model, loss)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(seq2seq.Seq2SeqObjective(config.run), _starting_at(weights), device=_device(config))
        return trainer, lambda batch: trainer.run_on([cls.batch(batch, config)])

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        """Eval-mode teacher-forced logits and attention maps of the E stacked held-out episodes: ``[E, ...]``."""
        _, model = cls.objective_and_model(config, weights, 1)
        model.eval()
        outputs: dict[str, list] = {}
        with torch.no_grad():
            for episode in range(heldout["query_in"].shape[0]):
                arrays = {name: value[episode] for name, value in heldout.items()}
                out = model(seq2seq.to_tensors(arrays, _device(config)))
                for name, value in out.items():
                    if value is not None:
                        outputs.setdefault(name, []).append(_np(value).astype(np.float64))
        return {name: np.stack(values) for name, values in outputs.items()}


_FAMILIES = {"bounded-gru": _Bounded, "amortized": _Amortized, "rl2": _RL2, "seq2seq": _Seq2Seq}


def _starting_at(weights: Mapping[str, np.ndarray]) -> Checkpoint:
    """A checkpoint at step 0 holding ``weights`` and zero Adam moments: where every trainer of a check starts."""
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    return Checkpoint(0, dict(weights), zeros, dict(zeros), "verify")


def _device(config) -> torch.device:
    return torch.device(config.torch_device if not isinstance(config, RunConfig) else config.torch.device)


def _on(config, device: str):
    """``config`` with torch on ``device`` ("cpu" or "gpu": cuda), eager (no CUDA graph), threads set; a family
    config gets the device as ``torch_device``."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device kind {device!r}; choose cpu or gpu")
    if not isinstance(config, RunConfig):
        configure(0)
        return _Placed(config, "cuda" if device == "gpu" else "cpu")
    configure(config.torch.threads)
    options = dataclasses.replace(config.torch, device="cuda" if device == "gpu" else "cpu", cuda_graphs=False)
    return dataclasses.replace(config, torch=options)


def _model(config: RunConfig, weights: Mapping[str, np.ndarray]):
    model = backend.build_model(config)
    load_canonical(model, weights)
    return model.to(torch.device(config.torch.device))


class _Placed:
    """A family config and the torch device its tensors go to (attributes read through)."""

    def __init__(self, config, torch_device: str):
        self._config, self.torch_device = config, torch_device

    def __getattr__(self, name):
        return getattr(self._config, name)


def _tensor(value: np.ndarray, config) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value), dtype=resolve_dtype(config.train.dtype))
    return tensor.to(_device(config))


def _np(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy().copy()


__all__ = ["FRAMEWORK", "check_supported", "device_kinds", "device_name", "ladder_values", "library_versions",
           "optimizer_values", "predictive", "train_trajectory"]
