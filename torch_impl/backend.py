"""The PyTorch backend behind ``cogmeta train/evaluate --backend torch`` (see ``cogmeta.backends``)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.weights import validate_weights
from torch_impl.heads import predictive_params
from torch_impl.model import MetaLearner
from torch_impl.numerics import configure, resolve_device, resolve_dtype
from torch_impl.optim import AdamState, init_adam
from torch_impl.samplers import model_inputs
from torch_impl.training import make_run_steps, native_batch
from torch_impl.weights import load_canonical, model_to_canonical

FRAMEWORK = "torch"


def build_model(config: RunConfig, seed: int | None = None) -> MetaLearner:
    """A freshly initialised model (torch's default init), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed if seed is None else seed)
        return MetaLearner(config, resolve_dtype(config.train.dtype))


def init_weights(config: RunConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Canonical initial weights of a fresh model."""
    return model_to_canonical(build_model(config, seed))


class Trainer:
    """Stateful PyTorch training: ``nn.Module`` + the functional Adam of ``torch_impl.optim`` (its state in
    :attr:`opt_state`, an ``AdamState``), one Python step per update."""

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None):
        configure(config.torch.threads)
        self.config = config
        self.dtype = resolve_dtype(config.train.dtype)
        self.device = resolve_device(config.torch.device)
        self.model = build_model(config).to(self.device)
        self.opt_state = init_adam(self.model.named_parameters())
        self.step = 0
        self.chunk_size = config.train.log_every
        self.static = None  # torch_impl.static_step.StaticStep, built at the first run with cuda_graphs
        self._run = make_run_steps(self.model, config, self.chunk_size)
        if checkpoint is not None:
            self._restore(checkpoint)

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates; stops before applying one whose loss or gradient is non-finite."""
        if self.config.torch.cuda_graphs:
            return self._run_static(count)
        outputs = self._run(self.opt_state, self.step, count)
        finite = np.isfinite(outputs.loss) & np.isfinite(outputs.grad_norm)
        self.step += len(finite) if finite.all() else len(finite) - 1
        return StepMetrics(outputs.loss, outputs.grad_norm, outputs.learning_rate)

    def _run_static(self, count: int) -> StepMetrics:
        """``count`` updates of the captured CUDA-graph step; the first update of a fresh run is checked
        against the eager step (``StaticStep.verify_first_step``)."""
        from torch_impl.static_step import StaticStep

        if self.static is None:
            exp_avg, exp_avg_sq = self._moments()
            self.static = StaticStep(self.model, self.config, self.step, exp_avg, exp_avg_sq)
        count = min(count, self.config.train.steps - self.static.next_step)
        batches = [native_batch(self.config, self.step + i, self.dtype) for i in range(count)]
        losses, norms, rates = [], [], []
        if batches and self.static.next_step == 0:
            self.static.verify_first_step(batches.pop(0))
            losses, norms, rates = ([float(x)] for x in self.static.history[0].cpu().numpy())  # update 0 is row 0
        if batches and not self.static.stopped:
            more = self.static.run(batches)
            losses, norms, rates = losses + list(more[0]), norms + list(more[1]), rates + list(more[2])
        applied = len(losses) - int(self.static.stopped)
        self.step += applied
        return StepMetrics(np.asarray(losses), np.asarray(norms), np.asarray(rates))

    def _moments(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Adam's moments per parameter name, from the static step if it owns them."""
        if self.static is not None:
            return self.static.moments()
        as_numpy = lambda d: {n: t.detach().cpu().numpy().copy() for n, t in d.items()}  # noqa: E731
        return as_numpy(self.opt_state.exp_avg), as_numpy(self.opt_state.exp_avg_sq)

    def weights(self) -> dict[str, np.ndarray]:
        return model_to_canonical(self.model)

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """Predictive parameters ``[T, B]`` of the current model on numpy observations ``[T, B, 1]``."""
        with torch.no_grad():
            inputs = torch.as_tensor(np.asarray(observations), dtype=self.dtype).to(self.device)
            raw = self.model(model_inputs(inputs)).cpu()
        return predictive_params(self.config.task.family, raw)

    def checkpoint(self) -> Checkpoint:
        exp_avg, exp_avg_sq = self._moments()
        return Checkpoint(self.step, self.weights(), exp_avg, exp_avg_sq, FRAMEWORK)

    def _restore(self, checkpoint: Checkpoint) -> None:
        load_canonical(self.model, checkpoint.params)
        self.step = checkpoint.step
        if checkpoint.step == 0:
            return
        self.opt_state = _restored_adam(self.model, checkpoint)


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


def _restored_adam(model: MetaLearner, checkpoint: Checkpoint) -> AdamState:
    """Adam's state of a checkpoint (count = its step, moments by canonical name) on the model's device."""
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device

    def moments(saved):
        return {n: torch.as_tensor(np.asarray(saved[n])).to(p.dtype).to(p.device).clone().contiguous()
                for n, p in params.items()}

    count = torch.tensor(float(checkpoint.step), dtype=torch.float64, device=device)
    return AdamState(count, moments(checkpoint.exp_avg), moments(checkpoint.exp_avg_sq))
