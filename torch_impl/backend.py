"""The PyTorch backend behind ``cogmeta train/evaluate --backend torch`` (see ``cogmeta.backends``)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from cogmeta.checkpoint import Checkpoint
from cogmeta.config import RunConfig
from cogmeta.training import StepMetrics
from cogmeta.weights import validate_weights
from torch_impl.heads import predictive_params
from torch_impl.model import MetaLearner
from torch_impl.numerics import configure, torch_dtype
from torch_impl.optim import make_optimizer
from torch_impl.samplers import model_inputs
from torch_impl.training import native_batch, train_step
from torch_impl.weights import load_canonical, model_to_canonical

FRAMEWORK = "torch"


def build_model(config: RunConfig, seed: int | None = None) -> MetaLearner:
    """A freshly initialised model (torch's default init), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed if seed is None else seed)
        return MetaLearner(config, torch_dtype(config.train.dtype))


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh model."""
    return model_to_canonical(build_model(config, seed))


class Trainer:
    """Stateful PyTorch training: ``nn.Module`` + ``torch.optim.Adam``, one Python step per update."""

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None):
        configure(config.torch.threads)
        self.config = config
        self.dtype = torch_dtype(config.train.dtype)
        self.model = build_model(config)
        self.optimizer = make_optimizer(self.model, config.train)
        self.step = 0
        self.chunk_size = config.train.log_every
        if checkpoint is not None:
            self._restore(checkpoint)

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates; stops before applying one whose loss or gradient is non-finite."""
        losses, norms, rates = [], [], []
        for _ in range(count):
            observations = native_batch(self.config, self.step, self.dtype)
            loss, norm, rate = train_step(self.model, self.optimizer, observations, self.step, self.config)
            losses.append(loss), norms.append(norm), rates.append(rate)
            if not (np.isfinite(loss) and np.isfinite(norm)):
                break
            self.step += 1
        return StepMetrics(np.asarray(losses), np.asarray(norms), np.asarray(rates))

    def weights(self) -> dict[str, np.ndarray]:
        return model_to_canonical(self.model)

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` of the current model on numpy observations ``[T, B, 1]``."""
        with torch.no_grad():
            raw = self.model(model_inputs(torch.as_tensor(np.asarray(observations), dtype=self.dtype)))
        return predictive_params(self.config.task.family, raw)

    def checkpoint(self) -> Checkpoint:
        names = dict(self.model.named_parameters())
        exp_avg, exp_avg_sq = {}, {}
        for name, param in names.items():
            state = self.optimizer.state.get(param, {})
            exp_avg[name] = _state_array(state, "exp_avg", param)
            exp_avg_sq[name] = _state_array(state, "exp_avg_sq", param)
        return Checkpoint(self.step, self.weights(), exp_avg, exp_avg_sq, FRAMEWORK)

    def _restore(self, checkpoint: Checkpoint) -> None:
        load_canonical(self.model, checkpoint.params)
        self.step = checkpoint.step
        if checkpoint.step == 0:
            return
        for name, param in self.model.named_parameters():
            self.optimizer.state[param] = {
                "step": torch.tensor(float(checkpoint.step)),
                "exp_avg": torch.as_tensor(checkpoint.exp_avg[name]).to(param.dtype).clone(),
                "exp_avg_sq": torch.as_tensor(checkpoint.exp_avg_sq[name]).to(param.dtype).clone(),
            }


def predict(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive parameters ``[T, B]`` (float64 numpy) of the model with ``weights`` on ``observations``."""
    configure(config.torch.threads)
    validate_weights(weights, config)
    model = build_model(config)
    load_canonical(model, weights)
    dtype = torch_dtype(config.train.dtype)
    with torch.no_grad():
        raw = model(model_inputs(torch.as_tensor(np.asarray(observations), dtype=dtype)))
    return predictive_params(config.task.family, raw)


def _state_array(state: dict, key: str, param: torch.Tensor) -> np.ndarray:
    if key in state:
        return state[key].detach().cpu().numpy().copy()
    return np.zeros(tuple(param.shape), dtype=param.detach().cpu().numpy().dtype)
