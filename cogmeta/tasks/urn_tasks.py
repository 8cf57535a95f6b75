"""The tasks of the ``amortized`` model family: what one simulated participant of learning to infer (Dasgupta,
Schulz, Tenenbaum & Gershman 2020) learns from, one two-urn query per update.

    urn_queries   fresh queries from one query distribution (the EU experiment's ID or UD set, the noise
                  blocks, the sample-size ladder); query k of a run with seed s is drawn by the backend's
                  generator of (s, 0) (``*_impl.amortized.sample_training_queries``)
    urn_study     participant ``participant`` of a sample-size population whose first seed is the run's seed:
                  it studies ``STUDIES[participant % 13]``, its block of noise then study queries (numpy,
                  ``default_rng([seed, participant])``) repeated ``epochs`` times, and its own seed (the
                  initial weights) is seed + participant, so that participant s of ``cogmeta experiment
                  learning-to-infer sample-size --seed S`` is the run of this task with seed S

A run draws its whole query stream from its seed and ``train.steps`` at the start, so its steps cannot change
on ``--resume`` (``cogmeta.families``: the family is ``fixed_length``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cogmeta._validation import require_choice, require_int
from cogmeta.tasks.urn import EU_ID, EU_UD, NOISE_BLOCKS, SIZE_LADDER, UrnQueries, UrnQueryDistribution

#: How the balls of a query are drawn: as the generative process states, or as the paper's code draws them
#: (``UrnQueryDistribution.swapped_draws``).
DRAWS = ("generative", "paper")
#: The query distributions of ``urn_queries`` by name.
QUERY_SETS: dict[str, UrnQueryDistribution] = {"ID": EU_ID, "UD": EU_UD, "noise": NOISE_BLOCKS, "ladder": SIZE_LADDER}


def check_draws(draws: str) -> bool:
    """Validate a :data:`DRAWS` name; returns ``UrnQueryDistribution.swapped_draws`` for it."""
    if draws not in DRAWS:
        raise ValueError(f"unknown draws {draws!r}; choose one of {', '.join(DRAWS)} "
                         "(generative: as the generative process states; paper: as the paper's code draws the balls)")
    return draws == "paper"


@dataclass(frozen=True)
class UrnQueryTask:
    """Fresh two-urn queries from one distribution, one per update.

    Attributes:
        queries: the distribution (:data:`QUERY_SETS`): "ID" (weak priors, diagnostic likelihoods; the EU
            experiment's base-rate-neglect condition), "UD" (the lists swapped; conservatism), "noise" (the
            sample-size experiment's noise blocks), "ladder" (N = 1..48 at p = .5).
        draws: "generative" or "paper" (:data:`DRAWS`).
    """

    name: ClassVar[str] = "urn_queries"

    queries: str = "ID"
    draws: str = "generative"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require_choice(owner, "queries", self.queries, tuple(QUERY_SETS))
        require_choice(owner, "draws", self.draws, DRAWS)

    def distribution(self) -> UrnQueryDistribution:
        """The query distribution with its balls drawn as :attr:`draws` says."""
        return dataclasses.replace(QUERY_SETS[self.queries], swapped_draws=check_draws(self.draws))

    def participant_seed(self, seed: int) -> int:
        """The seed of the initial weights of a run with seed ``seed``: the seed itself."""
        return int(seed)


@dataclass(frozen=True)
class UrnStudyTask:
    """One participant of the sample-size experiment: a classic study's queries after noise queries.

    Attributes:
        participant: index s in its population: it studies ``STUDIES[s % 13]`` (``cogmeta.tasks.urn_studies``).
        noise_queries: noise queries of its block (the paper: 100).
        study_queries: its study's queries, shown at prior .5, after the noise (the paper: 100; it is also
            tested on them).
        epochs: passes over the block in a fixed order (the paper: 50); a run has epochs x block updates.
        draws: "generative" or "paper" (:data:`DRAWS`).
    """

    name: ClassVar[str] = "urn_study"

    participant: int = 0
    noise_queries: int = 100
    study_queries: int = 100
    epochs: int = 50
    draws: str = "generative"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        require_int(owner, "participant", self.participant, 0, 10_000_000)
        for name in ("noise_queries", "study_queries", "epochs"):
            require_int(owner, name, getattr(self, name), 1, 10_000_000)
        require_choice(owner, "draws", self.draws, DRAWS)

    @property
    def steps(self) -> int:
        """Updates of one run: ``epochs`` passes over ``noise_queries + study_queries`` queries."""
        return self.epochs * (self.noise_queries + self.study_queries)

    @property
    def study(self) -> str:
        """The key of the participant's study."""
        from cogmeta.tasks.urn_studies import study_of

        return study_of(self.participant).key

    def participant_seed(self, seed: int) -> int:
        """The seed of the initial weights: participant s of the population whose first seed is ``seed``."""
        return int(seed) + self.participant

    def queries(self, seed: int) -> tuple[UrnQueries, UrnQueries]:
        """(training queries ``[steps]``: the block repeated ``epochs`` times; test queries ``[study_queries]``),
        numpy float64, drawn from ``default_rng([seed, participant])`` (``urn_studies.participant_queries``)."""
        from cogmeta.tasks.urn_studies import participant_queries

        block, test = participant_queries(self.participant, seed, self.noise_queries, self.study_queries,
                                          check_draws(self.draws))
        train = UrnQueries(*(np.tile(np.asarray(value), (self.epochs,) + (1,) * (np.ndim(value) - 1))
                             for value in block))
        return train, test


#: name -> task of the ``amortized`` family (``cogmeta.families``).
AMORTIZED_TASKS: dict[str, type] = {UrnQueryTask.name: UrnQueryTask, UrnStudyTask.name: UrnStudyTask}

__all__ = ["AMORTIZED_TASKS", "DRAWS", "QUERY_SETS", "UrnQueryTask", "UrnStudyTask", "check_draws"]
