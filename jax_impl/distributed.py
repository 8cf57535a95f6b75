"""Data-parallel JAX training over a device mesh: the task-batch axis for one run, the seed axis for sweeps.

JAX scales out by *sharding* arrays over a ``jax.sharding.Mesh`` of devices and letting one jitted
program run on all of them (SPMD); there is one Python process per host, not per device.

Task-batch axis (one run, several devices). Parameters and the Adam state are replicated
(``P()``); every leaf of a step's batch is split along its task axis, which the objective declares
(``batch_axes``: the tutorial's observations ``[T, B, 1]`` along B, ``P(None, "tasks")``; RL²'s
``BanditBatch`` along its episodes), the same global batch a single device would have drawn (sampled from
the step's key, then sliced). The per-device code is a ``jax.shard_map`` that averages the per-device
losses, metrics and gradients:

    L = pmean_d( mean_{i in shard d} loss_i ),   g = pmean_d( grad of the shard-d mean )

(= the single-device loss and gradient for equal shards): one all-reduce per step of one flat buffer
holding loss, metrics and gradients, as the PyTorch twin's ranks do. Clipping and Adam then run
replicated, so every device holds the same parameters.

Seed axis (independent runs, no collectives). :func:`vmap_over_seeds` vmaps any function over inputs whose
leading axis is sharded ``P("seeds")``, inside a ``shard_map`` so that each device runs its own seeds as a
program of its own (the sweep engine does the same with its members, ``jax_impl.engine``).

Several hosts: call :func:`initialize` (``jax.distributed.initialize``) or :func:`initialize_from_env` first in every
process; ``jax.devices()`` then lists every host's devices and the same code runs unchanged. Arrays are
placed with ``jax.make_array_from_callback`` (works when devices are not addressable from this host)
and read back from this host's replica.

APIs: ``jax.make_mesh``, ``NamedSharding``, ``jax.shard_map`` (no ``pmap``, no
``device_put_sharded``, no ``with mesh:``; see docs/scale-out.md).
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.distributed import config_digest, require_divisible
from cogmeta.distributed import require_same_config as require_same_digests
from cogmeta.distributed import timeout_s as default_timeout
from cogmeta.held_out_check import HeldOutCheck
from jax_impl.backend import MetaLearnerObjective
from jax_impl.numerics import configure
from jax_impl.program_keys import BATCH_AXIS, make_device_mesh, task_mesh  # noqa: F401 (this module's API)
from jax_impl.samplers import draws_in_loops
from jax_impl.trainer import FRAMEWORK, Trainer, make_run_steps
from jax_impl.weights import state_to_canonical

#: Mesh axis of independent runs (seeds or hyperparameters of a sweep).
SEED_AXIS = "seeds"


#: Environment variables of a multi-host launch read by :func:`initialize_from_env` (the first is JAX's own).
LAUNCH_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: float | None = None) -> None:
    """Join a multi-host job: ``jax.distributed.initialize`` with a start-up timeout.

    Call it in every process before any other JAX call; a no-op if this process has already joined.
    On SLURM and other detected clusters all arguments may be omitted; elsewhere give the coordinator
    ``HOST:PORT`` (process 0's host), the number of processes and this process's index. A process that
    cannot reach the others fails after ``timeout_s`` seconds (default: ``cogmeta.distributed.timeout_s()``)
    instead of waiting forever.
    """
    if (coordinator_address is None) != (num_processes is None) or (num_processes is None) != (process_id is None):
        raise ValueError("give all of coordinator_address, num_processes and process_id, or none of them "
                         "(automatic cluster detection, e.g. under SLURM)")
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=max(1, int(default_timeout() if timeout_s is None else timeout_s)))


def initialize_from_env(environ: Mapping[str, str] | None = None, timeout_s: float | None = None) -> bool:
    """Join the multi-host job that :data:`LAUNCH_VARIABLES` describe; False when none is set.

    ``JAX_COORDINATOR_ADDRESS=HOST:PORT`` (process 0's host), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` must be set together, in every process, before JAX runs anything.
    """
    environ = os.environ if environ is None else environ
    present = [name for name in LAUNCH_VARIABLES if environ.get(name, "") != ""]
    if not present:
        return False
    if len(present) < len(LAUNCH_VARIABLES):
        missing = [name for name in LAUNCH_VARIABLES if name not in present]
        raise ValueError(f"incomplete multi-host JAX environment: {', '.join(present)} set but {', '.join(missing)} "
                         f"missing. Set all three in every process (docs/scale-out.md).")
    if jax.distributed.is_initialized():
        return True
    try:
        count, index = int(environ["JAX_NUM_PROCESSES"]), int(environ["JAX_PROCESS_ID"])
    except ValueError:
        raise ValueError("JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers, got "
                         f"{environ['JAX_NUM_PROCESSES']!r} and {environ['JAX_PROCESS_ID']!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"JAX_PROCESS_ID={index} must lie in [0, JAX_NUM_PROCESSES={count})")
    initialize(environ["JAX_COORDINATOR_ADDRESS"], count, index, timeout_s)
    return True


def shutdown() -> None:
    """Leave the job (call once per process at the end, also after an error); a no-op outside one."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def require_same_config(config: RunConfig) -> None:
    """Every process must train the same config; raises the same ValueError in every one otherwise.

    A no-op with one process.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(bytes.fromhex(config_digest(config)), dtype=np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(digest))
    require_same_digests([bytes(row).hex() for row in gathered.reshape(jax.process_count(), -1)])


def seed_mesh(devices: int) -> Mesh:
    """Mesh for independent runs stacked along a leading seed axis (axis :data:`SEED_AXIS`).

    Auto axis: XLA propagates the seed split from the inputs through any per-seed program (with an
    Explicit axis, tracing a sweep member that draws its batches from a vmapped seed failed with
    "Resource axis: seeds ... not found in mesh").
    """
    return make_device_mesh(devices, SEED_AXIS, AxisType.Auto)


def place(tree, sharding: NamedSharding):
    """Every leaf of ``tree`` as a global array with ``sharding`` (leaves must agree across hosts)."""

    def put(leaf):
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def local(tree):
    """This host's copy of replicated arrays (``np.asarray`` refuses arrays spanning other hosts)."""

    def read(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return leaf.addressable_data(0)
        return leaf

    return jax.tree.map(read, tree)


def task_specs(axes, axis: str = BATCH_AXIS):
    """The ``PartitionSpec`` of every batch leaf whose task axis is the matching int of ``axes`` (an int or a
    NamedTuple of ints, the objective's ``batch_axes``): ``P(None, ..., axis)`` with the task axis at that place."""
    return jax.tree.map(lambda index: P(*([None] * index), axis), axes)


def data_parallel_loss_and_grad(objective, mesh: Mesh, axis: str = BATCH_AXIS) -> Callable:
    """``(params, batch, step, member) -> ((global mean loss, aux), its gradient)`` with the batch's tasks split over
    ``mesh`` (the ``loss_and_grad`` of ``jax_impl.trainer.make_train_step``).

    Each device evaluates ``objective.loss`` and its gradient on its ``B / devices`` tasks (every leaf cut along
    its task axis, ``objective.batch_axes``); ``pmean`` of one flat buffer (one collective per step) turns loss,
    aux and gradient into the global mean, replicated (``P()``) on every device. The objective's loss and aux
    must be means over the task axis (the tutorial's NLL and RL²'s A2C loss are), so that equal shards average
    to the single-device values.
    """
    local_loss_and_grad = jax.value_and_grad(objective.loss, has_aux=True)

    def average(params, batch, step, member):
        # One all-reduce of one flat buffer, as the PyTorch twin does: XLA:CPU runs a pmean per leaf as its own
        # rendezvous of the devices (measured: RL²'s 12 leaves took 3.2 ms of a 8.6 ms step, one buffer ~0.3 ms).
        flat, unravel = ravel_pytree(local_loss_and_grad(params, batch, step, member))
        return unravel(jax.lax.pmean(flat, axis))

    specs = task_specs(objective.batch_axes, axis)
    # check_vma=False: the recurrent scan starts from a zero (device-invariant) state and produces
    # per-device values, which the varying-axis type check rejects. With it off, the gradient is
    # taken per device (no collective is differentiated) and averaged explicitly, as the PyTorch twin does.
    per_device = jax.shard_map(average, mesh=mesh, in_specs=(P(), specs, P(), P()), out_specs=(P(), P()),
                               check_vma=False)
    split = jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))

    def loss_and_grad(params, batch, step, member):
        # make_mesh gives Explicit axes: the batch drawn in the step is typed as replicated, and
        # shard_map wants its declared split, so slice it explicitly (no communication needed).
        return per_device(params, jax.reshard(batch, split), step, member)

    return loss_and_grad


def data_parallel_check(objective, mesh: Mesh, axis: str = BATCH_AXIS) -> Callable:
    """``(params, held_out) -> mean held-out KL`` with the held-out tasks split over ``mesh`` (every leaf of
    ``held_out`` along its axis 1, ``P(None, axis)``): each device scores its ``N / devices`` tasks
    (``objective.held_out_kl``, a mean over them) and ``pmean`` averages the equal shares. Replicated, every device
    would score every task (docs/framework-differences.md: a program of replicated inputs runs everything
    everywhere)."""

    def share(params, held_out):
        return jax.lax.pmean(objective.held_out_kl(params, held_out), axis)

    return jax.shard_map(share, mesh=mesh, in_specs=(P(), P(None, axis)), out_specs=P(), check_vma=False)


def sample_on_every_device(objective, task, mesh: Mesh) -> Callable | None:
    """``(step, member) -> batch``: ``objective.sample`` drawn whole on every device of ``mesh`` and typed
    replicated (``P()``), when ``task`` (the task spec whose batches ``objective`` draws) has a draw that loops
    (:func:`jax_impl.samplers.draws_in_loops`); None otherwise.

    The step slices its batch to the devices' shards (:func:`data_parallel_loss_and_grad`), and XLA then
    partitions the draw itself: every device draws only its own tasks, which for normal and uniform noise
    costs nothing extra. A rejection loop partitioned that way tests "has every element accepted?" with an
    all-reduce in each iteration: RL²'s Beta arms drew with four such collectives per update (measured on the
    2-core VM, two-armed preset, 64 episodes over 2 devices: 4.15 ms per update, against 3.35 ms drawing the
    whole batch on each device; benchmarks/results/rl2-split-draw-before-after-cpu.log). Inside ``shard_map`` nothing is partitioned, so each device draws the same
    whole batch, the global one, and the slice that follows moves no data.
    """
    if not draws_in_loops(task, objective.train.batch_size):
        return None
    return jax.shard_map(objective.sample, mesh=mesh, in_specs=(P(), P()), out_specs=P(), check_vma=False)


class DataParallelTrainer(Trainer):
    """:class:`jax_impl.trainer.Trainer` with the task batch of every step split over ``devices`` devices.

    Same steps, same batches and (to rounding) the same parameters as the single-device trainer.
    Every process builds it with the same config; it joins a multi-host job first when
    :data:`LAUNCH_VARIABLES` describe one (:func:`initialize_from_env`) and checks the configs
    (:func:`require_same_config`). Only process 0 writes files (:attr:`is_writer`).

    Args:
        config: the run (identical in every process; checked).
        checkpoint: resume state (every process loads the same file).
        devices: the first that many of ``jax.devices()`` (default: all, on every host).
        timeout_s: seconds to wait for the other hosts at start-up.
        objective: what to train, built from ``config`` (default: the tutorial's ``MetaLearnerObjective``); it
            declares the task axis of each batch leaf (``batch_axes``), and its loss is a mean over tasks.
        compile_ahead: compile the first call's program on a thread while the run is set up (``Trainer``).
        stored_as: with ``compile_ahead``, the program's description for the executable store (``Trainer``).
        until: the held-out check of ``train.until_kl`` run inside the call (``Trainer``); its tasks split over the
            devices where they divide evenly (:func:`data_parallel_check`).
    """

    def __init__(self, config: RunConfig, checkpoint: Checkpoint | None = None, *, devices: int | None = None,
                 timeout_s: float | None = None, objective: Callable[[RunConfig], object] = MetaLearnerObjective,
                 compile_ahead: bool = False, stored_as: Mapping | None = None, until: HeldOutCheck | None = None):
        initialize_from_env(timeout_s=timeout_s)
        configure(dtype=config.train.dtype)  # before the objective resolves its dtype (float64 needs 64-bit mode)
        devices = len(jax.devices()) if devices is None else devices
        require_divisible(config.train.batch_size, devices, "devices")
        self.mesh = task_mesh(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.config = config  # before the base class builds the program (_make_run reads the task)
        super().__init__(objective(config), checkpoint, steps_per_call=config.jax.steps_per_call,
                         compile_ahead=compile_ahead, stored_as=None if stored_as is None else {
                             **stored_as, "mesh": [str(d) for d in self.mesh.devices.flat]}, until=until)
        require_same_config(config)
        self.params, self.opt_state = place((self.params, self.opt_state), self.replicated)

    def _make_run(self, checked: bool = False):
        loss_and_grad = data_parallel_loss_and_grad(self.objective, self.mesh)
        check = None
        if checked:
            split = self._splits_held_out()
            check = (self.until.every, data_parallel_check(self.objective, self.mesh) if split
                     else self.objective.held_out_kl)
        program = make_run_steps(self.objective, self.chunk_size, self.member, loss_and_grad,
                                 sample_on_every_device(self.objective, self.config.task, self.mesh), checked=check)
        if not checked:
            #: the jitted ``(params, opt_state, start, count) -> (params, opt_state, StepOutputs [chunk])`` of a call
            self.program = program

        def run(params, opt_state, *args):
            params, opt_state, *outputs = program(params, opt_state, *args)
            return params, opt_state, *local(tuple(outputs))

        run.lower, run.lower_flat, run.use = program.lower, program.lower_flat, program.use
        return run

    def _splits_held_out(self) -> bool:
        """Whether the held-out check splits its tasks over the devices: when they divide evenly."""
        return self.until.observations.shape[1] % self.mesh.size == 0

    def _put_held_out(self, held_out: dict):
        return place(held_out, NamedSharding(self.mesh, P(None, BATCH_AXIS) if self._splits_held_out() else P()))

    def _abstract_state(self, params):
        replicate = lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=self.replicated)  # noqa: E731
        return jax.tree.map(replicate, super()._abstract_state(params))

    def _abstract_held_out(self) -> tuple:
        target, held_out = self._held_out
        return jax.ShapeDtypeStruct(target.shape, target.dtype), jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), held_out)

    @property
    def devices(self) -> int:
        return self.mesh.size

    @property
    def is_writer(self) -> bool:
        return jax.process_index() == 0

    def weights(self) -> dict[str, np.ndarray]:
        return state_to_canonical(local(self.params))

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        sharded = self.params
        self.params = local(sharded)
        try:
            return super().predictive(observations)
        finally:
            self.params = sharded

    def checkpoint(self) -> Checkpoint:
        adam = local(self.opt_state)
        return Checkpoint(self.step, self.weights(), state_to_canonical(adam.exp_avg), state_to_canonical(adam.exp_avg_sq),
                          FRAMEWORK)


def shard_leading_axis(tree, mesh: Mesh, axis: str = SEED_AXIS):
    """Place every leaf ``[S, ...]`` of ``tree`` with its leading axis split over ``mesh`` (``P(axis)``)."""
    for leaf in jax.tree.leaves(tree):
        size = np.shape(leaf)[0] if np.ndim(leaf) else None
        if size is None or size % mesh.size:
            raise ValueError(f"every leaf needs a leading (seed) axis divisible by the {mesh.size} devices; got a "
                             f"leaf of shape {np.shape(leaf)}. Use a multiple of {mesh.size} seeds.")
    return place(tree, NamedSharding(mesh, P(axis)))


def vmap_over_seeds(fn: Callable, mesh: Mesh, in_axes: int | Sequence | None = 0, axis: str = SEED_AXIS) -> Callable:
    """``jax.vmap(fn, in_axes)`` with the mapped axis split over ``mesh``: each device vmaps its own seeds.

    Arguments mapped by ``in_axes`` (leading axis 0) are placed with :func:`shard_leading_axis`; unmapped ones
    (``None``) are replicated. Outputs keep the seed axis sharded (``P(axis)``). The vmapped function runs inside a
    ``jax.shard_map``, one program per device on its own seeds, so no collective can appear. (``jax.jit`` of the
    vmap on the sharded inputs lets XLA partition the vmapped program instead, and a vmapped data-dependent loop,
    such as ``jax.random.gamma``'s rejection sampler, runs until every seed's loop has ended: partitioned, it asks
    all devices with an all-reduce in every iteration, four for one draw of RL²'s bandits.)
    """

    @functools.lru_cache(maxsize=None)
    def program(axes: tuple) -> Callable:
        specs = tuple(P(axis) if a == 0 else P() for a in axes)
        return jax.jit(jax.shard_map(jax.vmap(fn, in_axes=axes), mesh=mesh, in_specs=specs, out_specs=P(axis),
                                     check_vma=False))

    def placed(args) -> tuple[Callable, list]:
        axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args) or any(a not in (0, None) for a in axes):
            raise ValueError(f"in_axes must be 0 or None per argument ({len(args)} arguments), got {in_axes}")
        return program(axes), [shard_leading_axis(arg, mesh, axis) if a == 0 else place(arg, NamedSharding(mesh, P()))
                                for arg, a in zip(args, axes)]

    def run(*args):
        function, arrays = placed(args)
        return function(*arrays)

    def lower(*args):
        function, arrays = placed(args)
        return function.lower(*arrays)

    run.lower = lower  # the compiled program's HLO, for inspection (tests count its collectives)
    return run
