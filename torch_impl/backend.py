"""The tutorial workload in PyTorch: its model, its objective for the one trainer (``torch_impl.trainer``), prediction."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.distributed import OBSERVATION_TASK_AXIS
from cogmeta.held_out_check import HeldOutCheck
from cogmeta.weights import validate_weights
from torch_impl.heads import mean_kl, predictive_params
from torch_impl.model import MetaLearner, sequence_nll
from torch_impl.numerics import configure, resolve_device, resolve_dtype
from torch_impl.samplers import model_inputs, sample_batch, step_generator
from torch_impl.trainer import FRAMEWORK, Trainer, default_member  # noqa: F401  (FRAMEWORK: the Backend contract)
from torch_impl.weights import load_canonical, model_to_canonical


def build_model(config: RunConfig, seed: int | None = None) -> MetaLearner:
    """A freshly initialised model (torch's default init), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed if seed is None else seed)
        return MetaLearner(config, resolve_dtype(config.train.dtype))


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh model."""
    return model_to_canonical(build_model(config, seed))


def native_batch(config: RunConfig, step: int, dtype: torch.dtype) -> torch.Tensor:
    """Observations ``[T, B, 1]`` of training step ``step``, sampled with torch's RNG (``step_generator(seed, step)``)."""
    return sample_batch(config.task, step_generator(config.train.seed, step), config.train.batch_size, dtype).observations


class MetaLearnerObjective:
    """The tutorial workload (``torch_impl.trainer.Objective``): the mean NLL of :class:`MetaLearner` on the
    task's batches, batch k of run ``seed`` drawn from ``step_generator(seed, k)`` on the CPU, then moved to
    ``config.torch.device``."""

    batch_axes = OBSERVATION_TASK_AXIS  # the task axis of each batch leaf (data-parallel trainers split it)

    def __init__(self, config: RunConfig):
        self.config, self.train = config, config.train
        self.dtype = resolve_dtype(config.train.dtype)
        self.device = resolve_device(config.torch.device)

    def init(self, seed: int) -> MetaLearner:
        return build_model(self.config, seed)

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step: int, member: dict) -> torch.Tensor:
        """Observations ``[T, B, 1]`` of training step ``step`` of ``member``."""
        generator = step_generator(member["seed"], step)
        return sample_batch(self.config.task, generator, self.train.batch_size, self.dtype).observations.to(self.device)

    def loss(self, model: MetaLearner, observations: torch.Tensor, step: int, member: dict):
        return sequence_nll(model, model_inputs(observations), observations), {}

    def held_out_kl(self, model: MetaLearner, held_out: dict) -> torch.Tensor:
        """Mean exact KL(Bayes || model) of ``model`` on ``held_out = {"observations": [T, N, 1], "exact": {name:
        [T, N]}}`` (``torch_impl.trainer.held_out_arrays``; ``torch_impl.heads.mean_kl``), between the steps of
        ``Trainer.run_checked``."""
        with torch.no_grad():
            raw = model(model_inputs(held_out["observations"]))
            return mean_kl(self.config.task.family, raw, held_out["exact"])

    def predictive(self, model: MetaLearner, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` of ``model`` on numpy observations ``[T, B, 1]``."""
        with torch.no_grad():
            inputs = torch.as_tensor(np.asarray(observations), dtype=self.dtype).to(self.device)
            raw = model(model_inputs(inputs)).cpu()
        return predictive_params(self.config.task.family, raw)


class CudaGraphTrainer(Trainer):
    """The one trainer (``torch_impl.trainer.Trainer``) on :class:`MetaLearnerObjective` whose updates run as ``torch_impl.static_step.StaticStep``
    (``TorchOptions(cuda_graphs=True)``); the first update of a fresh run is checked against the eager step
    (``StaticStep.verify_first_step``)."""

    def __init__(self, objective, checkpoint=None, **kwargs):
        super().__init__(objective, checkpoint, **kwargs)
        self.config = objective.config
        self.static = None  # built at the first run (it captures the graph)

    def run(self, count: int):
        from torch_impl.static_step import StaticStep

        if self.static is None:
            exp_avg, exp_avg_sq = super()._moments()
            self.static = StaticStep(self.model, self.config, self.step, exp_avg, exp_avg_sq)
        count = min(count, self.config.train.steps - self.static.next_step)
        batches = [native_batch(self.config, self.step + i, self.objective.dtype) for i in range(count)]
        losses, norms, rates = [], [], []
        if batches and self.static.next_step == 0:
            self.static.verify_first_step(batches.pop(0), self.objective)
            losses, norms, rates = ([float(x)] for x in self.static.history[0].cpu().numpy())  # update 0 is row 0
        if batches and not self.static.stopped:
            more = self.static.run(batches)
            losses, norms, rates = losses + list(more[0]), norms + list(more[1]), rates + list(more[2])
        self.step += len(losses) - int(self.static.stopped)
        return StepMetrics(np.asarray(losses), np.asarray(norms), np.asarray(rates))

    def _moments(self):
        """Adam's moments per parameter name, from the static step once it owns them."""
        return super()._moments() if self.static is None else self.static.moments()


def make_tutorial_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :class:`MetaLearnerObjective` (``config.train.log_every`` steps per call), at
    ``config.torch.threads`` threads; with ``config.torch.cuda_graphs`` its CUDA-graph form
    (:class:`CudaGraphTrainer`)."""
    configure(config.torch.threads)
    objective = MetaLearnerObjective(config)
    kind = CudaGraphTrainer if config.torch.cuda_graphs else Trainer
    return kind(objective, checkpoint, steps_per_call=config.train.log_every, device=objective.device,
                until=HeldOutCheck.of(config))


def predict(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``."""
    configure(config.torch.threads)
    validate_weights(weights, config)
    model = build_model(config)
    load_canonical(model, weights)
    dtype = resolve_dtype(config.train.dtype)
    with torch.no_grad():
        raw = model(model_inputs(torch.as_tensor(np.asarray(observations), dtype=dtype)))
    return predictive_params(config.task.family, raw)
