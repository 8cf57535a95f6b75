"""Meta-seq2seq episodes (Lake 2019): mutual exclusivity, SCAN add-jump and SCAN around-right.

An episode is a support set (command -> actions pairs stored in the model's memory) and a query set
(pairs the model must produce); the support pairs are also appended to the queries (the "support
loss" of the paper), and ``query_in_support`` marks them so that accuracy splits into *retrieval*
(support items) and *generalization* (novel queries).

    mutual exclusivity (Exp. 1): dax, lug, wif, zup -> RED, YELLOW, GREEN, BLUE by a fresh random bijection;
        support = 3 of the 4 single-word pairs, the 4th word withheld; query = 20 distinct concatenations of
        2..6 words, translated word by word (so a withheld word must map to the unused colour).
    SCAN add-jump (Exp. 2): the 4 primitive words and their 4 actions are re-paired by a random permutation
        per episode; 20 support + 20 query commands drawn from all 20,910 SCAN commands (Lake's
        ``tasks_train_all``). Test: support = the 4 primitives with their true meanings, queries = the 7,706
        add-jump test commands.
    SCAN around-right (Exp. 4): the same with the two direction words re-paired with LTURN/RTURN, drawn from
        the 15,225 around-right training commands (none contains "around right"); test support = turn left,
        turn right, queries = the 4,476 around-right test commands (those with "around right" but not
        "turn around right", as SCAN's ``tasks_test_template_around_right.txt``; see :func:`scan.split`).

Tabu list (:class:`EpisodeStream`): a task's validation episodes are drawn first and no training episode
may share a validation episode's :meth:`tabu_key`. For add-jump, as in Lake's ``scan_prim_permutation``,
the validation episodes use the true meanings (walk -> WALK, ...) and the key is the primitive mapping, so
meta-training never sees the test episode's mapping (1 of the 24 permutations). ME and around-right key
on the whole episode (see :meth:`_EpisodeTask.tabu_key`).

Arrays (:class:`EpisodeArrays`) are time-major and padded to the task's fixed lengths, so that every
episode of a task has the same shapes (one compilation in JAX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from cogmeta._validation import require_choice, require_int
from cogmeta.tasks import scan
from cogmeta.vocabulary import (
    EOS_ID,
    PAD_ID,
    SOS_ID,
    Vocabulary,
    VocabularyError,
    pad_time_major,
)

Pair = tuple[tuple[str, ...], tuple[str, ...]]

PSEUDOWORDS = ("dax", "lug", "wif", "zup")
COLOURS = ("RED", "YELLOW", "GREEN", "BLUE")


@dataclass(frozen=True)
class Episode:
    """Support and query pairs (tuples of words); ``query_in_support[i]`` is True for appended supports.

    ``mapping``: the episode's meaning assignment as sorted (word, action) pairs, where the task has one
    (SCAN episodes); empty otherwise.
    """

    support: tuple[Pair, ...]
    query: tuple[Pair, ...]
    query_in_support: tuple[bool, ...]
    mapping: tuple[tuple[str, str], ...] = ()

    def key(self) -> tuple:
        """Order-free identity of the pairs (the default tabu key, :meth:`_EpisodeTask.tabu_key`)."""
        return (tuple(sorted(self.support)), tuple(sorted(self.query)))


@dataclass(frozen=True)
class EpisodeArrays:
    """One episode as padded int32 arrays (PAD = 0; every sequence ends with EOS).

    support_in  [Tin, S]   support_in_len  [S]     support_out [Tout, S]  support_out_len [S]
    query_in    [Tin, Q]   query_in_len    [Q]
    target_in   [Tout, Q]  SOS + actions (teacher forcing inputs)
    target_out  [Tout, Q]  actions + EOS, PAD after (the loss ignores PAD)
    in_support  [Q] bool
    """

    support_in: np.ndarray
    support_in_len: np.ndarray
    support_out: np.ndarray
    support_out_len: np.ndarray
    query_in: np.ndarray
    query_in_len: np.ndarray
    target_in: np.ndarray
    target_out: np.ndarray
    in_support: np.ndarray

    FIELDS: ClassVar[tuple[str, ...]] = (
        "support_in", "support_in_len", "support_out", "support_out_len",
        "query_in", "query_in_len", "target_in", "target_out", "in_support",
    )

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def trimmed(self) -> "EpisodeArrays":
        """Cut the padding to the longest sequence of this episode (same results, less work in torch)."""
        tin = int(max(self.support_in_len.max(initial=1), self.query_in_len.max(initial=1)))
        tout = int(max(self.support_out_len.max(initial=1), (self.target_out != PAD_ID).sum(0).max(initial=1)))
        return EpisodeArrays(
            self.support_in[:tin], self.support_in_len, self.support_out[:tout], self.support_out_len,
            self.query_in[:tin], self.query_in_len, self.target_in[:tout], self.target_out[:tout], self.in_support,
        )


def stack_episodes(episodes: Sequence[EpisodeArrays]) -> dict[str, np.ndarray]:
    """``{field: [K, ...]}`` for K same-shaped episodes (JAX scans over the leading axis)."""
    return {name: np.stack([getattr(e, name) for e in episodes]) for name in EpisodeArrays.FIELDS}


class _EpisodeTask:
    """Shared encoding of the episode tasks below (subclasses are frozen dataclasses)."""

    name: ClassVar[str]
    commands: ClassVar[Vocabulary]
    actions: ClassVar[Vocabulary]
    max_command_words: ClassVar[int]
    max_action_words: ClassVar[int]

    @property
    def input_length(self) -> int:
        """Padded command length (words + EOS)."""
        return self.max_command_words + 1

    @property
    def output_length(self) -> int:
        """Padded action length (words + EOS); also the greedy decoder's number of steps."""
        return self.max_action_words + 1

    def encode_pairs(self, pairs: Sequence[Pair]) -> tuple[np.ndarray, ...]:
        """``(in [Tin, N], in_len, out [Tout, N], out_len)`` with errors naming bad words or lengths."""
        ins = [self.commands.encode(c, self.max_command_words) for c, _ in pairs]
        outs = [self.actions.encode(a, self.max_action_words) for _, a in pairs]
        return (*pad_time_major(ins, self.input_length), *pad_time_major(outs, self.output_length))

    def encode(self, episode: Episode) -> EpisodeArrays:
        s_in, s_in_len, s_out, s_out_len = self.encode_pairs(episode.support)
        q_in, q_in_len, q_out, _ = self.encode_pairs(episode.query)
        target_in = np.full_like(q_out, PAD_ID)
        target_in[0] = SOS_ID
        target_in[1:] = np.where(q_out[:-1] == EOS_ID, PAD_ID, q_out[:-1])
        return EpisodeArrays(s_in, s_in_len, s_out, s_out_len, q_in, q_in_len, target_in, q_out,
                             np.asarray(episode.query_in_support, dtype=bool))

    def validation_sample(self, rng: np.random.Generator) -> Episode:
        """One validation episode (its :meth:`tabu_key` is kept out of training); default: a training sample."""
        return self.sample(rng)

    def tabu_key(self, episode: Episode) -> tuple:
        """What a training episode must not share with a validation episode; default: the whole episode."""
        return episode.key()

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class MutualExclusivityTask(_EpisodeTask):
    """Exp. 1 of Lake (2019); sizes default to the paper's."""

    num_query: int = 20
    min_length: int = 2
    max_length: int = 6
    validation_episodes: int = 5

    name: ClassVar[str] = "mutual_exclusivity"
    commands: ClassVar[Vocabulary] = Vocabulary("command", PSEUDOWORDS)
    actions: ClassVar[Vocabulary] = Vocabulary("action", COLOURS)
    num_support: ClassVar[int] = len(PSEUDOWORDS) - 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require_int(owner, "num_query", self.num_query, 1, 500)
        require_int(owner, "min_length", self.min_length, 1, 6)
        require_int(owner, "max_length", self.max_length, self.min_length, 50)
        require_int(owner, "validation_episodes", self.validation_episodes, 0, 1000)
        possible = sum(len(PSEUDOWORDS) ** n for n in range(self.min_length, self.max_length + 1))
        if self.num_query > possible:
            raise ValueError(f"{owner}.num_query={self.num_query} exceeds the {possible} distinct concatenations "
                             f"of length {self.min_length}..{self.max_length}")

    @property
    def max_command_words(self) -> int:  # type: ignore[override]
        return self.max_length

    @property
    def max_action_words(self) -> int:  # type: ignore[override]
        return self.max_length

    def sample(self, rng: np.random.Generator) -> Episode:
        words = [PSEUDOWORDS[i] for i in rng.permutation(len(PSEUDOWORDS))]
        colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))]
        meaning = dict(zip(words, colours))
        support = tuple(((w,), (meaning[w],)) for w in words[:-1])
        queries: dict[tuple, tuple] = {}
        while len(queries) < self.num_query:
            length = int(rng.integers(self.min_length, self.max_length + 1))
            command = tuple(words[i] for i in rng.integers(0, len(words), length))
            queries.setdefault(command, tuple(meaning[w] for w in command))
        query = tuple(queries.items()) + support
        return Episode(support, query, (False,) * self.num_query + (True,) * len(support))


@dataclass(frozen=True)
class ScanEpisodeTask(_EpisodeTask):
    """Exp. 2 (``split="add_jump"``) and Exp. 4 (``split="around_right"``) of Lake (2019)."""

    split: str = "add_jump"
    num_support: int = 20
    num_query: int = 20
    validation_episodes: int = 5

    name: ClassVar[str] = "scan"
    commands: ClassVar[Vocabulary] = scan.COMMANDS
    actions: ClassVar[Vocabulary] = scan.ACTIONS
    max_command_words: ClassVar[int] = scan.MAX_COMMAND_WORDS
    max_action_words: ClassVar[int] = scan.MAX_ACTION_WORDS

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require_choice(owner, "split", self.split, scan.SPLITS)
        require_int(owner, "num_support", self.num_support, 0, 1000)
        require_int(owner, "num_query", self.num_query, 1, 1000)
        require_int(owner, "validation_episodes", self.validation_episodes, 0, 1000)

    @property
    def _permuted(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(words, actions) whose pairing is shuffled per episode."""
        if self.split == "add_jump":
            return scan.PRIMITIVES, scan.PRIMITIVE_ACTIONS
        return scan.DIRECTIONS, scan.TURN_ACTIONS

    def pool(self) -> tuple[str, ...]:
        """Training commands: all of SCAN for add-jump, the around-right training split otherwise."""
        return scan.all_commands() if self.split == "add_jump" else scan.split("around_right")[0]

    def _interpret(self, command: str, mapping: dict[str, str]) -> Pair:
        words = tuple(command.split())
        if self.split == "add_jump":
            return words, scan.interpret(words, meaning=mapping)
        return words, scan.interpret(words, turns=mapping)

    def sample(self, rng: np.random.Generator, shuffle: bool = True) -> Episode:
        """A training episode; ``shuffle=False`` keeps the true meanings (Lake's validation episodes)."""
        words, actions = self._permuted
        order = rng.permutation(len(actions)) if shuffle else range(len(actions))
        mapping = dict(zip(words, (actions[i] for i in order)))
        pool = self.pool()
        chosen = rng.choice(len(pool), self.num_query + self.num_support, replace=False)
        pairs = [self._interpret(pool[i], mapping) for i in chosen]
        query, support = tuple(pairs[: self.num_query]), tuple(pairs[self.num_query :])
        return Episode(support, query + support, (False,) * len(query) + (True,) * len(support),
                       tuple(sorted(mapping.items())))

    def validation_sample(self, rng: np.random.Generator) -> Episode:
        """add-jump: an episode with the true meanings (Lake: ``shuffle=False``); around-right: a training sample."""
        return self.sample(rng, shuffle=self.split != "add_jump")

    def tabu_key(self, episode: Episode) -> tuple:
        """add-jump: the primitive mapping (Lake's identifier), so that training never uses the true one.

        around-right keys on the whole episode: with only left/right permuted (the paper's two extra
        abstract directions are not ported), keying on the mapping would leave a single training mapping.
        """
        return episode.mapping if self.split == "add_jump" else episode.key()

    def test_episode(self) -> Episode:
        """The paper's test: true primitive meanings in the support, every held-out command as a query."""
        test = scan.split(self.split)[1]
        if self.split == "add_jump":
            support = tuple(((w,), (a,)) for w, a in zip(scan.PRIMITIVES, scan.PRIMITIVE_ACTIONS))
        else:
            support = tuple((("turn", d), (a,)) for d, a in zip(scan.DIRECTIONS, scan.TURN_ACTIONS))
        query = tuple((tuple(c.split()), scan.interpret(c)) for c in test)
        words, actions = self._permuted
        return Episode(support, query, (False,) * len(query), tuple(sorted(zip(words, actions))))


EPISODE_TASKS: dict[str, type] = {MutualExclusivityTask.name: MutualExclusivityTask, ScanEpisodeTask.name: ScanEpisodeTask}


def make_episode_task(name: str, **params) -> _EpisodeTask:
    if name not in EPISODE_TASKS:
        raise ValueError(f"unknown episode task {name!r}; choose one of {', '.join(EPISODE_TASKS)}")
    return EPISODE_TASKS[name](**params)


def episode_task_from_dict(data: dict) -> _EpisodeTask:
    data = dict(data)
    return make_episode_task(data.pop("name"), **data)


@dataclass
class EpisodeStream:
    """Training episodes of ``task`` from ``seed``; none shares a ``validation`` episode's tabu key.

    add-jump: the validation episodes have the true meanings and the key is the mapping, so training
    never draws the identity mapping (the test episode's); other tasks skip exact repeats of them.
    """

    task: _EpisodeTask
    seed: int
    validation: list[Episode] = field(default_factory=list)

    def __post_init__(self) -> None:
        # validation episodes come from their own stream so that they do not depend on the training seed
        val_rng = np.random.default_rng([self.seed, 1])
        self.validation = [self.task.validation_sample(val_rng) for _ in range(self.task.validation_episodes)]
        self._tabu = {self.task.tabu_key(e) for e in self.validation}
        self._rng = np.random.default_rng([self.seed, 0])

    def next(self) -> Episode:
        while True:
            episode = self.task.sample(self._rng)
            if self.task.tabu_key(episode) not in self._tabu:
                return episode

    def skip(self, count: int) -> None:
        """Draw and drop ``count`` episodes (a resumed run continues the stream where it stopped)."""
        for _ in range(count):
            self.next()


def check_command(task: _EpisodeTask, command: str) -> tuple[str, ...]:
    """Split ``command`` into words and validate them against the task (unknown, empty, too long)."""
    words = tuple(command.split())
    if not words:
        raise VocabularyError("empty command: give at least one word")
    task.commands.encode(words, task.max_command_words)
    return words
