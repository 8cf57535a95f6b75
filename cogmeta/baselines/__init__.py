"""Classic cognitive models for comparison with meta-learned ones (numpy only).

``probit``: online Bayesian probit regression (assumed-density filtering), the learner under every
paired-comparison baseline; ``paired_comparison``: the paper's "ideal observer" (a probit learner with an
isotropic Gaussian prior N(0, I), not the task's ideal observer), equal weighting (tallying), single
cue (take-the-best under a known ranking), best cue; ``exact_bayes``: the task's exact Bayes predictive
under each condition's own prior over the weights (importance sampling, registered in ``BASELINES`` as
``exact_bayes_<condition>``); ``gini``: the Gini coefficient of cue weights.
"""

from cogmeta.baselines.exact_bayes import ExactPredictive, exact_predictive, exact_predictive_with_error
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
    "ExactPredictive",
    "ProbitFilter",
    "best_cue",
    "equal_weighting",
    "exact_predictive",
    "exact_predictive_with_error",
    "gini",
    "ideal_observer",
    "probit_update",
    "single_cue",
]
