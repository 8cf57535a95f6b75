"""The model families ``cogmeta verify`` checks besides the tutorial meta-learners, framework-free.

A family config says what both frameworks train and draws their identical inputs once in numpy:

- :class:`BoundedGRUVerify`: the bounded (sparse-variational) GRU of the heuristics study
  (``*/bounded_gru.py``, ``BoundedObjective``) on the paired-comparison task, loss NLL + w_k KL with
  w_k = beta * min((k + 1) / warmup, 1), Adam with clipping. Every batch carries its weight noise: one standard
  normal ``eps (out, in)`` per sparse-variational layer, drawn in numpy and injected into both frameworks
  (as ``parity_tests/test_bounded_gru.py`` does).
- :class:`AmortizedVerify`: the amortized posterior of learning-to-infer (``*/amortized.py``,
  ``AmortizedObjective``): one participant, SGD (or Adam) on one urn query per step, loss KL(q || p).

Both expose what ``cogmeta.verify`` asks of a config: ``family``, ``name``, ``train`` (a
:class:`cogmeta.config.TrainConfig`), ``initial_weights()``, ``training_batches(N)``,
``synthetic_gradients(N)``, ``held_out(M)``, ``header()``, ``title()`` and ``to_dict()``; and
``with_train(**changes)`` (``verify`` compresses ``train.steps`` to N and sets the dtype per pass).

The bounded model's KL amplifies rounding once it starts pruning weights (docs/framework-differences.md
#kl-amplifies-rounding: float64, H = 8, lr 1e-3, beta 1e-3 agrees to 1e-12 up to step ~250, 1e-7 after
300), so with beta > 0 a check runs at most :data:`MAX_KL_STEPS` steps, under the usual tolerances.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from cogmeta._validation import require_choice, require_int, require_real
from cogmeta.config import TrainConfig
from cogmeta.tasks.paired_comparison import PairedComparisonTask

#: Second entry of the seed sequence of the numpy streams (as ``cogmeta.verify.VERIFY_STREAM``).
STREAM = 0x5E1F
#: The families verify covers, by the name ``--family`` takes.
FAMILIES = ("tutorial", "bounded-gru", "amortized")
#: With beta > 0 the bounded GRU is checked over at most this many steps (module doc).
MAX_KL_STEPS = 200
#: The sparse-variational layers of the bounded GRU, in the order of the forward pass.
BOUNDED_LAYERS = ("ih", "hh", "mu", "logscale")
#: The urn query distributions the amortized check can train on, by ``--queries`` name.
QUERY_SETS = ("ID", "UD", "noise", "ladder")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((seed, STREAM, stream))


@dataclass(frozen=True)
class BoundedGRUVerify:
    """The bounded GRU of the heuristics study, as ``cogmeta verify --family bounded-gru`` checks it.

    Attributes:
        task: the paired-comparison task (condition, cues K, trials T).
        hidden_size: H, the GRU's units.
        beta: the KL weight (>= 0; default 0, the pretraining stage).
        warmup: steps over which the KL weight ramps up to beta (>= 0; 0: beta from the first step).
        train: batch size, Adam, clipping, seed and dtype (default: the study's recipe,
            preset ``heuristics-ranking``: batch 64, lr 1e-3, clip 40, constant schedule).
    """

    task: PairedComparisonTask = field(default_factory=PairedComparisonTask)
    hidden_size: int = 64
    beta: float = 0.0
    warmup: int = 0
    train: TrainConfig = field(default_factory=lambda: bounded_train_config())

    family = "bounded-gru"

    def __post_init__(self) -> None:
        owner = "bounded-gru"
        object.__setattr__(self, "hidden_size", require_int(owner, "hidden_size", self.hidden_size, 1, 4096))
        beta = require_real(owner, "beta", self.beta)
        if not beta >= 0:
            raise ValueError(f"{owner}.beta must be >= 0 (the KL weight of the description-length bound), got {beta!r}")
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "warmup", require_int(owner, "warmup", self.warmup, 0))

    @property
    def name(self) -> str:
        return f"bounded-gru-{self.task.condition}"

    def with_train(self, **changes) -> "BoundedGRUVerify":
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def max_steps(self) -> int | None:
        """The longest check the tolerances hold for (None: verify's own limit)."""
        return MAX_KL_STEPS if self.beta > 0 else None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape (torch ``state_dict`` layout)."""
        k, h = self.task.num_cues, self.hidden_size
        sizes = {"ih": (3 * h, k + 2), "hh": (3 * h, h), "mu": (k, h), "logscale": (k, h)}
        shapes: dict[str, tuple[int, ...]] = {"initial_state": (h,)}
        for layer, shape in sizes.items():
            shapes.update({f"{layer}.weight": shape, f"{layer}.log_sigma": shape, f"{layer}.bias": (shape[0],)})
        return shapes

    def initial_weights(self) -> dict[str, np.ndarray]:
        """float64: weights, biases and the initial state U(-1/sqrt(fan_in), 1/sqrt(fan_in)); ``log_sigma``
        U(-6, -1.5) (the model's init is -5), so that "sample" draws visible noise and "pruned" (log alpha >= 3,
        sigma >= 4.5 |W|) masks the smallest weights (a few percent).

        Larger sigmas push the probit argument z past -20 on some trials, where JAX's float64 ``log_ndtr``
        switches to an asymptotic series that differs from torch's (and scipy's) by up to 1.5e-11 relative,
        its gradient by up to 3e-9: over the float64 gradient tolerance (docs/verifying.md)."""
        rng = _rng(self.train.seed, 10)
        weights = {}
        for name, shape in self.parameter_shapes().items():
            if name.endswith(".log_sigma"):
                weights[name] = rng.uniform(-6.0, -1.5, shape)
            else:
                fan_in = self.parameter_shapes()[name.split(".")[0] + ".weight"][1] if "." in name else self.hidden_size
                bound = 1.0 / math.sqrt(fan_in)
                weights[name] = rng.uniform(-bound, bound, shape)
        return weights

    def _noise(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        shapes = self.parameter_shapes()
        return {layer: rng.standard_normal(shapes[f"{layer}.weight"]) for layer in BOUNDED_LAYERS}

    def training_batches(self, steps: int) -> list[dict]:
        """``steps`` float64 batches ``{"cues" [T, B, K], "targets" [T, B], "noise" {layer: eps (out, in)}}``."""
        rng = _rng(self.train.seed, 11)
        batches = []
        for _ in range(steps):
            batch = self.task.sample(rng, self.train.batch_size, np.float64)
            batches.append({"cues": batch.cues, "targets": batch.targets, "noise": self._noise(rng)})
        return batches

    def synthetic_gradients(self, steps: int) -> list[dict[str, np.ndarray]]:
        return scaled_gradients(self.parameter_shapes(), self.train, _rng(self.train.seed, 12), steps)

    def held_out(self, tasks: int) -> dict:
        """``tasks`` held-out tasks ``{"cues", "targets"}`` (the forward runs in the deterministic modes)."""
        batch = self.task.sample(_rng(self.train.seed, 13), tasks, np.float64)
        return {"cues": batch.cues, "targets": batch.targets}

    def header(self, steps: int) -> list[str]:
        task = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.task).items())
        train = self.train
        warmup = f", KL warmup {self.warmup} steps" if self.warmup else ""
        return [f"task paired_comparison ({task})",
                f"model: bounded GRU (sparse-variational), hidden_size {self.hidden_size}, beta {self.beta:g}{warmup}; "
                f"training: {_training_words(train, steps)}",
                "identical weight noise: one numpy eps (out, in) per sparse-variational layer and step, injected into "
                "both frameworks"]

    def title(self) -> str:
        return f"bounded GRU-{self.hidden_size}, {self.task.condition}, beta {self.beta:g}"

    def to_dict(self) -> dict:
        return {"family": self.family, "task": dataclasses.asdict(self.task), "hidden_size": self.hidden_size,
                "beta": self.beta, "warmup": self.warmup, "train": dataclasses.asdict(self.train)}


def bounded_train_config(**changes) -> TrainConfig:
    """The heuristics study's optimiser recipe (the ``train`` section of preset ``heuristics-ranking``) with
    ``changes``."""
    from cogmeta.presets import preset

    return dataclasses.replace(preset("heuristics-ranking").train, **changes)


@dataclass(frozen=True)
class AmortizedVerify:
    """One simulated participant of learning-to-infer, as ``cogmeta verify --family amortized`` checks it.

    Attributes:
        hidden: H, the RBF units (default 1, the paper's).
        queries: the urn query distribution of the training and held-out queries (:data:`QUERY_SETS`: the
            EU study's ID and UD sets, the noise blocks, the sample-size ladder).
        train: optimizer ("sgd", the paper's, or "adam"), constant learning rate, no clipping, seed and dtype
            (``cogmeta.experiments.amortized_spec.train_config``; default SGD at lr 0.05, the EU study's).
    """

    hidden: int = 1
    queries: str = "ID"
    train: TrainConfig = field(default_factory=lambda: amortized_train_config())

    family = "amortized"
    #: KL(q || p) = sum q (log q - log p) cancels terms of size O(1), so its rounding error is ~1 ulp of O(1)
    #: whatever its value: losses are compared relatively only where >= this, and the whole curve absolutely
    #: (as ``parity_tests/test_amortized.py::test_1000_steps``).
    loss_floor = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", require_int("amortized", "hidden", self.hidden, 1, 100_000))
        require_choice("amortized", "queries", self.queries, QUERY_SETS)
        if self.train.clip_norm is not None or self.train.schedule != "constant" or self.train.batch_size != 1:
            raise ValueError("the amortized model trains on one query per step at a constant learning rate without "
                             "clipping (cogmeta.experiments.amortized_spec.train_config)")

    @property
    def name(self) -> str:
        return f"amortized-{self.queries}"

    def with_train(self, **changes) -> "AmortizedVerify":
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def max_steps(self) -> int | None:
        return None

    def distribution(self):
        from cogmeta.tasks.urn import EU_ID, EU_UD, NOISE_BLOCKS, SIZE_LADDER

        return {"ID": EU_ID, "UD": EU_UD, "noise": NOISE_BLOCKS, "ladder": SIZE_LADDER}[self.queries]

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        from cogmeta.experiments.amortized_spec import parameter_shapes

        return parameter_shapes(self.hidden)

    def initial_weights(self) -> dict[str, np.ndarray]:
        """float64: the linear maps U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's init), RBF widths U(0.05, 1)
        and centres N(0, 0.5) (spread, so that every parameter matters, as in the parity suite)."""
        rng = _rng(self.train.seed, 20)
        h = self.hidden
        from cogmeta.tasks.urn import QUERY_FEATURES

        u = lambda fan_in, shape: rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), shape)  # noqa: E731
        return {"input.weight": u(QUERY_FEATURES, (h, QUERY_FEATURES)), "input.bias": u(QUERY_FEATURES, (h,)),
                "rbf.beta": rng.uniform(0.05, 1.0, h), "rbf.centre": rng.normal(0.0, 0.5, h),
                "output.weight": u(h, (2, h)), "output.bias": u(h, (2,))}

    def training_batches(self, steps: int) -> list[dict]:
        """``steps`` float64 queries, one per step: ``{"inputs" [1, 6], "log_odds" [1]}``."""
        queries = self.distribution().sample(_rng(self.train.seed, 21), steps, np.float64)
        return [{"inputs": queries.inputs[k : k + 1], "log_odds": queries.log_odds[k : k + 1]} for k in range(steps)]

    def synthetic_gradients(self, steps: int) -> list[dict[str, np.ndarray]]:
        return scaled_gradients(self.parameter_shapes(), self.train, _rng(self.train.seed, 22), steps)

    def held_out(self, tasks: int) -> dict:
        queries = self.distribution().sample(_rng(self.train.seed, 23), tasks, np.float64)
        return {"inputs": queries.inputs, "log_odds": queries.log_odds}

    def header(self, steps: int) -> list[str]:
        spec = self.distribution()
        return [f"task urn queries {self.queries} (priors {len(spec.priors)}, likelihoods {len(spec.likelihoods)} "
                f"values; one query per step)",
                f"model: amortized posterior (Linear -> RBF -> Linear), hidden {self.hidden}; training: "
                f"{_training_words(self.train, steps)}"]

    def title(self) -> str:
        return f"amortized posterior H{self.hidden}, {self.queries} queries"

    def to_dict(self) -> dict:
        return {"family": self.family, "hidden": self.hidden, "queries": self.queries,
                "train": dataclasses.asdict(self.train)}


def amortized_train_config(optimizer: str = "sgd", learning_rate: float = 0.05, dtype: str = "float32",
                           seed: int = 0) -> TrainConfig:
    """The participant's recipe (``amortized_spec.train_config``) with the run's seed."""
    from cogmeta.experiments.amortized_spec import train_config

    return dataclasses.replace(train_config(1, learning_rate, optimizer, dtype), seed=seed)


def _training_words(train: TrainConfig, steps: int) -> str:
    clip = "no clipping" if train.clip_norm is None else f"clip {train.clip_norm:g}"
    return (f"{train.optimizer} lr {train.learning_rate:g}, {train.schedule} schedule over {steps} steps, {clip}, "
            f"batch {train.batch_size}, seed {train.seed}")


def uniform_weights(run, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float64 canonical weights of the model of run config ``run``: every tensor U(-1/sqrt(H), 1/sqrt(H)) (torch's
    default init of the GRU/LSTM cores and, as fan_in = H, of the H -> * heads), shapes from
    ``cogmeta.weights.parameter_shapes`` (any registered model family)."""
    from cogmeta.weights import parameter_shapes

    bound = 1.0 / math.sqrt(run.model.hidden_size)
    return {name: rng.uniform(-bound, bound, shape) for name, shape in parameter_shapes(run).items()}


def scaled_gradients(shapes, train: TrainConfig, rng: np.random.Generator, steps: int) -> list[dict[str, np.ndarray]]:
    """``steps`` gradient dicts (name -> N(0, 1) array of ``shapes``), each rescaled to global norm 2c and c/2
    alternately (c = ``train.clip_norm``, so clipping acts on every other step), or 1 without clipping."""
    clip = train.clip_norm
    gradients = []
    for step in range(steps):
        g = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
        norm = math.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
        target = 1.0 if clip is None else (2.0 if step % 2 == 0 else 0.5) * clip
        gradients.append({name: v * (target / norm) for name, v in g.items()})
    return gradients


__all__ = ["AmortizedVerify", "BOUNDED_LAYERS", "BoundedGRUVerify", "FAMILIES", "MAX_KL_STEPS", "QUERY_SETS",
           "amortized_train_config", "bounded_train_config", "scaled_gradients", "uniform_weights"]
