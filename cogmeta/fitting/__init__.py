"""Fitting models of cognition to people: participant data (``participants``) and model selection
(``selection``: lapse fit, BIC, BIC weights, random-effects Bayesian model selection). Numpy/scipy only."""

from cogmeta.fitting.participants import (
    ParticipantData,
    ParticipantDataError,
    from_arrays,
    load_participants,
    write_participants,
)
from cogmeta.fitting.selection import (
    bic,
    bic_weights,
    chosen_probability,
    fit_lapse,
    log_likelihood,
    random_effects_bms,
)

__all__ = [
    "ParticipantData",
    "ParticipantDataError",
    "bic",
    "bic_weights",
    "chosen_probability",
    "fit_lapse",
    "from_arrays",
    "load_participants",
    "log_likelihood",
    "random_effects_bms",
    "write_participants",
]
