"""cogmeta: meta-learned models of cognition, implemented twice (PyTorch and JAX/Flax).

This package is the framework-free core (numpy/scipy only): task specs with exact Bayes-optimal
references, the run configuration, canonical weights, the training driver, evaluation, figures and
the ``cogmeta`` command. The backends live in ``torch_impl`` and ``jax_impl`` and are imported only
when asked for (``cogmeta.backends.load_backend``).
"""

from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.tasks import (
    CoinTask,
    DriftingMeanTask,
    GaussianMeanTask,
    TaskBatch,
    make_task,
)

__version__ = "0.1.0"

__all__ = [
    "CoinTask",
    "DriftingMeanTask",
    "GaussianMeanTask",
    "JaxOptions",
    "ModelConfig",
    "RunConfig",
    "TaskBatch",
    "TorchOptions",
    "TrainConfig",
    "make_task",
]
