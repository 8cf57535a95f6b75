"""Data-parallel PyTorch training: DistributedDataParallel in processes started by ``torchrun``.

PyTorch scales out with one process per device (``torchrun --nproc-per-node=N``); each process holds
a full replica, trains on its slice of the global batch and DDP all-reduces (averages) the gradients
during ``backward``. cogmeta keeps the global batch identical to a single-process run: every rank
draws the batch of step k from the run's ``(seed, k)`` generator exactly as one process would and keeps
its tasks ``[r B/W, (r + 1) B/W)`` (``cogmeta.distributed.shard_bounds``), so

    grad = (1/W) sum_r grad(mean NLL of shard r) = grad(mean NLL of the global batch)

up to summation order. Clipping and Adam then act on identical gradients in every rank.

Backends: ``gloo`` on CPU, ``nccl`` on CUDA (model on ``cuda:LOCAL_RANK``). Start-up and every
collective time out after ``timeout_s`` seconds, so a missing peer fails instead of hanging. Only
rank 0 writes files (:attr:`DistributedTrainer.is_writer`).
"""

from __future__ import annotations

import datetime
import faulthandler
import gc
import math
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.distributed import (
    LaunchEnv,
    RendezvousError,
    config_digest,
    launch_env,
    require_same_config,
    shard_bounds,
)
from cogmeta.distributed import timeout_s as default_timeout
from torch_impl.backend import Trainer
from torch_impl.heads import nll
from torch_impl.optim import AdamState, learning_rate
from torch_impl.samplers import model_inputs
from torch_impl.training import clip_and_adam_in_place, native_batch

#: Seconds the end-of-run teardown may take before the process is ended (see ``DistributedTrainer.close``).
TEARDOWN_TIMEOUT_S = 60.0


def process_group_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_process_group(env: LaunchEnv, timeout_s: float | None = None, backend: str | None = None) -> None:
    """Join the ``torchrun`` rendezvous (``env://``); a no-op if this process has already joined.

    Raises:
        RendezvousError: the other ranks did not arrive within ``timeout_s`` seconds (default:
            ``cogmeta.distributed.timeout_s()``), with what to check.
    """
    if dist.is_initialized():
        return
    timeout = default_timeout() if timeout_s is None else timeout_s
    try:
        dist.init_process_group(backend or process_group_backend(), init_method="env://", rank=env.rank,
                                world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, dist.DistError) as error:
        raise RendezvousError(
            f"rank {env.rank} could not join the {env.world_size}-process group at {env.master_addr}:{env.master_port} "
            f"within {timeout:g} s: {error}. Check that every rank was started (same torchrun command on every node) "
            f"and can reach MASTER_ADDR; raise the limit with COGMETA_DISTRIBUTED_TIMEOUT=SECONDS."
        ) from error


def shutdown() -> None:
    """Leave the process group (call once per process at the end, also after an error)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def require_same_config_across_ranks(config: RunConfig) -> None:
    """All ranks must train the same config; raises the same ValueError in every rank otherwise."""
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, config_digest(config))
    require_same_config(digests)


class DistributedTrainer(Trainer):
    """:class:`torch_impl.backend.Trainer` as one DDP rank: same steps, same global batches.

    Args:
        config: the run (identical in every rank; checked).
        checkpoint: resume state (every rank loads the same file).
        env: the launch environment (default: read from ``torchrun``'s variables).
        timeout_s: seconds to wait for the other ranks at start-up and in each collective.
    """

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None, *, env: LaunchEnv | None = None,
                 timeout_s: float | None = None):
        env = launch_env() if env is None else env
        if env is None:
            raise ValueError("DistributedTrainer needs a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR, ... unset); "
                             "start with `torchrun --nproc-per-node=N -m cogmeta train --backend torch ...`")
        if config.torch.cuda_graphs or config.torch.device != "cpu":
            raise ValueError("torchrun training places each rank's model itself (cuda:LOCAL_RANK with nccl) and does "
                             "not capture CUDA graphs; leave --torch-device at cpu and --cuda-graphs off")
        self.env = env
        self.first, self.last = shard_bounds(config.train.batch_size, env.rank, env.world_size, "processes")
        super().__init__(config, checkpoint)
        init_process_group(env, timeout_s)
        require_same_config_across_ranks(config)
        self.device = torch.device(f"cuda:{env.local_rank}" if dist.get_backend() == "nccl" else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            self.model.to(self.device)  # in place: the same Parameter objects
            self.opt_state = AdamState(*(_to(x, self.device) for x in self.opt_state))
        # DDP broadcasts rank 0's parameters; every rank built or loaded the same ones anyway.
        self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def close(self) -> None:
        """Leave the process group (the training driver calls this at the end, also after an error).

        Order matters (seen once in the first few gloo runs here: rank 1 hung forever at exit). Freeing
        the DDP wrapper from Python drops its reducer *with the GIL held*; if that is the process group's
        last reference, ``~ProcessGroupGloo`` joins a gloo worker thread that is still destroying the last
        collective's work object and needs the GIL for that: a deadlock (pytorch/pytorch#56297). So: meet
        the other ranks, drop the wrapper while the group registry still holds the group, give the gloo
        threads a moment with the GIL released, then destroy the group. ``faulthandler``'s watchdog (a C
        thread that needs no GIL) ends the process with a traceback if teardown still blocks.
        """
        faulthandler.dump_traceback_later(TEARDOWN_TIMEOUT_S, exit=True)
        try:
            if dist.is_initialized():
                try:
                    dist.barrier()
                except RuntimeError:  # a peer already failed: still release what this rank holds
                    pass
            self.ddp = None
            gc.collect()
            time.sleep(0.05)  # releases the GIL so gloo's threads can finish destroying finished work
            shutdown()
        finally:
            faulthandler.cancel_dump_traceback_later()

    @property
    def is_writer(self) -> bool:
        return self.env.is_writer

    @property
    def devices(self) -> int:
        return self.env.world_size

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates; all ranks stop together before a non-finite update."""
        losses, norms, rates = [], [], []
        for _ in range(count):
            observations = native_batch(self.config, self.step, self.dtype)[:, self.first:self.last].to(self.device)
            loss, norm, rate = self._train_step(observations)
            losses.append(loss), norms.append(norm), rates.append(rate)
            if not (np.isfinite(loss) and np.isfinite(norm)):
                break
            self.step += 1
        return StepMetrics(np.asarray(losses), np.asarray(norms), np.asarray(rates))

    def _train_step(self, observations: torch.Tensor) -> tuple[float, float, float]:
        """``torch_impl.training.train_step`` on this rank's tasks ``[T, B/W, 1]`` with DDP's gradient averaging.

        The loss is all-reduced *before* the finiteness test so that every rank takes the same branch
        (a rank that skipped ``backward`` alone would leave the others waiting in DDP's all-reduce).
        """
        train = self.config.train
        lr = float(learning_rate(self.step, train))
        for param in self.model.parameters():
            param.grad = None
        local = nll(self.model.family, self.ddp(model_inputs(observations)), observations).mean()
        total = local.detach().clone()
        dist.all_reduce(total)  # gloo has no AVG: sum, then divide
        value = float(total) / self.env.world_size
        if not math.isfinite(value):
            return value, math.nan, lr
        local.backward()
        norm = clip_and_adam_in_place(dict(self.model.named_parameters()), self.opt_state, lr, train)
        return value, norm, lr

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        if self.device.type == "cpu":
            return super().predictive(observations)
        self.model.cpu()
        try:
            return super().predictive(observations)
        finally:
            self.model.to(self.device)


def _to(value, device: torch.device):
    """A tensor, or a dict of tensors, on ``device``."""
    if isinstance(value, dict):
        return {name: tensor.to(device) for name, tensor in value.items()}
    return value.to(device)
