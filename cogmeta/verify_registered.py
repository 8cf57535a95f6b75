"""The registered model families besides the tutorial meta-learner, as ``cogmeta verify`` checks them, framework-free.

``rl2`` and ``seq2seq`` runs are ordinary :class:`cogmeta.config.RunConfig` s (``model.family``), trained by the
one trainer of each framework; what differs is what a batch holds and what "the forward outputs" are. Each
class below wraps the run config and draws every input of both frameworks once in numpy:

- :class:`RL2Verify`: the RL² agent (``*/rl2.py``, ``RL2Objective``: A2C on bandit episodes). A batch is a
  :class:`cogmeta.tasks.bandit.BanditBatch` (arm probabilities, the reward uniforms of every trial and arm,
  the action uniforms), so the episodes *and the agent's own action draws* are identical in both frameworks:
  a = min{i : u < sum_{j <= i} pi_j} (``sample_action``). The held-out forward is ``play`` on held-out bandits
  (actions, rewards, pi_t, V_t). In float32 an action can flip where u lies within rounding of a cumulative
  sum; the episode would then diverge from that trial on and the check fail there (not seen at the presets: 20
  float32 updates of ``rl2-bandit``, 128,000 draws, and 25,600 held-out draws gave identical actions).
- :class:`Seq2SeqVerify`: the meta seq2seq learner (``*/seq2seq.py``, ``Seq2SeqObjective``). A batch is one
  episode padded to the task's fixed lengths plus its dropout masks ``{query, support_in, support_out,
  decoder}: [T, N, H]`` of (u >= p) / (1 - p), drawn in numpy (as ``parity_tests/test_seq2seq.py`` does), so the
  training-mode forward is the same function in both. The held-out forward is the eval-mode teacher-forced
  logits and both attention maps of held-out episodes.

Both expose what ``cogmeta.verify`` asks of a family config (as ``cogmeta.verify_families``): ``family``,
``name``, ``train``, ``units``, ``with_train``, ``max_steps``, ``initial_weights()``, ``training_batches(N)``,
``synthetic_gradients(N)``, ``held_out(M)``, ``header(N)``, ``title()``, ``to_dict()``; and, for ``--run``,
``evaluation_figures(weights, backend, tasks)``: the family's evaluation in one framework (rl2: the mean total
reward and the regret per trial of the agent; seq2seq: exact-match accuracy).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.verify_families import STREAM, scaled_gradients, uniform_weights

#: The model families of ``RunConfig.model.family`` that this module wraps (the meta-learner is checked as is).
REGISTERED = ("rl2", "seq2seq", "bounded_gru", "amortized")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((seed, STREAM, stream))


@dataclass(frozen=True)
class _RegisteredVerify:
    """A run config of a registered family; the parts every such family checks the same way."""

    run: RunConfig

    family: ClassVar[str] = ""
    units: ClassVar[str] = "tasks"
    #: The first entry of this family's numpy streams (weights, batches, gradients, held-out).
    streams: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if not isinstance(self.run, RunConfig) or self.run.model.family != self.family:
            found = self.run.model.family if isinstance(self.run, RunConfig) else type(self.run).__name__
            raise ValueError(f"{type(self).__name__} wraps a {self.family!r} run config, got {found!r}")

    @property
    def train(self):
        return self.run.train

    @property
    def task(self):
        return self.run.task

    @property
    def name(self) -> str:
        return f"{self.family}-{self.run.task.name}"

    def with_train(self, **changes):
        return dataclasses.replace(self, run=dataclasses.replace(self.run, train=dataclasses.replace(self.run.train,
                                                                                                     **changes)))

    def max_steps(self) -> int | None:
        return None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        from cogmeta.weights import parameter_shapes

        return parameter_shapes(self.run)

    def initial_weights(self) -> dict[str, np.ndarray]:
        """float64, drawn as the tutorial check draws them (``verify_families.uniform_weights``)."""
        return uniform_weights(self.run, _rng(self.train.seed, self.streams))

    def synthetic_gradients(self, steps: int) -> list[dict[str, np.ndarray]]:
        return scaled_gradients(self.parameter_shapes(), self.train, _rng(self.train.seed, self.streams + 2), steps)

    def _model_words(self, steps: int) -> str:
        from cogmeta.verify_families import _training_words

        m = self.run.model
        return (f"model: {self.family} ({m.cell.upper()}, hidden_size {m.hidden_size}, {m.num_layers} layer(s)); "
                f"training: {_training_words(self.train, steps)}")

    def _task_words(self) -> str:
        task = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.run.task).items())
        return f"task {self.run.task.name} ({task})"

    def title(self) -> str:
        m = self.run.model
        return f"{self.family} {m.cell.upper()}-{m.hidden_size}, {self.run.task.name}"

    def to_dict(self) -> dict:
        return {"family": self.family, "config": self.run.to_dict()}


@dataclass(frozen=True)
class RL2Verify(_RegisteredVerify):
    """An rl2 run config (``cogmeta train --task bandit``, ``--preset rl2-*``) as verify checks it."""

    family: ClassVar[str] = "rl2"
    units: ClassVar[str] = "bandits"
    streams: ClassVar[int] = 30

    def _batch(self, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        return dict(self.run.task.sample(rng, size, np.float64)._asdict())

    def training_batches(self, steps: int) -> list[dict[str, np.ndarray]]:
        """``steps`` float64 batches of B episodes: ``{"probabilities" [B, k], "reward_uniform" [n, B, k],
        "action_uniform" [n, B]}`` (the fields of ``BanditBatch``)."""
        rng = _rng(self.train.seed, self.streams + 1)
        return [self._batch(rng, self.train.batch_size) for _ in range(steps)]

    def held_out(self, tasks: int) -> dict[str, np.ndarray]:
        return self._batch(_rng(self.train.seed, self.streams + 3), tasks)

    def header(self, steps: int) -> list[str]:
        rl = self.run.rl
        return [self._task_words(),
                f"{self._model_words(steps)}; A2C: discount {rl.discount:g}, value weight {rl.value_weight:g}, "
                f"entropy weight {rl.entropy_weight:g}" + ("" if rl.entropy_final is None else
                                                           f" -> {rl.entropy_final:g}"),
                "identical episodes and action draws: the reward and action uniforms come from numpy; both "
                "frameworks pull a = min{i : u < sum_j<=i pi_j}"]

    def evaluation_figures(self, weights, backend: str, tasks: int) -> dict[str, np.ndarray]:
        """The bandit evaluation (``cogmeta.bandit_evaluation.evaluate``, the agent's own draws) of the meta-learner
        in ``backend``: its mean expected total reward and its regret per trial on ``tasks`` held-out bandits."""
        from cogmeta.bandit_evaluation import evaluate

        score = evaluate(self.run, weights, backend, num_tasks=max(tasks, 2), baselines=False).scores[0]
        return {"mean reward": np.asarray(score.mean_reward), "regret per trial": score.regret_curve}


@dataclass(frozen=True)
class Seq2SeqVerify(_RegisteredVerify):
    """A seq2seq run config (``cogmeta train --task mutual_exclusivity``, ``--preset seq2seq-*``) as verify checks it."""

    family: ClassVar[str] = "seq2seq"
    units: ClassVar[str] = "queries"
    streams: ClassVar[int] = 40

    def _masks(self, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Dropout masks of every embedded sequence, ``[T, N, H]``: 1[u >= p] / (1 - p) (all ones at p = 0)."""
        m = self.run.model
        sources = {"query": "query_in", "decoder": "target_in"}
        if m.memory:
            sources.update(support_in="support_in", support_out="support_out")
        return {key: (rng.random(arrays[source].shape + (m.hidden_size,)) >= m.dropout) / (1.0 - m.dropout)
                for key, source in sources.items()}

    def _episode(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.run.task.encode(self.run.task.sample(rng)).as_dict()

    def training_batches(self, steps: int) -> list[dict]:
        """``steps`` episodes (one per update), each padded to the task's fixed lengths (one compiled shape in
        JAX; torch's packed sequences give the same numbers), with ``"masks"``: its dropout masks."""
        rng = _rng(self.train.seed, self.streams + 1)
        batches = []
        for _ in range(steps):
            arrays = self._episode(rng)
            batches.append({**arrays, "masks": self._masks(arrays, rng)})
        return batches

    def _episodes_for(self, tasks: int) -> int:
        """E = ceil(``tasks`` / Q), the held-out episodes that hold ``tasks`` queries (Q: one episode's queries)."""
        queries = self._episode(_rng(self.train.seed, self.streams + 3))["query_in"].shape[1]
        return max(1, math.ceil(tasks / queries))

    def held_out(self, tasks: int) -> dict[str, np.ndarray]:
        """ceil(``tasks`` / Q) held-out episodes (Q queries each), stacked: ``{field: [E, ...]}``."""
        rng = _rng(self.train.seed, self.streams + 3)
        episodes = [self._episode(rng) for _ in range(self._episodes_for(tasks))]
        return {name: np.stack([episode[name] for episode in episodes]) for name in episodes[0]}

    def header(self, steps: int) -> list[str]:
        m = self.run.model
        return [self._task_words(),
                f"{self._model_words(steps)}; dropout {m.dropout:g}, memory {m.memory}",
                "identical dropout: one numpy mask 1[u >= p] / (1 - p) per embedded sequence and episode, injected "
                "into both frameworks; held-out forward: eval-mode teacher-forced logits and attention maps"]

    def evaluation_figures(self, weights, backend: str, tasks: int) -> dict[str, np.ndarray]:
        """Exact-match accuracy of greedy decoding in ``backend`` (``meta_seq2seq.score``) on held-out episodes
        (ceil(``tasks`` / Q) of them; SCAN: the split's test set is scored by ``cogmeta evaluate``)."""
        from cogmeta.experiments.meta_seq2seq import Decoder, evaluation_episodes, score

        episodes = evaluation_episodes(self.run, self._episodes_for(tasks))
        accuracy = score(self.run.task, episodes, Decoder(self.run, weights, backend))
        return {"retrieval %": np.asarray(accuracy.retrieval), "generalization %": np.asarray(accuracy.generalization)}


def bounded_gru_verify(config: RunConfig):
    """A ``bounded_gru`` run config as ``cogmeta verify --family bounded-gru`` checks it (its task, H, beta,
    warm-up and train section; both frameworks start from verify's own weights, so ``bound.start_from`` plays
    no part)."""
    from cogmeta.verify_families import BoundedGRUVerify

    return BoundedGRUVerify(config.task, config.model.hidden_size, config.bound.beta, config.bound.warmup_steps,
                            config.train)


def amortized_verify(config: RunConfig):
    """An ``amortized`` run config (task ``urn_queries``) as ``cogmeta verify --family amortized`` checks it."""
    from cogmeta.verify_families import AmortizedVerify

    if config.task.name != "urn_queries":
        raise ValueError(f"verify checks amortized participants on the urn_queries task; a {config.task.name!r} run "
                         f"trains on the same model and loss: check it with --family amortized --queries noise")
    return AmortizedVerify(config.model.hidden_size, config.task.queries, config.train)


#: ``model.family`` -> the wrapper verify checks it with.
WRAPPERS = {"rl2": RL2Verify, "seq2seq": Seq2SeqVerify, "bounded_gru": bounded_gru_verify,
            "amortized": amortized_verify}


def registered_verify(config: RunConfig):
    """``config`` as verify checks it: wrapped when its family is registered here, else unchanged."""
    wrapper = WRAPPERS.get(config.model.family) if isinstance(config, RunConfig) else None
    return config if wrapper is None else wrapper(config)


__all__ = ["REGISTERED", "RL2Verify", "Seq2SeqVerify", "WRAPPERS", "amortized_verify", "bounded_gru_verify",
           "registered_verify"]
