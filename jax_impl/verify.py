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

The same functions check the other families (``cogmeta.verify_families``), dispatched on the config: the
bounded GRU (``bounded_gru.BoundedObjective``; batches carry injected weight noise) and the amortized
posterior (``amortized.AmortizedObjective``; one query per step). Their rungs:

    bounded GRU  cell: the sparse-variational layers (weights sampled with the injected eps, log alpha);
                 model forward: mean, scale, z in the modes sample / mean / pruned; loss: NLL + w_0 KL, NLL, KL
    amortized    cell: the input projection and the RBF activations; model forward: logits, log-odds;
                 loss: the mean KL(q || p) of the queries and KL per query

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
from cogmeta.tasks.bandit import BanditBatch
from jax_impl import amortized, backend, bandit, bounded_gru, recurrent, rl2, seq2seq
from jax_impl.heads import predictive_params
from jax_impl.model import MetaLearner
from jax_impl.numerics import resolve_dtype
from jax_impl.optim import clip_by_global_norm, init_adam
from jax_impl.paired_comparison_samplers import model_inputs as comparison_inputs
from jax_impl.samplers import model_inputs
from jax_impl.trainer import Trainer, make_train_on_batches, stack_on_host
from jax_impl.weights import abstract_split, canonical_to_state, state_to_canonical

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
    if not isinstance(config, RunConfig):
        return  # the bounded GRU and the amortized posterior exist in both frameworks
    if config.model.cell not in recurrent.CORES:
        raise ValueError(f"model.cell {config.model.cell!r}: the jax backend has no such cell (it has "
                         f"{', '.join(sorted(recurrent.CORES))}); verify needs the model in both frameworks")


def ladder_values(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray,
                  device: str) -> dict[str, dict[str, np.ndarray]]:
    """The rungs below training for the model with ``weights`` on ``observations`` ``[T, B, 1]``.

    Returns ``{rung: {quantity: {tensor: numpy array}}}`` for the rungs "cell" (core outputs, core final
    state), "model forward" (raw outputs), "loss" (training loss) and "gradients" (gradient tensors by
    canonical name, gradient norm). A family config: its own quantities (module doc) on its batch.
    """
    if not isinstance(config, RunConfig):
        with _on(config, device):
            return _FAMILIES[config.family].ladder_values(config, weights, observations)
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
        final_state = ({"core h_n": np.array(final[0]), "core c_n": np.array(final[1])} if isinstance(final, tuple)
                       else {"core h_n": np.array(final)})
        return {"cell": {"core outputs": {"core outputs": np.array(hidden)}, "core final state": final_state},
                "model forward": {"raw outputs": {"raw outputs": np.array(raw)}},
                "loss": {"training loss": {"training loss": np.array(loss)}}, "gradients": _gradients(grads, norm)}


def optimizer_values(config: RunConfig, weights: Mapping[str, np.ndarray], gradients: Sequence[Mapping[str, np.ndarray]],
                     device: str) -> dict[str, np.ndarray]:
    """K updates of the one trainer from ``weights`` whose step k sees the gradient ``gradients[k]`` (by name).

    The trainer's own step (``trainer.make_train_on_batches``) with its loss-and-gradient replaced by the
    injected gradient: clipping, the schedule lr_k = schedule(k) and Adam (or SGD) are the trainer's.
    Returns ``learning_rate`` and ``grad_norm`` ``[K]`` and, by canonical name, ``param``, ``exp_avg``,
    ``exp_avg_sq`` after the K updates.
    """
    with _on(config, device):
        if isinstance(config, RunConfig):
            objective = backend.MetaLearnerObjective(config)
            _, params = nnx.split(_model(config, weights))
        else:
            objective, params = _FAMILIES[config.family].objective_and_params(config, weights, len(gradients))
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

    Returns ``loss``, ``grad_norm``, ``learning_rate`` (``[N]`` float64), ``params``: the canonical
    weights after each step (N dicts) and ``aux``: the objective's extra metrics ``[N]`` by name (bounded GRU:
    nll, kl). A non-finite step ends the trajectory early (the trainer stops there). The amortized posterior
    trains with ``Trainer.run(1)`` per step on its own query stream (the N queries of ``batches``).
    """
    with _on(config, device):
        if not isinstance(config, RunConfig):
            trainer, step = _FAMILIES[config.family].trainer(config, weights, batches)
        else:
            trainer = backend.make_tutorial_trainer(config, _starting_at(weights))
            step = lambda observations: trainer.run_on(_array(np.asarray(observations)[None], config))  # noqa: E731
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
        with _on(config, device):
            return _FAMILIES[config.family].predictive(config, weights, observations)
    with _on(config, device):
        graphdef, params = nnx.split(_model(config, weights))
        forward = jax.jit(lambda params, inputs: nnx.merge(graphdef, params)(inputs))
        return predictive_params(config.task.family, forward(params, model_inputs(_array(observations, config))))


def _gradients(grads, norm) -> dict[str, dict[str, np.ndarray]]:
    """The "gradients" rung: tensors by canonical name and the global norm."""
    return {"gradient tensors": state_to_canonical(grads), "gradient norm": {"gradient norm": np.array(norm)}}


def _norm(grads, clip):
    return optax.tree.norm(grads) if clip is None else clip_by_global_norm(grads, clip)[1]


# ------------------------------------------------------------------------------------------ the bounded GRU
class _Bounded:
    """The bounded GRU of the heuristics study (``bounded_gru.BoundedObjective``)."""

    @staticmethod
    def objective(config) -> bounded_gru.BoundedObjective:
        return bounded_gru.BoundedObjective(config.task, config.hidden_size, config.train, config.beta, config.warmup)

    @classmethod
    def objective_and_params(cls, config, weights, steps: int):
        objective = cls.objective(config)
        return objective, canonical_to_state(objective.init(0), weights)

    @staticmethod
    def batch(batch: Mapping, config, leading: bool = False) -> bounded_gru.BoundedBatch:
        cast = (lambda v: _array(np.asarray(v)[None], config)) if leading else (lambda v: _array(v, config))  # noqa: E731
        return bounded_gru.BoundedBatch(cast(batch["cues"]), cast(batch["targets"]),
                                        {layer: cast(eps) for layer, eps in batch["noise"].items()})

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, params = cls.objective_and_params(config, weights, 1)
        member = objective.member(config.train.seed)
        clip = config.train.clip_norm

        @jax.jit
        def probe(params, data):
            model = nnx.merge(objective.graphdef, params)
            layers = model.layers()
            inputs = comparison_inputs(data.cues, data.targets)
            cell = {"sampled weights": {name: layer.effective_weight("sample", data.noise[name])
                                        for name, layer in layers.items()},
                    "log alpha": {name: layer.log_alpha() for name, layer in layers.items()}}
            forward = {}
            for mode in ("sample", "mean", "pruned"):
                out = model(inputs, data.cues, mode, data.noise if mode == "sample" else None)
                forward[f"{mode}-mode outputs"] = {f"{mode} {k}": getattr(out, k) for k in ("mean", "scale", "z")}
            (loss, aux), grads = jax.value_and_grad(objective.loss, has_aux=True)(params, data, 0, member)
            return cell, forward, loss, aux, grads, _norm(grads, clip)

        cell, forward, loss, aux, grads, norm = probe(params, cls.batch(batch, config))
        return {"cell": jax.tree.map(np.asarray, cell), "model forward": jax.tree.map(np.asarray, forward),
                "loss": {"training loss": {"loss": np.asarray(loss)}, "NLL and KL": {k: np.asarray(v) for k, v in aux.items()}},
                "gradients": _gradients(grads, norm)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(cls.objective(config), _starting_at(weights))
        return trainer, lambda batch: trainer.run_on(cls.batch(batch, config, leading=True))

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        objective, params = cls.objective_and_params(config, weights, 1)

        @jax.jit
        def forward(params, cues, targets):
            model = nnx.merge(objective.graphdef, params)
            outputs = {}
            for mode in ("mean", "pruned"):
                out = model(comparison_inputs(cues, targets), cues, mode)
                outputs.update({f"{mode} {k}": getattr(out, k) for k in ("mean", "scale", "z")})
            return outputs

        outputs = forward(params, _array(heldout["cues"], config), _array(heldout["targets"], config))
        return {name: np.asarray(value, np.float64) for name, value in outputs.items()}


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
    def objective_and_params(cls, config, weights, steps: int):
        dtype = config.train.dtype
        objective = cls.objective(config, weights, np.zeros((steps, 6), dtype), np.zeros(steps, dtype))
        return objective, objective.init(config.train.seed)

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective = cls.objective(config, weights, batch["inputs"], batch["log_odds"])
        params = objective.init(config.train.seed)
        member = objective.member(config.train.seed)

        @jax.jit
        def probe(params, x, target):
            model = nnx.merge(objective.graphdef, params)
            projected = model.input(x)
            logits = model(x)
            (loss, _), grads = jax.value_and_grad(objective.loss, has_aux=True)(params, (x, target), 0, member)
            return (projected, model.rbf(projected), logits, amortized.model_log_odds(logits),
                    amortized.kl_divergence(logits, target), loss, grads, _norm(grads, None))

        projected, phi, logits, log_odds, per_query, loss, grads, norm = probe(
            params, _array(batch["inputs"], config), _array(batch["log_odds"], config))
        return {"cell": {"input projection": {"input(x)": np.asarray(projected)}, "RBF activations": {"rbf": np.asarray(phi)}},
                "model forward": {"logits and log-odds": {"logits": np.asarray(logits), "log-odds": np.asarray(log_odds)}},
                "loss": {"KL per query, mean": {"KL(q || p), then the loss": np.append(np.asarray(per_query),
                                                                                      np.asarray(loss))}},
                "gradients": _gradients(grads, norm)}

    @classmethod
    def trainer(cls, config, weights, batches):
        inputs = np.concatenate([batch["inputs"] for batch in batches])
        log_odds = np.concatenate([batch["log_odds"] for batch in batches])
        trainer = Trainer(cls.objective(config, weights, inputs, log_odds), seed=config.train.seed, steps_per_call=1)
        return trainer, lambda batch: trainer.run(1)

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        objective, params = cls.objective_and_params(config, weights, 1)
        logits = jax.jit(lambda params, x: nnx.merge(objective.graphdef, params)(x))(
            params, _array(heldout["inputs"], config))
        return {"logits": np.asarray(logits, np.float64),
                "log-odds": np.asarray(amortized.model_log_odds(logits), np.float64)}


# ------------------------------------------------------------------------------------------ the RL² agent
class _RL2:
    """The RL² agent (``rl2.RL2Objective``: A2C on the batch's bandit episodes, actions drawn with its uniforms)."""

    @classmethod
    def objective_and_params(cls, config, weights, steps: int):
        run = config.run
        template = abstract_split(lambda: rl2.RL2Agent(run, resolve_dtype(run.train.dtype), rngs=nnx.Rngs(0)))[1]
        return rl2.RL2Objective(run), canonical_to_state(template, weights)

    @staticmethod
    def batch(batch: Mapping, config, leading: bool = False) -> BanditBatch:
        cast = (lambda v: _array(np.asarray(v)[None], config)) if leading else (lambda v: _array(v, config))  # noqa: E731
        return BanditBatch(*(cast(batch[name]) for name in BanditBatch._fields))

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, params = cls.objective_and_params(config, weights, 1)
        member = objective.member(config.train.seed)
        clip, discount = config.train.clip_norm, config.run.rl.discount

        @jax.jit
        def probe(params, data):
            model = nnx.merge(objective.graphdef, params)
            horizon, size, arms = data.reward_uniform.shape
            dtype = data.reward_uniform.dtype
            first = jnp.arange(size) % arms  # a fixed first pull: every arm, no draw involved
            logits_0, values_0, state = model(jnp.zeros((size, arms + 2), dtype), model.initial_state(size, dtype))
            time = jnp.broadcast_to(rl2.trial_times(max(horizon, 2), dtype)[1], (size, 1))
            onehot = (first[:, None] == jnp.arange(arms)).astype(dtype)
            inputs = jnp.concatenate([onehot, bandit.step(data, 0, first, validate=False)[:, None], time], axis=-1)
            logits_1, values_1, state = model(inputs, state)
            played = rl2.rollout(model, data)
            (loss, aux), grads = jax.value_and_grad(objective.loss, has_aux=True)(params, data, 0, member)
            cell = {"two trials (pull 1 fixed)": {"logits t=0": logits_0, "values t=0": values_0,
                                                     "logits t=1": logits_1, "values t=1": values_1},
                    "core state after trial 2": {f"state {i}": value for i, value in enumerate(
                        state if isinstance(state, tuple) else (state,))}}
            forward = {"rollout": {"actions": played.actions, "rewards": played.rewards, "logits": played.logits,
                                   "values": played.values}}
            losses = {"A2C loss": {"loss": loss}, "loss terms": aux,
                      "discounted returns": {"returns": rl2.discounted_returns(played.rewards, discount)}}
            return cell, forward, losses, grads, _norm(grads, clip)

        cell, forward, losses, grads, norm = probe(params, cls.batch(batch, config))
        forward = jax.tree.map(np.asarray, forward)
        forward["rollout"]["actions"] = forward["rollout"]["actions"].astype(np.float64)
        return {"cell": jax.tree.map(np.asarray, cell), "model forward": forward,
                "loss": jax.tree.map(np.asarray, losses), "gradients": _gradients(grads, norm)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(rl2.RL2Objective(config.run), _starting_at(weights))
        return trainer, lambda batch: trainer.run_on(cls.batch(batch, config, leading=True))

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        """The agent playing the held-out bandits with their action uniforms: actions, rewards, pi_t, V_t."""
        objective, params = cls.objective_and_params(config, weights, 1)

        @jax.jit
        def play(params, data):
            played = rl2.rollout(nnx.merge(objective.graphdef, params), data)
            return {"actions": played.actions, "rewards": played.rewards,
                    "probabilities": jax.nn.softmax(played.logits, axis=-1), "values": played.values}

        return {name: np.asarray(value, np.float64) for name, value in play(params, cls.batch(heldout, config)).items()}


# ------------------------------------------------------------------------------------------ meta seq2seq
class _Seq2Seq:
    """The meta seq2seq learner (``seq2seq.Seq2SeqObjective``: one episode per step, the batch's dropout masks)."""

    @classmethod
    def objective_and_params(cls, config, weights, steps: int):
        objective = seq2seq.Seq2SeqObjective(config.run)
        template = abstract_split(lambda: seq2seq.build_model(config.run, dtype=objective.dtype), nnx.Param)[1]
        return objective, canonical_to_state(template, weights)

    @staticmethod
    def batch(batch: Mapping, config, leading: bool = False) -> dict:
        """numpy episode (ids and lengths int32, flags as they are) -> arrays, with ``"masks"`` in the check's dtype."""
        add = (lambda v: np.asarray(v)[None]) if leading else np.asarray  # noqa: E731
        arrays = seq2seq.to_arrays({name: add(value) for name, value in batch.items() if name != "masks"})
        return {**arrays, "masks": {name: _array(add(mask), config) for name, mask in batch["masks"].items()}}

    @classmethod
    def ladder_values(cls, config, weights, batch) -> dict:
        objective, params = cls.objective_and_params(config, weights, 1)
        member = objective.member(config.train.seed)
        clip = config.train.clip_norm

        @jax.jit
        def probe(params, data):
            model = nnx.merge(objective.graphdef, params)
            encoded = model.encode_episode(data, data["masks"])
            out = model(data, data["masks"])
            (loss, _), grads = jax.value_and_grad(objective.loss, has_aux=True)(params, data, 0, member)
            return encoded, out, loss, grads, _norm(grads, clip)

        encoded, out, loss, grads, norm = probe(params, cls.batch(batch, config))
        return {"cell": {"episode encoding": {k: np.asarray(v) for k, v in encoded.items() if v is not None}},
                "model forward": {"teacher-forced outputs": {k: np.asarray(v) for k, v in out.items() if v is not None}},
                "loss": {"training loss": {"loss": np.asarray(loss)}}, "gradients": _gradients(grads, norm)}

    @classmethod
    def trainer(cls, config, weights, batches):
        trainer = Trainer(seq2seq.Seq2SeqObjective(config.run), _starting_at(weights))
        return trainer, lambda batch: trainer.run_on(cls.batch(batch, config, leading=True))

    @classmethod
    def predictive(cls, config, weights, heldout) -> dict[str, np.ndarray]:
        """Eval-mode teacher-forced logits and attention maps of the E stacked held-out episodes: ``[E, ...]``."""
        objective, params = cls.objective_and_params(config, weights, 1)
        forward = jax.jit(lambda params, batch: nnx.merge(objective.graphdef, params)(batch))  # no masks: eval mode
        outputs: dict[str, list] = {}
        for episode in range(heldout["query_in"].shape[0]):
            out = forward(params, seq2seq.to_arrays({name: value[episode] for name, value in heldout.items()}))
            for name, value in out.items():
                if value is not None:
                    outputs.setdefault(name, []).append(np.asarray(value, np.float64))
        return {name: np.stack(values) for name, values in outputs.items()}


_FAMILIES = {"bounded-gru": _Bounded, "amortized": _Amortized, "rl2": _RL2, "seq2seq": _Seq2Seq}


def _starting_at(weights: Mapping[str, np.ndarray]) -> Checkpoint:
    """A checkpoint at step 0 holding ``weights`` and zero Adam moments: where every trainer of a check starts."""
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    return Checkpoint(0, dict(weights), zeros, dict(zeros), "verify")


@contextlib.contextmanager
def _on(config, device: str) -> Iterator[None]:
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
    """The model holding ``weights``, built abstractly (no random init to compile), then filled."""
    dtype = resolve_dtype(config.train.dtype)
    graphdef, template = abstract_split(lambda: MetaLearner(config, dtype, rngs=nnx.Rngs(0)))
    return nnx.merge(graphdef, canonical_to_state(template, weights))



def _array(value: np.ndarray, config) -> jax.Array:
    return jnp.asarray(np.asarray(value), dtype=resolve_dtype(config.train.dtype))


__all__ = ["FRAMEWORK", "check_supported", "device_kinds", "device_name", "ladder_values", "library_versions",
           "optimizer_values", "predictive", "train_trajectory"]
