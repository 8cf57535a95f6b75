"""The PyTorch training step on fixed tensors, without host synchronisation; optionally a CUDA graph.

The eager step (:func:`torch_impl.trainer.make_train_step`) reads the loss and the gradient norm back to
Python at every update and branches on them, and launches its ~100 small kernels one by one from
Python. On a GPU, for the small recurrent models of cogmeta, both cost more than the maths. This module
runs the same update on *static* tensors (the same storage at every step), with no Python branch:

    lr_k    = torch_impl.optim.learning_rate(k) on the step counter k (a device tensor)
    loss, g = value and gradient of the mean NLL on static_observations
    g, n    = torch_impl.optim.clip_by_global_norm(g, clip)   (n = ||g||_2 pre-clip, torch's clip_grad_norm_)
    ok      = isfinite(loss) & isfinite(n) & alive
    p, (c, m, v) <- torch_impl.optim.adam_step(p, g, (c, m, v), lr_k, apply=ok)   (torch.optim.Adam's order;
              everything keeps its old value where not ok), written back into the same storage
    alive <- ok;  history[k mod R] = (loss, n, lr_k);  k <- k + 1

These are the functions of the eager step (``torch_impl.trainer.make_train_step``), so both compute the
same update bit for bit on the CPU; here every scalar (the count, the learning rate, the guard) stays
a device tensor.

A non-finite step is not applied, as in the eager trainer; unlike it the step cannot stop the loop
from inside, so ``alive`` freezes every later update too, and :meth:`StaticStep.run` reports the metrics
up to the first non-finite step (as ``jax_impl.engine`` does). On a CUDA device the step is captured
once with ``torch.cuda.graph`` and replayed (:attr:`StaticStep.graphed`); elsewhere the same function
runs eagerly, which is how it is tested on CPU against the eager trainer
(``tests/test_static_step.py``).

Capture needs warm-up iterations, which would change the state; they run on a snapshot that is copied
back (in place, so the captured addresses stay valid) before capture. The first replay is checked
against one eager step of a copy of the model (:meth:`StaticStep.verify_first_step`), so a capture
problem stops the run instead of training silently wrong.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from cogmeta.config import RunConfig
from torch_impl.model import MetaLearner, sequence_nll
from torch_impl.optim import (
    AdamState,
    adam_step,
    clip_by_global_norm,
    init_adam,
    learning_rate,
)
from torch_impl.samplers import model_inputs
from torch_impl.trainer import write_adam_state

#: Warm-up iterations before capture (torch's CUDA-graph notes use a few on a side stream).
WARMUP_STEPS = 3
#: Rows of the on-device metrics ring buffer; :meth:`StaticStep.run` reads it back at least this often.
HISTORY_ROWS = 1024


class StaticStep:
    """``config.train.steps`` updates of ``model`` from step ``start``, one :meth:`run` call per chunk.

    Args:
        model: the model, already on its device; its parameters are updated in place.
        config: the run config (train section: schedule, clipping, Adam constants, steps).
        start: the index of the first update (a resumed run starts later).
        exp_avg, exp_avg_sq: Adam moments per parameter name (a resumed run), else zeros.
        capture: capture a CUDA graph (default: when the model is on a CUDA device).
    """

    def __init__(self, model: MetaLearner, config: RunConfig, start: int = 0, exp_avg: dict | None = None,
                 exp_avg_sq: dict | None = None, capture: bool | None = None):
        train = config.train
        self.model, self.config = model, config
        self.params = dict(model.named_parameters())
        first = next(iter(self.params.values()))
        self.device, self.dtype = first.device, first.dtype
        shape = (config.task.sequence_length, train.batch_size, 1)
        self.observations = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.history = torch.full((HISTORY_ROWS, 3), math.nan, dtype=torch.float64, device=self.device)
        self.k = torch.tensor(start, dtype=torch.int64, device=self.device)
        self.count = torch.tensor(float(start), dtype=torch.float64, device=self.device)  # Adam steps taken
        self.alive = torch.tensor(True, device=self.device)
        # created here, not in the step: a host-to-device copy is not allowed while a CUDA graph is captured
        self.base_lr = torch.tensor(train.learning_rate, dtype=torch.float64, device=self.device)
        self.exp_avg = {n: _moment(exp_avg, n, p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: _moment(exp_avg_sq, n, p) for n, p in self.params.items()}
        self.opt_state = AdamState(self.count, self.exp_avg, self.exp_avg_sq)  # the same tensors, updated in place
        self.start = self.next_step = start
        self.graphed = (self.device.type == "cuda") if capture is None else capture
        if self.graphed and self.device.type != "cuda":
            raise ValueError(f"capture=True needs the model on a CUDA device, not {self.device}")
        self.graph = None

    # ------------------------------------------------------------------ the step (no host syncs)
    def _step(self) -> None:
        train = self.config.train
        for param in self.params.values():
            param.grad = None
        loss = sequence_nll(self.model, model_inputs(self.observations), self.observations)
        loss.backward()
        grads, norm = clip_by_global_norm({name: param.grad for name, param in self.params.items()}, train.clip_norm)
        lr = self._learning_rate()
        ok = torch.isfinite(loss) & torch.isfinite(norm) & self.alive
        new_params, new_state = adam_step(self.params, grads, self.opt_state, lr, train, apply=ok)
        write_adam_state(self.params, self.opt_state, new_params, new_state)
        with torch.no_grad():
            self.alive.copy_(ok)
            row = torch.stack([loss.detach().to(torch.float64), norm.detach().to(torch.float64), lr])
            self.history.index_copy_(0, torch.remainder(self.k, HISTORY_ROWS).view(1), row.view(1, 3))
            self.k.add_(1)

    def _learning_rate(self) -> torch.Tensor:
        """``torch_impl.optim.learning_rate`` at step k, in float64 on the device (no host value)."""
        return learning_rate(self.k, self.config.train, peak=self.base_lr)

    def _state(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.exp_avg.values(), *self.exp_avg_sq.values(), self.k, self.count,
                self.alive, self.history]

    def _capture(self) -> None:
        """Warm up on a side stream, restore the state in place, capture one step."""
        snapshot = [t.detach().clone() for t in self._state()]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for tensor, saved in zip(self._state(), snapshot):
                tensor.copy_(saved)
        for param in self.params.values():
            param.grad = None
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    # ------------------------------------------------------------------ host side
    def run(self, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one update per batch (``[T, B, 1]`` tensors, any device); return (loss, norm, lr) per update
        attempted, up to and including the first non-finite one (one host synchronisation per
        :data:`HISTORY_ROWS` updates)."""
        batches = list(batches)
        rows = []
        for begin in range(0, len(batches), HISTORY_ROWS):
            first = self.next_step
            for observations in batches[begin : begin + HISTORY_ROWS]:
                if self.next_step >= self.config.train.steps:
                    raise ValueError(f"all {self.config.train.steps} steps of the schedule are done")
                self.observations.copy_(observations)
                if self.graphed:
                    if self.graph is None:
                        self._capture()
                    self.graph.replay()
                else:
                    self._step()
                self.next_step += 1
            index = np.arange(first, self.next_step) % HISTORY_ROWS
            rows.append(self.history.cpu().numpy()[index])
        rows = np.concatenate(rows) if rows else np.zeros((0, 3))
        bad = ~(np.isfinite(rows[:, 0]) & np.isfinite(rows[:, 1]))
        attempted = int(np.argmax(bad)) + 1 if bad.any() else len(rows)
        return rows[:attempted, 0], rows[:attempted, 1], rows[:attempted, 2]

    @property
    def stopped(self) -> bool:
        """True once a non-finite step froze the run (one host synchronisation)."""
        return not bool(self.alive)

    def moments(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Adam's (exp_avg, exp_avg_sq) per parameter name, as numpy arrays (for checkpoints)."""
        as_numpy = lambda d: {n: t.detach().cpu().numpy().copy() for n, t in d.items()}  # noqa: E731
        return as_numpy(self.exp_avg), as_numpy(self.exp_avg_sq)

    def verify_first_step(self, observations: torch.Tensor, objective, rtol: float = 1e-4) -> float:
        """Run one update here and one eager update on a copy; raise if the parameters disagree.

        ``objective``: the run's ``torch_impl.backend.MetaLearnerObjective``, whose eager step
        (``torch_impl.trainer.make_train_step``) is the reference. Returns the largest relative parameter
        difference. Call it for the first update of a run (it *is* that update).
        """
        from torch_impl.trainer import make_train_step

        if self.next_step:
            raise ValueError("verify_first_step must be the first update of a fresh run")
        if any(bool(m.abs().max() > 0) for m in self.exp_avg.values()):
            raise ValueError("verify_first_step needs zero Adam moments (a fresh run)")
        twin = copy.deepcopy(self.model)
        make_train_step(objective, twin)(init_adam(twin.named_parameters()), observations.to(self.device), 0,
                                         objective.member(self.config.train.seed))
        self.run([observations])
        worst = 0.0
        for name, param in twin.named_parameters():
            ours = self.params[name].detach()
            scale = float(param.detach().abs().max()) + 1e-12
            worst = max(worst, float((ours - param.detach()).abs().max()) / scale)
        if not worst <= rtol:
            raise RuntimeError(f"the {'CUDA-graph' if self.graphed else 'static'} training step disagrees with the "
                               f"eager step by {worst:.2e} (relative) after one update; train with "
                               "cuda_graphs=False and please report this")
        return worst


def _moment(given: dict | None, name: str, param: torch.Tensor) -> torch.Tensor:
    if given is None or name not in given:
        return torch.zeros_like(param, memory_format=torch.contiguous_format).detach()
    return torch.as_tensor(np.asarray(given[name]), dtype=param.dtype).to(param.device).clone()


__all__ = ["HISTORY_ROWS", "StaticStep", "WARMUP_STEPS"]
