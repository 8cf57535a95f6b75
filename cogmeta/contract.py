"""The contract between the framework-free core and the two backends, in one place.

Everything that both ``torch_impl`` and ``jax_impl`` implement or return is declared here, so imports
only ever point from the twins into the core (never the other way round, and never between drivers):

- :class:`TaskSpec`: what a task gives the pipeline (noise spec, transform, reference sampler, exact
  Bayes predictive), and the task registry (:func:`register_task`, :func:`task_class`).
- :class:`Trainer` and :class:`Backend`: what ``<backend>_impl.backend`` provides.
- The values that cross the line: :class:`StepMetrics`, :class:`Checkpoint`, :class:`MemberRun`, :class:`TrainResult`,
  :class:`NonFiniteLossError`, and the KL-weight schedule :func:`kl_weight` shared by the bounded models.

``typing.Protocol`` classes are structural: a task or backend conforms by having the attributes, not
by inheriting; ``tests/test_contract.py`` checks that every registered task and both backends do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    ClassVar,
    Mapping,
    NamedTuple,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import numpy as np

# --------------------------------------------------------------------------------------------- tasks


@runtime_checkable
class TaskSpec(Protocol):
    """A meta-learning environment whose tasks are sequences x_1..x_T of scalar observations.

    Attributes:
        name: registry key (``cogmeta train --task NAME``).
        family: the predictive family the model outputs, ``"gaussian"`` (mean, std) or ``"bernoulli"``.
        sequence_length: T.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    sequence_length: int

    def noise_spec(self, batch_size: int) -> dict[str, Any]:
        """Base noise of B tasks, name -> ``cogmeta.tasks.NoiseSpec`` (drawn by each framework's RNG)."""

    def transform(self, noise: Mapping[str, np.ndarray]) -> Any:
        """Deterministic noise -> ``TaskBatch`` (observations ``[T, B, 1]``, latent ``[B, ...]``); repeated
        operation for operation by ``torch_impl.samplers`` and ``jax_impl.samplers``."""

    def sample(self, rng: np.random.Generator, batch_size: int, dtype: Any = np.float64) -> Any:
        """The numpy reference sampler: ``transform(draw_noise(noise_spec(B), rng))``."""

    def posterior_predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """The exact Bayes-optimal predictive of x_{t+1} given x_1..x_t, every t: family parameters ``[T, B]``."""


#: name -> task class; filled by :func:`register_task` when ``cogmeta.tasks`` is imported.
TASKS: dict[str, type] = {}

_Task = TypeVar("_Task", bound=type)


def register_task(cls: _Task) -> _Task:
    """Class decorator: make a task available by its ``name`` to the CLI, sweeps, evaluation and the parity suite.

    The class must be a frozen dataclass conforming to :class:`TaskSpec`; each backend must register a
    transform for the same name (``<backend>_impl.samplers.register_transform``).
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name` (its registry key)")
    if getattr(cls, "family", None) not in FAMILIES:
        raise TypeError(f"{cls.__name__}.family must be one of {', '.join(FAMILIES)}, got {getattr(cls, 'family', None)!r}")
    if name in TASKS and TASKS[name] is not cls:
        raise ValueError(f"two tasks are registered as {name!r}: {TASKS[name].__name__} and {cls.__name__}")
    TASKS[name] = cls
    return cls


def build_task(cls: type, **params: Any) -> Any:
    """``cls(**params)`` for a task dataclass, with an error naming the parameters it does not have (every task
    registry's constructor: ``cogmeta.tasks.make_task``, ``cogmeta.families.ModelFamily.make_task``)."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"task {cls.name!r} has no parameter(s) {', '.join(unknown)}; its parameters are "
                         f"{', '.join(names) or '(none)'}")
    return cls(**params)


def task_class(name: str) -> type:
    """The registered task class ``name``, with an error that lists the registered ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


#: Predictive families a sequence model can output, and their parameters (``*_impl.heads``).
FAMILIES: dict[str, tuple[str, ...]] = {"gaussian": ("mean", "std"), "bernoulli": ("prob",)}

# ------------------------------------------------------------------------------------------ backends


class StepMetrics(NamedTuple):
    """Per-step values returned by ``Trainer.run``; each ``[n]`` for the n steps attempted.

    If the loss or the gradient norm of the last attempted step is non-finite, that step's update was
    *not* applied. ``aux``: the objective's extra per-step values by name (e.g. the bounded GRU's ``nll``
    and ``kl``; empty for most workloads).
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    learning_rate: np.ndarray
    aux: Mapping[str, np.ndarray] = MappingProxyType({})


@runtime_checkable
class Trainer(Protocol):
    """One training run, the same methods in both frameworks: the one trainer, ``<backend>_impl.trainer.Trainer``.

    ``Trainer(objective, checkpoint=None, seed=None, steps_per_call=..., until=None)`` trains any workload's objective
    (task x model: its batches and loss; ``<backend>_impl.trainer.Objective``); ``step`` counts applied
    updates; ``chunk_size`` is how many steps one ``run`` call prefers (the JAX trainer scans that many
    per compiled call). ``run_on(batches)`` trains on given batches (seq2seq episodes, parity tests).
    """

    step: int
    chunk_size: int

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates; stops before applying one whose loss or gradient is non-finite."""

    def run_on(self, batches: Any) -> StepMetrics:
        """One update per given batch; stops before applying one whose loss or gradient is non-finite."""

    def run_checked(self, count: int) -> tuple[StepMetrics, list[tuple[int, float]]]:
        """Up to ``count`` updates with the held-out check of ``train.until_kl`` (``cogmeta.held_out_check``,
        given to the trainer as ``until``) after every multiple of its period, ending at the first check below the
        target: the metrics of the steps attempted and ``(step, KL)`` of every check made (JAX: inside one
        compiled call)."""

    def weights(self) -> dict[str, np.ndarray]:
        """Canonical (torch ``state_dict`` layout) numpy weights."""

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """The model's predictive parameters ``[T, B]`` on numpy observations ``[T, B, 1]`` (objectives with a
        predictive, e.g. the tutorial's)."""

    def checkpoint(self) -> Checkpoint:
        """Step, weights and Adam moments by canonical name."""


@runtime_checkable
class Backend(Protocol):
    """What ``torch_impl.backend`` and ``jax_impl.backend`` export for the tutorial workload (loaded by
    ``cogmeta.backends.load_module``): its objective for the one trainer, and prediction from weights."""

    FRAMEWORK: str
    MetaLearnerObjective: Callable[..., Any]

    def make_tutorial_trainer(self, config: Any, checkpoint: Checkpoint | None = None) -> Trainer:
        """The one trainer on the tutorial objective of ``config``."""

    def predict(self, config: Any, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights``."""

    def init_weights(self, config: Any, seed: int | None = None) -> dict[str, np.ndarray]:
        """Canonical initial weights of a fresh model."""


@dataclass
class Checkpoint:
    """A resumable training state, framework-neutral (saved and loaded by ``cogmeta.checkpoint``).

    Attributes:
        step: optimizer updates applied so far.
        params, exp_avg, exp_avg_sq: canonical name -> array.
        framework: which backend wrote it.
    """

    step: int
    params: dict[str, np.ndarray]
    exp_avg: dict[str, np.ndarray]
    exp_avg_sq: dict[str, np.ndarray]
    framework: str = ""


@dataclass
class MemberRun:
    """What a sweep engine returns per member: final canonical weights and per-step metrics (``[steps]`` each)."""

    seed: int
    learning_rate: float
    weights: dict[str, np.ndarray]
    metrics: StepMetrics
    steps: int
    stopped: bool  # a non-finite loss or gradient stopped it; the weights are the last good ones


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    steps: int
    final_loss: float
    seconds: float
    #: False in the ranks/processes of a data-parallel run that do not write the run folder.
    is_writer: bool = True
    #: With ``train.until_kl``: the step whose held-out check first fell below the target (``None``: never),
    #: the training seconds to that check (from the start of building the trainer, compilation included) and its KL.
    until_kl_step: int | None = None
    until_kl_seconds: float | None = None
    until_kl_value: float | None = None
    #: Where those seconds went: ``{"trainer": s, "first_call": s, "later_calls": s, "checks": s}``: building the
    #: trainer (the model drawn; JAX compiles its first program meanwhile, ``compile_ahead``), the first training
    #: call (in JAX it traces, lowers and compiles or loads its program, unless that was done ahead), the later
    #: calls and the held-out checks (the rest is logging and checkpoints).
    until_kl_parts: dict[str, float] | None = None
    #: Where a JAX trainer's first training program came from (``jax_impl.trainer.Trainer.program_source``):
    #: "prefetched" (the executable store, loaded during start-up: ``jax_impl.program_keys``), "store" (the executable
    #: store), "stored" (compiled and stored now), "compiled" (compiled, or loaded from JAX's cache, ahead of the first
    #: call); None where nothing was compiled ahead (PyTorch).
    program_source: str | None = None


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good state was checkpointed."""


def kl_weight(step: int, beta: float, warmup: int) -> float:
    """The weight of a description-length (KL) penalty at 0-based ``step``: beta * min((step + 1) / warmup, 1).

    ``warmup = 0``: beta from the start. Used by the bounded models of both frameworks.
    """
    if warmup <= 0:
        return float(beta)
    return float(beta) * min((step + 1) / warmup, 1.0)


__all__ = [
    "FAMILIES",
    "TASKS",
    "Backend",
    "Checkpoint",
    "MemberRun",
    "NonFiniteLossError",
    "StepMetrics",
    "TaskSpec",
    "TrainResult",
    "Trainer",
    "kl_weight",
    "register_task",
    "task_class",
]
