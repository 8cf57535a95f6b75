"""Classic cognitive models for comparison with meta-learned ones (numpy only).

``probit``: online Bayesian probit regression (assumed-density filtering), the learner under every
paired-comparison baseline; ``paired_comparison``: the probit N(0, I) learner ``probit_learner`` (the paper's
"ideal observer", deprecated alias ``ideal_observer``: a probit learner with an isotropic Gaussian prior,
not the task's ideal observer), equal weighting (tallying), single
cue (take-the-best under a known ranking), best cue; ``exact_bayes``: the task's exact Bayes predictive
under each condition's own prior over the weights (importance sampling, registered in ``BASELINES`` as
``exact_bayes_<condition>``; ``exact_cache``: a disk cache of it); ``gini``: the Gini coefficient of cue weights.
"""

from cogmeta.baselines.exact_bayes import ExactPredictive, exact_predictive, exact_predictive_with_error
from cogmeta.baselines.gini import gini
from cogmeta.baselines.paired_comparison import (
    BASELINES,
    BaselineOutputs,
    best_cue,
    equal_weighting,
    ideal_observer,
    probit_learner,
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
    "probit_learner",
    "probit_update",
    "single_cue",
]
