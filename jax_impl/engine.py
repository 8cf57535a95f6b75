"""Many training runs in one compiled program: seeds and learning rates of a sweep trained together.

A *member* of a sweep is one training run: its seed (weight init and task stream, as in
``jax_impl.backend.Trainer``) and its peak learning rate; everything else (task, model, batch size,
schedule) is shared, so all members have the same shapes and one program trains them all. Member s
follows exactly the maths of a single run with ``train.seed = seeds[s]`` and
``train.learning_rate = learning_rates[s]``:

    params_s, adam_s  <-  K steps of  clip -> Adam -> p - lr_s(k) * direction
                          on the batches of step_key(seeds[s], k)

Seed strategies (how the member axis S is laid over the hardware):

- ``vmap``: ``jax.vmap`` over members; every matmul gets a leading S axis (a batched ``dot_general``).
  Best on GPU, where S x B rows fill the device. On XLA:CPU batched dots can be slower than a loop
  (jax#26568, #15339; docs/performance.md).
- ``map``: ``lax.map`` over members inside the same program (a compiled loop; with ``map_batch`` = b,
  vmap over b members at a time). One dispatch per chunk for all members, plain matmuls inside.
- ``loop``: one compiled single-member program called S times from Python per chunk (the baseline
  "S sequential runs", without S compiles).

Member devices: with ``devices`` = D > 1 the member axis is split over D devices (``jax.shard_map`` over
the mesh ``jax_impl.distributed.seed_mesh(D)``), each device running its own S / D members with ``map`` or
``vmap`` (``loop`` becomes ``map`` there); members are independent, so no collective runs. On a CPU the
devices are host devices (``JAX_NUM_CPU_DEVICES``, which the ``cogmeta`` command sets to the CPUs the
process may use: ``cogmeta.host_devices``), each executing on its own core: the whole machine trains one
sweep in one compiled program. The default is every local device, at most one per member; S is padded to a
multiple of D with frozen copies of the last member (their step count is 0), dropped again at the end.
Each member computes the same operations on whichever device it lands; the split program is compiled
separately, so its weights agree with the one-device program's to rounding (1e-15 in float64,
``tests/test_distributed_jax.py``; in float32 an RL² member's sampled actions can part after a few updates).

``auto`` picks ``vmap`` on accelerators and the single-member program for one member; on CPU with
several members it *measures*: each strategy trains a copy of the members for :data:`CALIBRATION_STEPS`
steps (a short program of its own, compiled for the purpose, then timed on a second call) and the fastest
is kept (:attr:`Engine.calibration`); the copies are dropped, so the members' training is the same under
every strategy. So S members are never trained slower than S
sequential runs (``loop``) by more than the timing noise. Which one wins depends on the sizes
(docs/performance.md).

Memory: a vmapped scan keeps every step's residuals for the backward pass of every member at once, so the
``vmap`` program grows linearly with S (GRU H 64, B 128, T 64: ~27 MiB a member, one 56 GiB buffer at S = 2048,
out of memory on an H200 on 2026-12-04; docs/performance.md "GPU"). Where one device's memory is known (a GPU's or
TPU's allocator, or ``memory_budget``), a ``vmap`` engine without ``map_batch`` first compiles one member's
program, reads its footprint from XLA's memory analysis, and, when S members would need more than
:data:`MEMORY_FRACTION` of the device's free memory, trains them as ``map`` over vmapped blocks of as many
members as fit (:meth:`Engine.fit_to_memory`): the same maths, to rounding (a block's batched products may round
otherwise than all S members' together: 8e-8 of the weights' scale in float32 after 6 steps).

The member function :meth:`Engine.run_members` is pure and jittable in
``(params [S, ...], opt_state [S, ...], start, counts [S], seeds [S], learning_rates [S])``, so
``jax_impl.distributed`` can shard its leading axis over devices.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cogmeta.config import RunConfig
from cogmeta.contract import MemberRun, StepMetrics
from cogmeta.progress import progress_bar
from jax_impl.backend import MetaLearnerObjective
from jax_impl.distributed import SEED_AXIS, seed_mesh
from jax_impl.numerics import configure
from jax_impl.optim import init_adam
from jax_impl.trainer import Objective, StepOutputs, init_runs, make_member_chunk, stack_members, stack_on_host
from jax_impl.weights import state_to_canonical

STRATEGIES = ("auto", "vmap", "map", "loop")
#: Steps of the timed calls with which ``auto`` compares the strategies. Timing whole chunks (500 steps by
#: default, twice per strategy) cost more than a short sweep's training itself (docs/performance.md: 58 s of
#: a 74 s, 8-member, 1,500-step sweep); the per-step cost that decides is visible in a few steps.
CALIBRATION_STEPS = 20


#: Share of a device's free memory that the members' vmapped program may take. Conservative on purpose: JAX's
#: allocator does not see what another library in the process holds (the benchmark suite's PyTorch points), the
#: allocator fragments (an H200 failed to find 56 GiB for one buffer on 2026-12-04), and blocks of a few hundred
#: members lose nothing once they fill the device (docs/performance.md "GPU": 256 members already level off).
MEMORY_FRACTION = 0.25


def device_memory(device=None) -> int | None:
    """Bytes that ``device``'s allocator can still hand out (``memory_stats()``: ``bytes_limit - bytes_in_use``;
    default: the first local device), or None where JAX does not say (XLA:CPU)."""
    device = jax.local_devices()[0] if device is None else device
    stats = device.memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def choose_strategy(strategy: str, members: int = 2) -> str:
    """Resolve ``auto`` without measuring: ``loop`` for one member; for several, ``vmap`` on GPU/TPU, else
    ``map`` (the platform is ``jax.default_backend()``).

    (:class:`Engine` measures instead on CPU when there are several members.)
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown seed strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    if members == 1:
        return "loop"
    return "map" if jax.default_backend() == "cpu" else "vmap"


def objective_for(config: RunConfig) -> Objective:
    """The objective that a ``RunConfig`` of a sweepable model family trains: the tutorial meta-learner's
    (``jax_impl.backend.MetaLearnerObjective``), the RL² agent's (``jax_impl.rl2.RL2Objective``) or the
    bounded GRU's (``jax_impl.bounded_gru.make_objective``). A float64 config switches on JAX's 64-bit mode first
    (``jax_impl.numerics.configure``), as a single run's trainer does."""
    configure(dtype=config.train.dtype)
    if config.model.family == "rl2":
        from jax_impl.rl2 import RL2Objective

        return RL2Objective(config)
    if config.model.family == "bounded_gru":
        from jax_impl.bounded_gru import make_objective

        return make_objective(config)
    if config.model.family != "meta_learner":
        raise ValueError(f"the sweep engine trains the meta_learner, rl2 and bounded_gru families, not "
                         f"{config.model.family!r}")
    return MetaLearnerObjective(config)


class Engine:
    """Trains S members of one objective in one compiled program, ``chunk`` steps per call.

    Args:
        objective: what every member trains (``jax_impl.trainer.Objective``); a ``RunConfig`` means its model
            family's (:func:`objective_for`; chunk default ``config.jax.steps_per_call``).
        strategy: ``auto``, ``vmap``, ``map`` or ``loop`` (see the module docstring).
        chunk: optimizer steps per compiled call (default 500, at most ``train.steps``).
        map_batch: with ``map``, members vmapped together inside each ``lax.map`` iteration.
        devices: devices the member axis is split over (see the module docstring); None: every local device
            (``jax.local_devices()``), at most one per member. More than JAX sees is an error.
        memory_budget: bytes of one device that a ``vmap`` program may use before its members are trained in blocks
            (:meth:`fit_to_memory`); None: :data:`MEMORY_FRACTION` of the device's free memory where JAX knows it
            (GPU, TPU), no limit on CPU.
    """

    def __init__(self, objective: Objective | RunConfig, strategy: str = "auto", chunk: int | None = None,
                 map_batch: int | None = None, devices: int | None = None, memory_budget: int | None = None):
        if isinstance(objective, RunConfig):
            chunk = objective.jax.steps_per_call if chunk is None else chunk
            objective = objective_for(objective)
        self.objective = objective
        self.train_config = objective.train
        self.requested = strategy
        self.strategy = choose_strategy(strategy)
        self.calibration: dict[str, float] = {}  # seconds per step of each strategy tried by ``auto``
        self.chunk = min(500 if chunk is None else chunk, self.train_config.steps)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1 steps per call, got {self.chunk}")
        if map_batch is not None and map_batch < 1:
            raise ValueError(f"map_batch must be >= 1 members per map iteration, got {map_batch}")
        self.requested_map_batch = self.map_batch = map_batch
        if memory_budget is not None and (not isinstance(memory_budget, int) or memory_budget < 1):
            raise ValueError(f"memory_budget must be a positive number of bytes (or None: from the device), got "
                             f"{memory_budget!r}")
        self.memory_budget = memory_budget
        self.memory_estimate: dict[str, int] = {}  # the last fit_to_memory's footprint, budget and members
        self._footprints: dict = {}  # one member's bytes per member shape (fit_to_memory)
        if devices is not None and (not isinstance(devices, int) or devices < 1):
            raise ValueError(f"devices must be a positive integer (or None: every local device), got {devices!r}")
        self.requested_devices = devices
        self.devices = 1  # resolved per call of train (it depends on the member count)
        self._member = make_member_chunk(objective, self.chunk)
        # members traced under jax.vmap (``vmap``, and ``map`` with ``map_batch``) may train an arrangement of the
        # same maths that batches better (``Objective.for_vmap``: RL²'s taped trial loop)
        for_vmap = getattr(objective, "for_vmap", None)
        self._vmapped_member = self._member if for_vmap is None else make_member_chunk(for_vmap(), self.chunk)
        self._programs: dict[str, Callable] = {}

    # ------------------------------------------------------------------ pure core
    def run_members(self, params, opt_state, start, counts, members):
        """One chunk for every member: ``(params, opt_state, StepOutputs [S, chunk])``; pure, jittable.

        ``counts[s]`` steps of member s are applied (0 freezes a member that stopped); ``start`` is
        the shared step index of the chunk's first step; ``members`` holds ``[S]`` arrays
        (``jax_impl.trainer.stack_members``).
        """
        return self._run_members(self.strategy, params, opt_state, start, counts, members)

    def _run_members(self, strategy, params, opt_state, start, counts, members):
        vmapped = strategy == "vmap" or self.map_batch is not None
        chunk = self._vmapped_member if vmapped else self._member
        member = lambda p, o, c, m: chunk(p, o, start, c, m)  # noqa: E731
        if strategy == "vmap":
            return jax.vmap(member)(params, opt_state, counts, members)
        return jax.lax.map(lambda xs: member(*xs), (params, opt_state, counts, members), batch_size=self.map_batch)

    def _program(self, strategy: str) -> Callable:
        """The jitted program of ``strategy`` on :attr:`devices` devices (``loop`` on one: the single-member
        chunk), built once."""
        key = (strategy, self.devices, self.map_batch)  # the traced map reads map_batch
        if key not in self._programs:
            if self.devices > 1:
                members = P(SEED_AXIS)
                # each device maps over its own members; check_vma=False: the per-member scans start from
                # carries built inside the body, which shard_map's varying-axis check cannot type
                function = jax.shard_map(functools.partial(self._run_members, "vmap" if strategy == "vmap" else "map"),
                                         mesh=seed_mesh(self.devices), in_specs=(members, members, P(), members, members),
                                         out_specs=members, check_vma=False)
            elif strategy == "loop":
                function = self._member
            else:
                function = functools.partial(self._run_members, strategy)
            self._programs[key] = jax.jit(function)
        return self._programs[key]

    def resolve_devices(self, members: int) -> int:
        """The devices that ``members`` members are split over: the requested count (every local device if
        None), at most ``members``; an error names ``JAX_NUM_CPU_DEVICES`` when JAX sees fewer devices."""
        available = len(jax.local_devices())
        requested = self.requested_devices
        if requested is None:  # every device, except for the sequential baseline that ``loop`` asks for
            requested = 1 if self.requested == "loop" else available
        if requested > available:
            hint = (f" On a CPU, give JAX that many host devices by setting JAX_NUM_CPU_DEVICES={requested} before it "
                    "starts (the `cogmeta` command sets it to the CPUs the process may use)."
                    if jax.default_backend() == "cpu" else "")
            raise ValueError(f"devices={requested} but JAX sees {available} local device(s); use 1 to {available}.{hint}")
        return max(1, min(requested, members))

    # ------------------------------------------------------------------ host side
    def init(self, seeds: Sequence[int]) -> tuple:
        """Stacked ``(params [S, ...], opt_state [S, ...])``: member s initialised as a run with seed s (in one compiled
        draw for many members when the objective has ``init_many``: ``jax_impl.trainer.init_runs``)."""
        init_many = getattr(self.objective, "init_many", None)
        params = init_runs(seeds, self.objective.init) if init_many is None else init_many(seeds)
        return params, jax.vmap(init_adam)(params)

    def call(self, params, opt_state, start: int, counts, members, strategy: str | None = None):
        """One compiled chunk for all members (``loop``: one call per member)."""
        strategy = self.strategy if strategy is None else strategy
        program = self._program(strategy)
        if strategy != "loop" or self.devices > 1:
            return program(params, opt_state, jnp.asarray(start), counts, members)
        results = []
        for s in range(len(counts)):
            index = jnp.asarray(s, jnp.int32)
            results.append(program(_member_of(params, index), _member_of(opt_state, index), jnp.asarray(start),
                                   counts[s], _member_of(members, index)))
        return stack_on_host(results)

    def calibrate(self, params, opt_state, members) -> str:
        """Time :data:`CALIBRATION_STEPS` steps of every strategy on copies of the members (after a compiling
        call) and keep and return the fastest; the members themselves are not advanced."""
        steps = min(self.chunk, CALIBRATION_STEPS)
        probe = self if steps == self.chunk else Engine(self.objective, "vmap", steps, self.map_batch)
        counts = jnp.full(len(jax.tree.leaves(members)[0]), steps, jnp.int32)
        probe.devices = self.devices
        for strategy in ("loop", "map", "vmap") if self.devices == 1 else ("map", "vmap"):
            jax.block_until_ready(probe.call(params, opt_state, 0, counts, members, strategy))
            began = time.perf_counter()
            jax.block_until_ready(probe.call(params, opt_state, 0, counts, members, strategy))
            self.calibration[strategy] = (time.perf_counter() - began) / steps
        self.strategy = min(self.calibration, key=self.calibration.get)
        return self.strategy

    def fit_to_memory(self, params, opt_state, members, count: int) -> int | None:
        """Members per vmapped block so that ``count`` members of one device fit its memory: None when all of them fit
        (or nothing is known of the device's memory), else the block, and the engine then trains ``map`` over blocks
        of it (:attr:`strategy` and :attr:`map_batch` set here).

        One member's program (the vmapped chunk at S = 1, compiled ahead of time) is measured by XLA's memory
        analysis: its arguments, outputs and temporaries, ``m`` bytes. S members vmapped need about ``S m`` (the scan's
        residuals grow with S), so ``block = floor(budget / m)``, where the budget is ``memory_budget`` or
        :data:`MEMORY_FRACTION` of :func:`device_memory`. The measurement costs one compile of the one-member program
        per engine and member shape (on a GPU 5-12 s at the suite's sizes; JAX's persistent cache keeps it).
        """
        budget = self.memory_budget
        if budget is None:
            limit = device_memory()
            budget = None if limit is None else int(MEMORY_FRACTION * limit)
        if budget is None:
            return None
        one = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype), (params, opt_state, members))
        key = (jax.tree.structure(one), tuple((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(one)))
        if key not in self._footprints:  # one compile per engine and member shape (an engine may train many calls)
            counts = jax.ShapeDtypeStruct((1,), jnp.int32)
            start = jax.ShapeDtypeStruct((), jnp.int32)
            program = jax.jit(functools.partial(self._run_members, "vmap"))
            usage = program.lower(one[0], one[1], start, counts, one[2]).compile().memory_analysis()
            self._footprints[key] = usage.argument_size_in_bytes + usage.output_size_in_bytes + usage.temp_size_in_bytes
        per_member = self._footprints[key]
        block = max(1, budget // max(per_member, 1))
        self.memory_estimate = {"per_member": int(per_member), "budget": int(budget), "members": count}
        if block >= count:
            return None
        self.strategy, self.map_batch = "map", int(block)
        return self.map_batch

    def train(self, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
              progress: bool = True, callback: Callable[[int, StepOutputs], None] | None = None,
              members: Sequence[dict] | None = None, params=None, label: str = "sweep") -> list[MemberRun]:
        """Train every member for ``train.steps`` steps; ``callback(step, outputs)`` runs after each chunk.

        Member s is ``objective.member(seeds[s], learning_rates[s])`` unless ``members`` gives the member
        dicts (one per seed: the objective's other per-run values, e.g. condition and beta); ``params``
        (stacked ``[S, ...]``) replaces the fresh initial weights (fine-tuning). A member whose loss or
        gradient becomes non-finite stops there (its update is not applied and it stays frozen), as a
        single run would; the others go on.
        """
        seeds = [int(seed) for seed in seeds]
        train = self.train_config
        rates = [train.learning_rate] * len(seeds) if learning_rates is None else [float(r) for r in learning_rates]
        if not seeds or len(rates) != len(seeds) or (members is not None and len(members) != len(seeds)):
            raise ValueError(f"need one learning rate per seed (and one member dict per seed, if given) and at least "
                             f"one member; got {len(seeds)} seeds, {len(rates)} learning rates"
                             + ("" if members is None else f", {len(members)} members"))
        if members is None:
            members = [self.objective.member(seed, rate) for seed, rate in zip(seeds, rates)]
        stacked = stack_members(list(members))
        if params is None:
            params, opt_state = self.init(seeds)
        else:
            opt_state = jax.vmap(init_adam)(params)
        total, count_members = train.steps, len(seeds)
        self.devices = self.resolve_devices(count_members)
        padded = -count_members % self.devices  # frozen copies of the last member fill the last device
        alive = np.concatenate([np.ones(count_members, bool), np.zeros(padded, bool)])
        if self.devices > 1:
            # device_put, not distributed.place: one process's devices, and members may hold typed PRNG keys
            params, opt_state, stacked = jax.device_put(
                jax.tree.map(lambda x: _pad_members(x, padded), (params, opt_state, stacked)),
                NamedSharding(seed_mesh(self.devices), P(SEED_AXIS)))
        # resolved per call: a block that an earlier call chose (fit_to_memory) is this call's to choose again
        self.strategy, self.map_batch = choose_strategy(self.requested, count_members), self.requested_map_batch
        if self.requested == "auto" and count_members > 1 and jax.default_backend() == "cpu":
            self.calibrate(params, opt_state, stacked)
        if self.strategy == "vmap" and self.map_batch is None and count_members > 1:
            self.fit_to_memory(params, opt_state, stacked, (count_members + padded) // self.devices)
        history: list[list[StepOutputs]] = [[] for _ in seeds]
        done = np.zeros(count_members, int)
        where = "" if self.devices == 1 else f" over {self.devices} devices"
        blocks = "" if self.map_batch is None else f" in blocks of {self.map_batch}"
        bar = progress_bar(progress, total, f"{label} (jax, {count_members} members, {self.strategy}{blocks}{where})")
        step = 0
        while step < total:
            count = min(self.chunk, total - step)
            counts = jnp.asarray(np.where(alive, count, 0), jnp.int32)
            params, opt_state, outputs = self.call(params, opt_state, step, counts, stacked)
            host = jax.tree.map(lambda x: np.asarray(x)[:count_members, :count], outputs)
            for s in np.flatnonzero(alive):
                finite = np.isfinite(host.loss[s]) & np.isfinite(host.grad_norm[s])
                attempted = count if finite.all() else int(np.argmin(finite)) + 1
                history[s].append(jax.tree.map(lambda x: x[s, :attempted], host))
                done[s] += attempted if finite.all() else attempted - 1
                alive[s] = finite.all()
            step += count
            if callback is not None:
                callback(step, host)
            if bar is not None:
                bar.update(count)
                bar.set_postfix(loss=f"{float(np.nanmean(host.loss[:, -1])):.4f}", alive=int(alive.sum()))
        if bar is not None:
            bar.close()
        self.final_params = jax.tree.map(lambda x: x[:count_members], params) if padded else params
        runs = []
        stacked_weights = state_to_canonical(params)  # one transfer; member s is row s of every array
        for s, seed in enumerate(seeds):
            joined = jax.tree.map(lambda *parts: np.concatenate(parts), *history[s])
            metrics = StepMetrics(joined.loss, joined.grad_norm, joined.learning_rate, joined.aux)
            weights = {name: value[s].copy() for name, value in stacked_weights.items()}
            runs.append(MemberRun(seed, rates[s], weights, metrics, int(done[s]), not alive[s]))
        return runs


def _pad_members(leaf, count: int):
    """``leaf [S, ...]`` followed by ``count`` copies of its last member (``[S + count, ...]``)."""
    return leaf if count == 0 else jnp.concatenate([leaf, jnp.repeat(leaf[-1:], count, axis=0)])


@jax.jit
def _member_of(tree, index):
    """Member ``index`` of stacked ``[S, ...]`` arrays: one compiled gather for every member (indexing each array
    eagerly dispatches one small program per array and member, seconds per chunk for a sweep's state)."""
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, index, keepdims=False), tree)


def make_train(config: RunConfig | Objective, strategy: str = "auto", chunk: int | None = None,
               map_batch: int | None = None, devices: int | None = None, memory_budget: int | None = None) -> Callable:
    """``train(seeds, learning_rates=None, progress=True) -> [MemberRun]``, compiled once for all calls."""
    return Engine(config, strategy, chunk, map_batch, devices, memory_budget).train


def train_members(config: RunConfig, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
                  strategy: str = "auto", progress: bool = True) -> list[MemberRun]:
    """The backend entry point of ``cogmeta.sweep``: every member of one architecture, trained together."""
    return Engine(config, strategy).train(seeds, learning_rates, progress=progress)
