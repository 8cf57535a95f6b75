"""Classic cognitive models for comparison with meta-learned ones (numpy only).

``probit``: online Bayesian probit regression (assumed-density filtering), the learner under every
paired-comparison baseline; ``paired_comparison``: ideal observer, equal weighting (tallying), single
cue (take-the-best under a known ranking), best cue; ``gini``: the Gini coefficient of cue weights.
"""

from cogmeta.baselines.gini import gini
from cogmeta.baselines.paired_comparison import (
    BASELINES,
    BaselineOutputs,
    best_cue,
    equal_weighting,
    ideal_observer,
    single_cue,
)
from cogmeta.baselines.probit import ProbitFilter, probit_update

__all__ = [
    "BASELINES",
    "BaselineOutputs",
    "ProbitFilter",
    "best_cue",
    "equal_weighting",
    "gini",
    "ideal_observer",
    "probit_update",
    "single_cue",
]
