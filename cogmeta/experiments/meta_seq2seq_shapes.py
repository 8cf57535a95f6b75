"""Configuration of meta sequence-to-sequence runs (Lake 2019): model, training recipe, presets.

Canonical parameter names (the torch ``state_dict`` of ``torch_impl.seq2seq.MetaSeq2Seq``; the JAX twin
holds the same tensors), with V_in / V_out the command / action vocabulary sizes and H the hidden size:

    input_embedding.weight            (V_in, H)     query and support commands (tied encoders)
    input_encoder.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}[_reverse]   bidirectional LSTM
    output_embedding.weight           (V_out, H)    support actions          } memory only
    output_encoder.*_l{k}[_reverse]                                          }
    memory_combine.weight, .bias      (H, 2H), (H,) C_t = tanh(W [q_t; v_t]) }
    decoder_embedding.weight          (V_out, H)
    decoder.*_l{k}                    LSTM, 4H rows (gates i, f, g, o)
    attention_combine.weight, .bias   (H, 2H), (H,)
    readout.weight, .bias             (V_out, H), (V_out,)

Each LSTM layer k >= 1 of a bidirectional encoder reads the concatenated [forward; reverse] outputs
(input size 2H), as ``torch.nn.LSTM(bidirectional=True)`` lays them out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogmeta._validation import (
    require_choice,
    require_in_range,
    require_int,
    require_positive,
)
from cogmeta.config import MAX_COUNT, TrainConfig, read_config_json
from cogmeta.schedules import learning_rate
from cogmeta.tasks.scan_episodes import (
    EPISODE_TASKS,
    MutualExclusivityTask,
    ScanEpisodeTask,
    episode_task_from_dict,
)

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Seq2SeqModelConfig:
    """Paper: H = 200, 2 layers, dropout 0.5, memory on (``memory=False`` is the plain seq2seq ablation)."""

    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.5
    memory: bool = True

    def __post_init__(self) -> None:
        require_int("Seq2SeqModelConfig", "hidden_size", self.hidden_size, 1, 4096)
        require_int("Seq2SeqModelConfig", "num_layers", self.num_layers, 1, 8)
        require_in_range("Seq2SeqModelConfig", "dropout", self.dropout, 0.0, 1.0, closed="low")
        if not isinstance(self.memory, bool):
            raise ValueError(f"Seq2SeqModelConfig.memory must be True or False, got {self.memory!r}")


@dataclass(frozen=True)
class Seq2SeqTrainConfig:
    """One episode per Adam step; lr x ``decay_factor`` every ``decay_every`` episodes; global-norm clip.

    The update rule is the one trainer's (``Seq2SeqRunConfig.train_config`` gives its ``TrainConfig``);
    ``threads`` (torch), ``episodes_per_call`` (JAX: episodes per compiled scan) and the logging fields
    are how the run is driven. ``checkpoint_every``: episodes between writes of RUN/checkpoint.safetensors (0: every ``log_every``);
    a multiple of ``log_every``, so that a resumed run logs exactly the rows of an uninterrupted one.
    """

    episodes: int = 10_000
    learning_rate: float = 1e-3
    decay_every: int = 5_000
    decay_factor: float = 0.1
    clip_norm: float = 50.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 0
    log_every: int = 100
    dtype: str = "float32"
    threads: int = 1
    episodes_per_call: int = 50
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        owner = "Seq2SeqTrainConfig"
        require_int(owner, "episodes", self.episodes, 1, MAX_COUNT)
        require_positive(owner, "learning_rate", self.learning_rate)
        require_int(owner, "decay_every", self.decay_every, 1, MAX_COUNT)
        require_in_range(owner, "decay_factor", self.decay_factor, 0.0, 1.0, closed="high")
        require_positive(owner, "clip_norm", self.clip_norm)
        require_int(owner, "seed", self.seed, 0, 2**31 - 1)  # TrainConfig's range (JAX holds it as int32)
        require_int(owner, "log_every", self.log_every, 1, MAX_COUNT)
        require_choice(owner, "dtype", self.dtype, DTYPES)
        require_int(owner, "threads", self.threads, 0, 1024)
        require_int(owner, "episodes_per_call", self.episodes_per_call, 1, MAX_COUNT)
        require_int(owner, "checkpoint_every", self.checkpoint_every, 0, MAX_COUNT)
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"{owner}.checkpoint_every must be 0 or a multiple of log_every ({self.log_every}), "
                             f"got {self.checkpoint_every}")

    @property
    def checkpoint_interval(self) -> int:
        """Episodes between checkpoints: ``checkpoint_every``, or ``log_every`` when that is 0."""
        return self.checkpoint_every or self.log_every

    def learning_rate_at(self, episode: int) -> float:
        """lr * decay_factor ** floor(episode / decay_every) (episode counted from 0; ``cogmeta.schedules``)."""
        return learning_rate(episode, self.learning_rate, self.episodes, "step", 0.0, self.decay_every,
                             self.decay_factor)


@dataclass(frozen=True)
class Seq2SeqRunConfig:
    task: Any = field(default_factory=MutualExclusivityTask)
    model: Seq2SeqModelConfig = field(default_factory=Seq2SeqModelConfig)
    train: Seq2SeqTrainConfig = field(default_factory=Seq2SeqTrainConfig)

    def to_dict(self) -> dict:
        return {
            "kind": "meta_seq2seq",
            "task": self.task.to_dict(),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "vocabulary": {"command": list(self.task.commands.tokens), "action": list(self.task.actions.tokens)},
        }

    def train_config(self) -> TrainConfig:
        """The one trainer's recipe of this run: ``steps`` = episodes (one episode, ``batch_size`` 1, per
        Adam step), the ``"step"`` schedule (``decay_every``, ``decay_factor``), ``clip_norm``, the Adam
        constants, ``seed`` and ``dtype``; the logging and checkpoint intervals in episodes."""
        t = self.train
        return TrainConfig(steps=t.episodes, batch_size=1, learning_rate=t.learning_rate, schedule="step",
                           decay_every=t.decay_every, decay_factor=t.decay_factor, optimizer="adam",
                           clip_norm=t.clip_norm, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2,
                           adam_eps=t.adam_eps, seed=t.seed, dtype=t.dtype, log_every=t.log_every,
                           checkpoint_every=t.checkpoint_interval)

    @classmethod
    def from_dict(cls, data: dict) -> "Seq2SeqRunConfig":
        """Inverse of :meth:`to_dict`, strictly: every section and key required, none unknown (errors name them)."""
        if not isinstance(data, dict) or data.get("kind") != "meta_seq2seq":
            raise ValueError("not a meta-seq2seq run config (missing \"kind\": \"meta_seq2seq\")")
        _require_keys("the config", data, ("kind", "task", "model", "train", "vocabulary"))
        task_data = data["task"]
        if not isinstance(task_data, dict) or task_data.get("name") not in EPISODE_TASKS:
            raise ValueError(f"config section 'task' needs a 'name' out of {', '.join(EPISODE_TASKS)}, got "
                             f"{task_data.get('name') if isinstance(task_data, dict) else task_data!r}")
        task_cls = EPISODE_TASKS[task_data["name"]]
        _require_keys("config section 'task'", task_data, ("name", *(f.name for f in dataclasses.fields(task_cls))))
        task = episode_task_from_dict(task_data)
        _require_keys("config section 'vocabulary'", data["vocabulary"], ("command", "action"))
        task.commands.check_matches(data["vocabulary"]["command"], "the run's config.json")
        task.actions.check_matches(data["vocabulary"]["action"], "the run's config.json")
        sections = {}
        for name, section_cls in (("model", Seq2SeqModelConfig), ("train", Seq2SeqTrainConfig)):
            _require_keys(f"config section {name!r}", data[name], tuple(f.name for f in dataclasses.fields(section_cls)))
            sections[name] = section_cls(**data[name])
        return cls(task, sections["model"], sections["train"])

    def save(self, path: str | Path) -> None:
        from cogmeta.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Seq2SeqRunConfig":
        """Read a run's ``config.json`` strictly; every error names the file."""
        return read_config_json(path, cls.from_dict)


def _require_keys(where: str, values: object, keys: tuple[str, ...]) -> None:
    """A ValueError naming ``where`` unless ``values`` is a dict with exactly ``keys``."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be an object (dict), got {values!r}")
    missing = [key for key in keys if key not in values]
    unknown = sorted(set(values) - set(keys))
    if missing or unknown:
        found = "; ".join(part for part in (missing and f"missing key(s) {', '.join(missing)}",
                                            unknown and f"unknown key(s) {', '.join(unknown)}") if part)
        raise ValueError(f"{where}: {found}; expected the keys {', '.join(keys)}")


def parameter_shapes(config: Seq2SeqRunConfig) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape, in ``state_dict`` order."""
    h, layers = config.model.hidden_size, config.model.num_layers
    v_in, v_out = len(config.task.commands), len(config.task.actions)

    def lstm(prefix: str, bidirectional: bool) -> dict[str, tuple[int, ...]]:
        out = {}
        for k in range(layers):
            inputs = h if k == 0 else (2 * h if bidirectional else h)
            for suffix in ("", "_reverse") if bidirectional else ("",):
                out[f"{prefix}.weight_ih_l{k}{suffix}"] = (4 * h, inputs)
                out[f"{prefix}.weight_hh_l{k}{suffix}"] = (4 * h, h)
                out[f"{prefix}.bias_ih_l{k}{suffix}"] = (4 * h,)
                out[f"{prefix}.bias_hh_l{k}{suffix}"] = (4 * h,)
        return out

    shapes = {"input_embedding.weight": (v_in, h), **lstm("input_encoder", True)}
    if config.model.memory:
        shapes["output_embedding.weight"] = (v_out, h)
        shapes.update(lstm("output_encoder", True))
        shapes["memory_combine.weight"], shapes["memory_combine.bias"] = (h, 2 * h), (h,)
    shapes["decoder_embedding.weight"] = (v_out, h)
    shapes.update(lstm("decoder", False))
    shapes["attention_combine.weight"], shapes["attention_combine.bias"] = (h, 2 * h), (h,)
    shapes["readout.weight"], shapes["readout.bias"] = (v_out, h), (v_out,)
    return shapes


#: Named configurations. "*-paper" is Lake (2019)'s recipe (GPU for SCAN); "*-cpu" is sized for a 2-core CPU.
PRESETS: dict[str, Seq2SeqRunConfig] = {
    "me-paper": Seq2SeqRunConfig(MutualExclusivityTask(), Seq2SeqModelConfig(), Seq2SeqTrainConfig()),
    # H = 64, one layer and dropout 0.1: at the paper's dropout 0.5 a 64-unit model was still on the
    # chance plateau (loss 1.09) after 3,000 episodes; with 0.1 it leaves it near episode 2,000.
    "me-cpu": Seq2SeqRunConfig(
        MutualExclusivityTask(),
        Seq2SeqModelConfig(hidden_size=64, num_layers=1, dropout=0.1),
        Seq2SeqTrainConfig(episodes=5_000, decay_every=4_000),
    ),
    "add-jump-paper": Seq2SeqRunConfig(ScanEpisodeTask("add_jump"), Seq2SeqModelConfig(), Seq2SeqTrainConfig()),
    # a CPU-sized stand-in for the GPU recipe (smoke runs and trends, not the 95 % bar)
    "add-jump-cpu": Seq2SeqRunConfig(
        ScanEpisodeTask("add_jump"),
        Seq2SeqModelConfig(hidden_size=64, num_layers=1, dropout=0.1),
        Seq2SeqTrainConfig(episodes=4_000, decay_every=3_000),
    ),
    "around-right-paper": Seq2SeqRunConfig(ScanEpisodeTask("around_right"), Seq2SeqModelConfig(), Seq2SeqTrainConfig()),
}


def preset(name: str) -> Seq2SeqRunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
