"""One configuration per run, shared by the PyTorch and JAX backends.

A :class:`RunConfig` holds the task spec, the model, the optimisation recipe and two small sections of
framework-only options. It round-trips through JSON (``config.json`` in every run folder), and every
field is validated on construction with an error that names it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogmeta._validation import (
    require_choice,
    require_in_range,
    require_int,
    require_positive,
)

CELLS = ("gru", "lstm")
DTYPES = ("float32", "float64")
SCHEDULES = ("cosine", "constant", "step")
OPTIMIZERS = ("adam", "sgd")
#: Largest count of steps or tasks in a config: JAX holds step counters and seeds as int32.
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class ModelConfig:
    """The network: a registered model family (``cogmeta.families``) and its sizes.

    Attributes:
        cell: "gru" or "lstm" (seq2seq: "lstm"); ``None`` takes the family's first (meta_learner: "gru").
        hidden_size: units per recurrent layer.
        num_layers: stacked recurrent layers.
        family: "meta_learner" (a recurrent core and a head for the task's predictive family; the tutorial's),
            "seq2seq" (Lake 2019's meta sequence-to-sequence learner) or "rl2" (a recurrent policy trained by
            advantage actor-critic across bandit episodes; Duan et al. 2016, Wang et al. 2018).
        dropout: dropout probability of the seq2seq family's embeddings and decoder (Lake 2019: 0.5).
        memory: the seq2seq family's support memory (``False``: the plain seq2seq ablation).

    A field that the family does not read must keep its default (an error says so), so that no option is
    accepted and ignored.
    """

    cell: str | None = field(default=None, metadata={"choices": CELLS})
    hidden_size: int = 64
    num_layers: int = 1
    family: str = "meta_learner"
    dropout: float = 0.0
    memory: bool = True

    def __post_init__(self) -> None:
        from cogmeta.families import model_family

        family = model_family(self.family)
        if self.cell is None:
            object.__setattr__(self, "cell", family.cells[0])
        require_choice("ModelConfig", "cell", self.cell, family.cells)
        require_int("ModelConfig", "hidden_size", self.hidden_size, 1, 65_536)
        require_int("ModelConfig", "num_layers", self.num_layers, 1, 64)
        require_in_range("ModelConfig", "dropout", self.dropout, 0.0, 1.0, closed="low")
        if not isinstance(self.memory, bool):
            raise ValueError(f"ModelConfig.memory must be true or false, got {self.memory!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in sorted(set(defaults) - family.model_fields - {"family", "cell"}):
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"ModelConfig.{name} does not apply to model family {self.family!r} (it reads "
                                 f"{', '.join(sorted(family.model_fields))}); leave it at {defaults[name]!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe of every workload: the one trainer's update rule, schedule and run length.

    Defaults are the tutorial's (Adam on the mean NLL, global-norm clipping, a cosine schedule); the
    paper recipes are presets that set other values (``cogmeta.presets``).

    Attributes:
        steps: optimizer updates.
        batch_size: tasks per update (each task trains all T prefix lengths at once).
        learning_rate: peak learning rate.
        schedule: "cosine" (decay to ``final_lr_fraction`` of the peak), "constant", or "step"
            (times ``decay_factor`` every ``decay_every`` updates; Lake 2019).
        final_lr_fraction: end point of the cosine schedule, in [0, 1].
        decay_every, decay_factor: the step schedule.
        optimizer: "adam" or "sgd" (p <- p - lr g; Dasgupta et al. 2020).
        clip_norm: global gradient-norm threshold, torch semantics (coef = c / (norm + 1e-6), at most 1);
            ``None`` does not clip (the norm is still reported).
        adam_beta1, adam_beta2, adam_eps: Adam constants (torch and optax defaults).
        seed: seeds weight initialisation and the task stream; batch k depends only on (seed, k).
        dtype: "float32" or "float64" for weights and computation.
        log_every: steps per row of the metrics log.
        checkpoint_every: steps between checkpoints.
        eval_every: steps between evaluations on a fixed held-out set (logged as ``heldout_kl``, the exact KL;
            rl2: ``heldout_reward``, the expected total reward).
        eval_tasks: size of that held-out set.
        until_kl: stop as soon as the held-out mean KL(Bayes || model) is below this target (nats), ending the
            run as usual (weights, checkpoint, metrics, figures); ``None`` trains all ``steps``.
        until_kl_every: steps between the held-out checks of ``until_kl`` (on the ``eval_tasks`` set; logged as
            ``heldout_kl``): a check follows every step whose count is a multiple of it, run by the trainer between
            its steps, in JAX inside the compiled call (``cogmeta.held_out_check``). Near the target the KL moves from
            check to check by more than the target, so finer checks stop sooner, and one check costs about two
            optimizer steps at the default size (a JAX check in the call, a PyTorch one between steps): over seeds
            0-7 both frameworks reached the target soonest checked every 10-25 steps, PyTorch 40 % later at every
            100 (docs/performance.md, "The checks inside the training call").
    """

    steps: int = 8_000
    batch_size: int = 128
    learning_rate: float = 3e-3
    schedule: str = field(default="cosine", metadata={"choices": SCHEDULES})
    final_lr_fraction: float = 0.02
    decay_every: int = 5_000
    decay_factor: float = 0.1
    optimizer: str = field(default="adam", metadata={"choices": OPTIMIZERS})
    clip_norm: float | None = 10.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 0
    dtype: str = field(default="float32", metadata={"choices": DTYPES})
    log_every: int = 100
    checkpoint_every: int = 2_000
    eval_every: int = 500
    eval_tasks: int = 1_000
    until_kl: float | None = None
    until_kl_every: int = 25

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        require_int(owner, "steps", self.steps, 1, MAX_COUNT)
        require_int(owner, "batch_size", self.batch_size, 1, MAX_COUNT)
        require_positive(owner, "learning_rate", self.learning_rate)
        require_choice(owner, "schedule", self.schedule, SCHEDULES)
        require_in_range(owner, "final_lr_fraction", self.final_lr_fraction, 0.0, 1.0)
        require_int(owner, "decay_every", self.decay_every, 1, MAX_COUNT)
        require_in_range(owner, "decay_factor", self.decay_factor, 0.0, 1.0, closed="high")
        require_choice(owner, "optimizer", self.optimizer, OPTIMIZERS)
        if self.clip_norm is not None:
            require_positive(owner, "clip_norm", self.clip_norm)
        require_in_range(owner, "adam_beta1", self.adam_beta1, 0.0, 1.0, closed="low")
        require_in_range(owner, "adam_beta2", self.adam_beta2, 0.0, 1.0, closed="low")
        require_positive(owner, "adam_eps", self.adam_eps)
        require_int(owner, "seed", self.seed, 0, 2**31 - 1)
        require_choice(owner, "dtype", self.dtype, DTYPES)
        require_int(owner, "log_every", self.log_every, 1, MAX_COUNT)
        require_int(owner, "checkpoint_every", self.checkpoint_every, 1, MAX_COUNT)
        require_int(owner, "eval_every", self.eval_every, 1, MAX_COUNT)
        require_int(owner, "eval_tasks", self.eval_tasks, 2, MAX_COUNT)
        if self.until_kl is not None:
            require_positive(owner, "until_kl", self.until_kl)
        require_int(owner, "until_kl_every", self.until_kl_every, 1)


@dataclass(frozen=True)
class TorchOptions:
    """PyTorch-only options.

    Attributes:
        threads: intra-op threads. 1 is often several times faster than 2 for these small models on
            a 2-core CPU (thread hand-off costs more than the matmuls); 0 keeps torch's default.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the model and its batches live (batches
            are sampled on the CPU with torch's generator, then copied).
        cuda_graphs: capture the whole training step (forward, backward, clipping, Adam) in one CUDA
            graph and replay it, with no host synchronisation between updates
            (``torch_impl.static_step``); needs a CUDA device and a family that has the captured step
            (``ModelFamily.cuda_graphs``: the tutorial's meta-learner).
    """

    threads: int = 1
    device: str = field(default="cpu", metadata={"flag": "--torch-device"})
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        require_int("TorchOptions", "threads", self.threads, 0, 1024)
        if not isinstance(self.device, str) or not (
            self.device in ("cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ValueError(f"TorchOptions.device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not isinstance(self.cuda_graphs, bool):
            raise TypeError(f"TorchOptions.cuda_graphs must be a bool, got {self.cuda_graphs!r}")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise ValueError("TorchOptions.cuda_graphs needs a CUDA device: set device='cuda' (or 'cuda:N')")


@dataclass(frozen=True)
class JaxOptions:
    """JAX-only options.

    Attributes:
        steps_per_call: optimizer steps per compiled call (a ``lax.scan``); progress and metrics are
            reported between calls.
    """

    steps_per_call: int = 500

    def __post_init__(self) -> None:
        require_int("JaxOptions", "steps_per_call", self.steps_per_call, 1, MAX_COUNT)


@dataclass(frozen=True)
class RLConfig:
    """The advantage actor-critic (A2C) objective of the ``rl2`` family (read by no other family).

    Per episode of n trials with rewards r_t, values V_t and policy pi_t:
    ``G_t = r_t + discount * G_{t+1}`` (``G_n = 0``; an episode ends, nothing is bootstrapped),
    ``loss = mean[-log pi_t(a_t) * sg(G_t - V_t)] + value_weight * mean[(G_t - V_t)^2 / 2]
    - w_k * mean[H(pi_t)]``, where sg stops the gradient and the entropy weight w_k at update k goes
    linearly from ``entropy_weight`` to ``entropy_final`` over ``train.steps`` (constant if
    ``entropy_final`` is None). Defaults: Wang et al. (2018)'s bandit recipe (discount 0.9, value 0.05,
    entropy 0.05; ``../shared/references/tasks.md`` section 5).

    Attributes:
        discount: gamma in (0, 1].
        value_weight: weight of the value (critic) loss, >= 0.
        entropy_weight: weight of the entropy bonus at the first update, >= 0.
        entropy_final: weight of the entropy bonus at the last update (linear anneal); None keeps it constant.
    """

    discount: float = 0.9
    value_weight: float = 0.05
    entropy_weight: float = 0.05
    entropy_final: float | None = None

    def __post_init__(self) -> None:
        owner = "RLConfig"
        object.__setattr__(self, "discount", require_in_range(owner, "discount", self.discount, 0.0, 1.0, closed="high"))
        for name in ("value_weight", "entropy_weight") + (("entropy_final",) if self.entropy_final is not None else ()):
            object.__setattr__(self, name, require_in_range(owner, name, getattr(self, name), 0.0, 1e6))

    def entropy_at(self, step: int, steps: int) -> float:
        """The entropy weight of 0-based update ``step`` of ``steps``: linear from ``entropy_weight`` to
        ``entropy_final`` (reached at the last update)."""
        if self.entropy_final is None:
            return float(self.entropy_weight)
        fraction = min(step / max(steps - 1, 1), 1.0)
        return float(self.entropy_weight + (self.entropy_final - self.entropy_weight) * fraction)


@dataclass(frozen=True)
class BoundConfig:
    """The description-length bound of the ``bounded_gru`` family (Binz et al. 2022; read by no other family).

    Update k minimises ``NLL + w_k * KL(q(W) || p(W))`` over the sparse-variational weights, with
    ``w_k = beta * min((k + 1) / warmup_steps, 1)`` (``warmup_steps = 0``: ``w_k = beta``;
    ``cogmeta.contract.kl_weight``). The paper's recipe trains at beta = 0 first, then fine-tunes that model
    at each beta > 0 from its weights with every log sigma reset to -5: ``start_from`` names the beta = 0 run.

    Attributes:
        beta: weight of the KL term, >= 0 (0: meta-learned inference without a bound).
        warmup_steps: updates over which the KL weight ramps up to beta, >= 0.
        stream: index of the training batches' random stream, >= 0 (step k of seed s draws from
            ``SeedSequence([s, condition, stream, k])``; the heuristics study gives fine-tuning at its i-th
            beta the stream 1 + i, so that it sees other tasks than pretraining).
        start_from: a run folder (or its ``weights.safetensors``) of the same model whose weights start
            this run, log sigma reset to -5 (None: fresh weights from the seed).
    """

    beta: float = field(default=0.0, metadata={"flag": "--bound-beta"})  # --beta is the coin task's prior
    warmup_steps: int = 0
    stream: int = 0
    start_from: str | None = None

    def __post_init__(self) -> None:
        owner = "BoundConfig"
        object.__setattr__(self, "beta", require_in_range(owner, "beta", self.beta, 0.0, 1e6))
        object.__setattr__(self, "warmup_steps", require_int(owner, "warmup_steps", self.warmup_steps, 0, MAX_COUNT))
        object.__setattr__(self, "stream", require_int(owner, "stream", self.stream, 0, MAX_COUNT))
        if self.start_from is not None and (not isinstance(self.start_from, str) or not self.start_from.strip()):
            raise ValueError(f"{owner}.start_from must be a run folder or weights file path, got {self.start_from!r}")


def read_config_json(path: str | Path, parse):
    """``parse(data)`` of the JSON object in a run's ``config.json``; every error names the file.

    Raises FileNotFoundError when there is no file, ValueError when it is not JSON or ``parse`` refuses it
    (``ValueError``, ``TypeError`` or ``KeyError``: a missing, unknown or invalid key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run config at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"run config {path} is not valid JSON ({error}); restore it or train again") from None
    try:
        return parse(data)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"run config {path}: {error}") from None


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run, for every model family: the one config of cogmeta.

    ``task`` is one of the tasks of ``model.family`` (``cogmeta.families``; ``None``: the family's default
    task). A paper's recipe is a named preset of this class (``cogmeta.presets``), not a class of its own.
    """

    task: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    torch: TorchOptions = field(default_factory=TorchOptions)
    jax: JaxOptions = field(default_factory=JaxOptions)
    rl: RLConfig = field(default_factory=RLConfig)
    bound: BoundConfig = field(default_factory=BoundConfig)

    def __post_init__(self) -> None:
        family = self.family
        for name, cls, what, reader in (("rl", RLConfig, "the A2C objective", "rl2"),
                                        ("bound", BoundConfig, "the description-length bound", "bounded_gru")):
            if name not in family.sections and getattr(self, name) != cls():
                raise ValueError(f"RunConfig.{name} ({what}) does not apply to model family {family.name!r}; "
                                 f"leave it at its defaults (it is read by the {reader} family)")
        if self.task is None:
            object.__setattr__(self, "task", family.make_task(family.default_task))
        name = getattr(self.task, "name", None)
        if type(self.task) is not family.tasks().get(name):
            raise ValueError(f"RunConfig.task: model family {family.name!r} trains the tasks "
                             f"{', '.join(sorted(family.tasks()))}, not {type(self.task).__name__}"
                             + (f" (task {name!r} belongs to another family: set model.family / --family)"
                                if isinstance(name, str) else ""))
        if self.torch.cuda_graphs and not family.cuda_graphs:
            from cogmeta.families import MODEL_FAMILIES

            capturable = ", ".join(f.name for f in MODEL_FAMILIES.values() if f.cuda_graphs)
            raise ValueError(f"TorchOptions.cuda_graphs: the {family.name} family's PyTorch step has no CUDA-graph form "
                             f"(only {capturable}'s has); it trains eagerly on the GPU with --torch-device cuda (leave "
                             f"--cuda-graphs out)")
        family.check(self)

    @property
    def family(self):
        """The :class:`cogmeta.families.ModelFamily` of ``model.family``."""
        from cogmeta.families import model_family

        return model_family(self.model.family)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "task": {"name": self.task.name, **dataclasses.asdict(self.task)},
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "torch": dataclasses.asdict(self.torch),
            "jax": dataclasses.asdict(self.jax),
            # Only the families that read a section write it, so older run folders keep loading.
            **{name: dataclasses.asdict(getattr(self, name)) for name in sorted(self.family.sections)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> "RunConfig":
        """Inverse of :meth:`to_dict`; unknown sections or keys are errors.

        ``strict`` (how :meth:`load` reads ``config.json``): every section and every key is required too, so a
        file that lost a line is refused rather than silently completed with defaults. Otherwise a missing
        section or key takes its default (configs written in code).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a run config must be a JSON object (dict), got {type(data).__name__}")
        from cogmeta.families import model_family

        model_data = data.get("model", {})
        family = model_family(model_data.get("family", "meta_learner") if isinstance(model_data, dict) else "meta_learner")
        sections = ("task", "model", "train", "torch", "jax", *sorted(family.sections))
        for name in set(sections) & set(data):
            if not isinstance(data[name], dict):
                raise ValueError(f"config section {name!r} must be an object (dict), got {data[name]!r}")
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"unknown config section(s) {', '.join(unknown)} for model family {family.name!r}; "
                             f"expected {', '.join(sorted(sections))}")
        missing = [name for name in sections if name not in data]
        if strict and missing:
            raise ValueError(f"config section(s) {', '.join(missing)} missing; a run config has all of "
                             f"{', '.join(sections)}")
        kwargs: dict[str, Any] = {}
        for name, section_cls in (("model", ModelConfig), ("train", TrainConfig), ("torch", TorchOptions), ("jax", JaxOptions),
                                  ("rl", RLConfig), ("bound", BoundConfig)):
            if name in data:
                kwargs[name] = _build(section_cls, name, data[name], strict)
        if "task" in data:
            kwargs["task"] = _build_task(kwargs.get("model", ModelConfig()), data["task"], strict)
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` atomically."""
        from cogmeta.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a ``config.json`` written by :meth:`save`, strictly (every section and key, nothing else);
        every error names the file."""
        return read_config_json(path, lambda data: cls.from_dict(data, strict=True))

    @property
    def output_size(self) -> int:
        """Raw outputs of the head per time step."""
        from cogmeta.predictive import OUTPUT_SIZE

        return OUTPUT_SIZE[self.task.family]


#: Inputs per time step: [start flag, previous observation] (see ``cogmeta.tasks.model_inputs``).
INPUT_SIZE = 2


def _build(section_cls: type, name: str, values: dict[str, Any], strict: bool = False):
    names = [f.name for f in dataclasses.fields(section_cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in config section {name!r}; valid keys: {', '.join(sorted(names))}")
    missing = [key for key in names if key not in values]
    if strict and missing:
        defaults = section_cls()
        raise ValueError(f"key(s) {', '.join(missing)} missing in config section {name!r} (a file written by an older "
                         f"cogmeta, or edited); add them, e.g. the defaults: "
                         + ", ".join(f"{json.dumps(key)}: {json.dumps(getattr(defaults, key))}" for key in missing))
    return section_cls(**values)


def _build_task(model: ModelConfig, values: dict[str, Any], strict: bool):
    """The task section: a ``name`` out of the model family's tasks and that task's fields (strict: all of them)."""
    from cogmeta.families import model_family

    family = model_family(model.family)
    values = dict(values)
    name = values.pop("name", None)
    if name not in family.tasks():
        raise ValueError(f"unknown task {name!r} for model family {family.name!r}: config section 'task' needs a "
                         f"'name' out of {', '.join(sorted(family.tasks()))}")
    missing = [f.name for f in dataclasses.fields(family.task_class(name)) if f.name not in values]
    if strict and missing:
        raise ValueError(f"key(s) {', '.join(missing)} missing in config section 'task' (task {name!r}); add them")
    return family.make_task(name, **values)
