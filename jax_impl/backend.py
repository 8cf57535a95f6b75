"""The tutorial workload in JAX: its model, its objective for the one trainer (``jax_impl.trainer``), prediction."""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import OBSERVATION_TASK_AXIS
from cogmeta.held_out_check import HeldOutCheck
from cogmeta.weights import validate_weights
from jax_impl.executable_store import flat_lowering, store_from_environment
from jax_impl.heads import mean_kl, predictive_params
from jax_impl.host_random import initial_rngs
from jax_impl.model import MetaLearner, sequence_nll
from jax_impl.numerics import configure, resolve_dtype
from jax_impl.pieces import in_pieces
from jax_impl.program_keys import FORWARD_TASKS, auto_devices, forward_key, placement, run_placement
from jax_impl.samplers import model_inputs, sample_batch, step_key
from jax_impl.trainer import (  # noqa: F401  (FRAMEWORK: the Backend contract)
    FRAMEWORK,
    Trainer,
    compiled_init,
    default_member,
    init_runs,
)
from jax_impl.weights import abstract_split, canonical_to_state, model_to_canonical


def build_model(config: RunConfig, seed: int | None = None) -> MetaLearner:
    """A freshly initialised model (torch-matched init distributions, JAX random numbers)."""
    configure(dtype=config.train.dtype)
    rngs = initial_rngs(config.train.seed if seed is None else seed)  # drawn on the host: no program to compile
    return MetaLearner(config, resolve_dtype(config.train.dtype), rngs=rngs)


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh model."""
    return model_to_canonical(build_model(config, seed))


def native_batch(config: RunConfig, step, dtype) -> jax.Array:
    """Observations ``[T, B, 1]`` of training step ``step``, sampled with JAX's RNG (``step_key(seed, step)``; traceable)."""
    return sample_batch(config.task, step_key(config.train.seed, step), config.train.batch_size, dtype).observations


class MetaLearnerObjective:
    """The tutorial workload (``jax_impl.trainer.Objective``): the mean NLL of :class:`MetaLearner` on the task's
    batches, batch k of run ``seed`` drawn from ``step_key(seed, k)`` (traceable in both)."""

    batch_axes = OBSERVATION_TASK_AXIS  # the task axis of each batch leaf (data-parallel trainers split it)

    def __init__(self, config: RunConfig):
        self.config, self.train = config, config.train
        self.dtype = resolve_dtype(config.train.dtype)

    @functools.cached_property
    def graphdef(self):
        """The model's structure, merged with the parameters inside the traced loss. Found on first use: a run whose
        programs come from the executable store never traces the loss, and finding it (an abstract build of the
        model) was most of building the trainer of a warm run (0.04-0.07 s on the 2-core VM)."""
        return _graphdef(self.config)

    def init(self, seed: int):
        return nnx.split(build_model(self.config, seed))[1]

    def init_many(self, seeds) -> nnx.State:
        """Runs ``seeds``' initial parameters stacked ``[S, ...]``, bit for bit :meth:`init` of each (one compiled
        draw for many: ``jax_impl.trainer.init_runs``)."""
        return init_runs(seeds, self.init, lambda: compiled_init(MetaLearner, self.config, self.dtype))

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step, member) -> jax.Array:
        """Observations ``[T, B, 1]`` of training step ``step`` of ``member``."""
        return sample_batch(self.config.task, step_key(member["seed"], step), self.train.batch_size, self.dtype).observations

    def loss(self, params, observations, step, member):
        return sequence_nll(nnx.merge(self.graphdef, params), model_inputs(observations), observations), {}

    def held_out_kl(self, params, held_out: dict) -> jax.Array:
        """Mean exact KL(Bayes || model) of ``params`` on ``held_out = {"observations": [T, N, 1], "exact": {name:
        [T, N]}}`` (``jax_impl.trainer.held_out_arrays``; ``jax_impl.heads.mean_kl``), traced inside the training call
        (``jax_impl.trainer.make_checked_chunk``)."""
        raw = nnx.merge(self.graphdef, params)(model_inputs(held_out["observations"]))
        return mean_kl(self.config.task.family, raw, held_out["exact"])

    def predictive(self, params, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` of ``params`` on numpy observations ``[T, B, 1]``."""
        return predictive_params(self.config.task.family, _forward(self.config, params, observations))


def make_tutorial_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :class:`MetaLearnerObjective`, ``config.jax.steps_per_call`` steps per compiled call (with
    the held-out check of ``train.until_kl`` inside them, where one is set)."""
    return Trainer(MetaLearnerObjective(config), checkpoint, steps_per_call=config.jax.steps_per_call,
                   until=HeldOutCheck.of(config))


def predict(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``."""
    validate_weights(weights, config)
    configure(dtype=config.train.dtype)
    _, template = _abstract_split(config)
    params = _on_run_devices(config, canonical_to_state(template, weights))
    return predictive_params(config.task.family, _forward(config, params, observations))


def _on_run_devices(config: RunConfig, params):
    """``params`` replicated over the host devices that a run of ``config`` splits its batch over
    (``program_keys.auto_devices``), where those are several: the forward pass then splits its tasks over them
    (:func:`_task_split`), and it is the program that the run's held-out checks ran (the same store key), so the
    summary and the figures after a run neither compile nor load another (0.3 s of a cold run on the 2-core VM)."""
    devices = auto_devices(config) if jax.process_count() == 1 else 1
    return params if devices < 2 else jax.device_put(params, run_placement(devices))


def _abstract_split(config: RunConfig):
    """``(graphdef, abstract params)`` of the model (:func:`jax_impl.weights.abstract_split`: no weights drawn)."""
    return abstract_split(lambda: MetaLearner(config, resolve_dtype(config.train.dtype), rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=16)
def _graphdef(config: RunConfig):
    """The model's structure (:func:`_abstract_split`), merged with parameters inside compiled functions."""
    configure(dtype=config.train.dtype)
    return _abstract_split(config)[0]


def _forward(config: RunConfig, params, observations: np.ndarray) -> np.ndarray:
    """Raw model outputs ``[T, B, O]`` (numpy) of ``params`` on observations ``[T, B, 1]``,
    :data:`jax_impl.program_keys.FORWARD_TASKS` tasks per compiled call (each task's outputs depend on its own
    observations only), each call's tasks split over the devices that hold the parameters (:func:`_task_split`)."""
    observations = np.asarray(observations, dtype=np.dtype(resolve_dtype(config.train.dtype)))  # cast on the host
    if observations.ndim != 3 or observations.shape[-1] != 1:
        raise ValueError(f"observations must have shape [T, B, 1] (time-major), got {observations.shape}")
    split = _task_split(params)
    forward = (_stored_forward(config, params, observations.shape[0], observations.dtype, split)
               or _compiled_forward(config, split))
    return in_pieces(lambda piece: forward(params, piece), observations, 1, FORWARD_TASKS, name="tasks", placed=split)


def _task_split(params) -> NamedSharding | None:
    """Where the forward pass puts a piece of observations ``[T, FORWARD_TASKS, 1]``: its tasks split over the mesh
    whose every device holds a whole copy of ``params`` (a data-parallel run's), when they divide evenly; None (one
    device) otherwise. Each device then runs its share of the tasks instead of all of them (a data-parallel run
    replicates its parameters, and a program of replicated inputs computes everything on every device: the
    held-out check of 1,000 tasks took 8-25 ms on two host devices of the 2-core VM, docs/performance.md)."""
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    if not isinstance(sharding, NamedSharding) or not sharding.is_fully_replicated:
        return None
    mesh = sharding.mesh
    if mesh.size < 2 or FORWARD_TASKS % mesh.size or not all(d.process_index == jax.process_index()
                                                               for d in mesh.devices.flat):
        return None
    return NamedSharding(mesh, P(None, mesh.axis_names))


#: The stored forward programs this process loaded or compiled, by store key.
_stored_forwards: dict[str, object] = {}


def _stored_forward(config: RunConfig, params, length: int, dtype, split: NamedSharding | None):
    """The forward program of :func:`_compiled_forward` for parameters placed as ``params`` are, from the executable
    store where the ``cogmeta`` command turned it on (compiled and stored on a miss), or None without the store.
    Found by ``jax_impl.program_keys.forward_key``: a warm run's step-0 check then loads it (5 ms, or nothing when
    ``program_keys.prefetch`` loaded it during start-up) instead of tracing, lowering and loading it (0.09 s). The
    placement of the parameters determines ``split`` (:func:`_task_split`), so it needs no place in the key."""
    store = store_from_environment()
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    if store is None or sharding is None:
        return None
    key = _forward_key(config, sharding, bool(jax.config.jax_enable_x64))
    if key not in _stored_forwards:
        # the pieces' shape (in_pieces pads to it) and placement
        example = jax.ShapeDtypeStruct((length, FORWARD_TASKS, 1), dtype, sharding=split)
        _stored_forwards[key], _ = store.load_or_compile(
            key, lambda: flat_lowering(_compiled_forward(config, split), params, example))
    return _stored_forwards[key]


@functools.lru_cache(maxsize=64)
def _forward_key(config: RunConfig, sharding, x64: bool) -> str:
    """``forward_key`` of parameters placed by ``sharding``, once per process and 64-bit mode (``x64``, which the key
    reads): writing out and hashing the config took ~1 ms of every held-out check."""
    return forward_key(config, placement(sharding))


@functools.lru_cache(maxsize=16)
def _compiled_forward(config: RunConfig, split: NamedSharding | None):
    """One jitted ``(params, observations [T, B, 1]) -> model outputs`` per architecture and ``split``, reused by every
    ``predict`` call (e.g. evaluation chunks). The inputs are built inside (``model_inputs``): built eagerly,
    each of their operations would compile on its own for every new batch size. With ``split``, every device of its
    mesh runs the model on its own share of the tasks (``shard_map``; a task's outputs depend on its inputs alone)."""
    graphdef = _graphdef(config)

    def forward(params, observations):
        return nnx.merge(graphdef, params)(model_inputs(observations))

    if split is not None:
        forward = jax.shard_map(forward, mesh=split.mesh, in_specs=(P(), split.spec), out_specs=split.spec,
                                check_vma=False)
    return jax.jit(forward)
