"""Data-parallel PyTorch training: one process per device, started by ``torchrun``.

PyTorch scales out with one process per device (``torchrun --nproc-per-node=N``); each process holds
a full replica, trains on its slice of the global batch and all-reduces (averages) the gradients.
cogmeta keeps the global batch identical to a single-process run: every rank draws the batch of step k
from the run's ``(seed, k)`` generator exactly as one process would and keeps its tasks
``[r B/W, (r + 1) B/W)`` (``cogmeta.distributed.shard_bounds``, along each batch leaf's task axis), so

    grad = (1/W) sum_r grad(mean loss of shard r) = grad(mean loss of the global batch)

up to summation order. Clipping and Adam then act on identical gradients in every rank.

The gradients are all-reduced after ``backward`` as one flat buffer (:func:`data_parallel_loss_and_grad`),
not by ``DistributedDataParallel``'s hooks during it: DDP expects one forward of its wrapper per backward,
while RL²'s agent is called once per trial; the explicit average works for every objective that declares
its batch's task axes and mirrors the JAX twin's ``pmean`` (docs/framework-differences.md).

Backends: ``gloo`` on CPU, ``nccl`` on CUDA (model on ``cuda:LOCAL_RANK``). Start-up and every
collective time out after ``timeout_s`` seconds, so a missing peer fails instead of hanging. Only
rank 0 writes files (:attr:`DataParallelTrainer.is_writer`).
"""

from __future__ import annotations

import datetime
import faulthandler
import gc
import math
import time
from typing import Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import (
    TORCHRUN_VARIABLES,
    RendezvousError,
    config_digest,
    launch_env,
    shard_bounds,
    take_shard,
)
from cogmeta.distributed import require_same_config as require_same_digests
from cogmeta.distributed import timeout_s as default_timeout
from cogmeta.held_out_check import HeldOutCheck
from torch_impl.backend import MetaLearnerObjective
from torch_impl.numerics import configure
from torch_impl.optim import AdamState
from torch_impl.trainer import Trainer, make_run_steps

#: Seconds the end-of-run teardown may take before the process is ended (see ``DataParallelTrainer.close``).
TEARDOWN_TIMEOUT_S = 60.0

#: Environment variables of a multi-process launch read by :func:`initialize_from_env` (torchrun's).
LAUNCH_VARIABLES = TORCHRUN_VARIABLES


def process_group_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: float | None = None) -> None:
    """Join a multi-process job: ``torch.distributed.init_process_group`` with a start-up timeout.

    Call it in every process; a no-op if this process has already joined. With no arguments the job
    is the one ``torchrun`` describes (``env://``: :data:`LAUNCH_VARIABLES`); elsewhere give the
    coordinator ``HOST:PORT`` (process 0's host, ``tcp://``), the number of processes and this process's
    index. The backend is :func:`process_group_backend`'s. A process that cannot reach the others fails
    after ``timeout_s`` seconds (default: ``cogmeta.distributed.timeout_s()``) instead of waiting
    forever; the same limit applies to every collective.

    Raises:
        RendezvousError: the other processes did not arrive in time, with what to check.
    """
    if (coordinator_address is None) != (num_processes is None) or (num_processes is None) != (process_id is None):
        raise ValueError("give all of coordinator_address, num_processes and process_id, or none of them "
                         "(the torchrun launch variables)")
    if dist.is_initialized():
        return
    if coordinator_address is None:
        env = launch_env()
        if env is None:
            raise ValueError(f"no torchrun launch ({', '.join(LAUNCH_VARIABLES)} unset): start with `torchrun "
                             f"--nproc-per-node=N ...` or give coordinator_address, num_processes and process_id")
        init_method, address = "env://", f"{env.master_addr}:{env.master_port}"
        num_processes, process_id = env.world_size, env.rank
    else:
        init_method, address = f"tcp://{coordinator_address}", coordinator_address
    timeout = default_timeout() if timeout_s is None else timeout_s
    try:
        dist.init_process_group(process_group_backend(), init_method=init_method, rank=process_id,
                                world_size=num_processes, timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, dist.DistError) as error:
        raise RendezvousError(
            f"rank {process_id} could not join the {num_processes}-process group at {address} "
            f"within {timeout:g} s: {error}. Check that every rank was started (same torchrun command on every node) "
            f"and can reach MASTER_ADDR; raise the limit with COGMETA_DISTRIBUTED_TIMEOUT=SECONDS."
        ) from error


def initialize_from_env(environ: Mapping[str, str] | None = None, timeout_s: float | None = None) -> bool:
    """Join the job that ``torchrun``'s :data:`LAUNCH_VARIABLES` describe; False when none is set.

    ``environ`` (default: ``os.environ``) is read with ``cogmeta.distributed.launch_env``, which raises a
    ValueError naming the missing variables of an incomplete launch.
    """
    env = launch_env(environ)
    if env is None:
        return False
    if environ is None:
        initialize(timeout_s=timeout_s)
    else:
        initialize(f"{env.master_addr}:{env.master_port}", env.world_size, env.rank, timeout_s)
    return True


def shutdown() -> None:
    """Leave the job (call once per process at the end, also after an error); a no-op outside one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def require_same_config(config: RunConfig) -> None:
    """Every process must train the same config; raises the same ValueError in every one otherwise.

    A no-op with one process (or outside a job).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, config_digest(config))
    require_same_digests(digests)


def data_parallel_loss_and_grad(objective, model: torch.nn.Module, first: int, last: int, device: torch.device) -> Callable:
    """``loss_and_grad(batch, step, member) -> (global mean loss, aux, gradient)`` of this rank's tasks
    ``first:last`` of the global batch (the ``loss_and_grad`` of ``torch_impl.trainer.make_train_step``).

    Every leaf of the batch is cut along its task axis (``objective.batch_axes``, ``cogmeta.distributed.take_shard``)
    and moved to ``device``; ``objective.loss`` and ``backward`` run on the shard; one all-reduce (sum, then / W:
    gloo has no average) turns loss and aux into the global means, a second one the gradients (one flat buffer).
    The loss is averaged *before* ``backward``, so every rank sees the same value and takes the same branch
    (a rank that skipped the gradient all-reduce alone would leave the others waiting).
    """
    params = dict(model.named_parameters())
    world = dist.get_world_size()

    def loss_and_grad(batch, step, member):
        for param in params.values():
            param.grad = None
        loss, aux = objective.loss(model, _to(take_shard(batch, objective.batch_axes, first, last), device), step, member)
        scalars = torch.stack([loss.detach(), *(value.detach().to(loss.dtype) for value in aux.values())])
        dist.all_reduce(scalars)
        scalars = scalars / world
        total, aux = scalars[0], dict(zip(aux, scalars[1:]))
        if not math.isfinite(float(total)):
            return total, aux, {name: None for name in params}
        loss.backward()
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params.values()])
        dist.all_reduce(flat)
        flat = flat / world
        grads = dict(zip(params, (piece.view_as(p) for piece, p in zip(flat.split([p.numel() for p in params.values()]),
                                                                         params.values()))))
        return total, aux, grads

    return loss_and_grad


class DataParallelTrainer(Trainer):
    """:class:`torch_impl.trainer.Trainer` as one rank of a ``torchrun`` job: same steps, same global batches.

    Every ``torchrun`` process builds it with the same config; it joins the job
    (:func:`initialize_from_env`) and checks the configs (:func:`require_same_config`). Only rank 0
    writes files (:attr:`is_writer`).

    Args:
        config: the run (identical in every process; checked).
        checkpoint: resume state (every process loads the same file).
        devices: the number of devices, one per process (default: torchrun's process count, which it must equal).
        timeout_s: seconds to wait for the other processes at start-up and in each collective.
        objective: what to train, built from ``config`` (default: the tutorial's ``MetaLearnerObjective``); it
            declares the task axis of each batch leaf (``batch_axes``), and its loss is a mean over tasks.
        until: the held-out check of ``train.until_kl`` (``Trainer``); every rank scores the whole held-out set
            (the parameters are the same on every rank), so that all stop at the same check.
    """

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None, *, devices: int | None = None,
                 timeout_s: float | None = None, objective: Callable[[RunConfig], object] = MetaLearnerObjective,
                 until: HeldOutCheck | None = None):
        env = launch_env()
        if env is None:
            raise ValueError("DataParallelTrainer needs a torchrun launch (RANK, WORLD_SIZE, MASTER_ADDR, ... unset); "
                             "start with `torchrun --nproc-per-node=N -m cogmeta train --backend torch ...`")
        if devices is not None and devices != env.world_size:
            raise ValueError(f"--devices {devices} does not match torchrun's {env.world_size} processes "
                             f"(--nproc-per-node x --nnodes); leave --devices out under torchrun")
        if config.torch.cuda_graphs or config.torch.device != "cpu":
            raise ValueError("torchrun training places each rank's model itself (cuda:LOCAL_RANK with nccl) and does "
                             "not capture CUDA graphs; leave --torch-device at cpu and --cuda-graphs off")
        self.env = env
        self.first, self.last = shard_bounds(config.train.batch_size, env.rank, env.world_size, "processes")
        configure(config.torch.threads)
        super().__init__(objective(config), checkpoint, steps_per_call=config.train.log_every, until=until)
        self.config = config
        initialize_from_env(timeout_s=timeout_s)
        require_same_config(config)
        self.device = torch.device(f"cuda:{env.local_rank}" if dist.get_backend() == "nccl" else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            self.model.to(self.device)  # in place: the same Parameter objects
            self.opt_state = AdamState(*(_to(x, self.device) for x in self.opt_state))
        # Every rank built or loaded the same parameters (same config, same seed, same checkpoint).
        loss_and_grad = data_parallel_loss_and_grad(self.objective, self.model, self.first, self.last, self.device)
        self._run = make_run_steps(self.objective, self.model, self.chunk_size, self.member, loss_and_grad)

    def close(self) -> None:
        """Leave the process group (the training driver calls this at the end, also after an error).

        The ranks meet first, so none destroys the group while another still waits in a collective;
        ``faulthandler``'s watchdog (a C thread that needs no GIL) ends the process with a traceback if
        teardown still blocks (gloo's teardown has deadlocked before: pytorch/pytorch#56297).
        """
        faulthandler.dump_traceback_later(TEARDOWN_TIMEOUT_S, exit=True)
        try:
            if dist.is_initialized():
                try:
                    dist.barrier()
                except RuntimeError:  # a peer already failed: still release what this rank holds
                    pass
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

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        if self.device.type == "cpu":
            return super().predictive(observations)
        self.model.cpu()
        try:
            return super().predictive(observations)
        finally:
            self.model.to(self.device)


def _to(value, device: torch.device):
    """A tensor, or a dict or NamedTuple of tensors, on ``device``."""
    if isinstance(value, dict):
        return {name: tensor.to(device) for name, tensor in value.items()}
    if isinstance(value, tuple):
        return type(value)(*(tensor.to(device) for tensor in value))
    return value.to(device)
