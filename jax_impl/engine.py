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

``auto`` picks ``vmap`` on accelerators and the single-member program for one member; on CPU with
several members it *measures*: the first chunk is timed with each strategy (one extra compile each) and
the fastest is kept (:attr:`Engine.calibration`), so S members are never trained slower than S
sequential runs (``loop``) by more than the timing noise. Which one wins depends on the sizes
(docs/performance.md).

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
from flax import nnx

from cogmeta.config import RunConfig
from cogmeta.contract import MemberRun, StepMetrics
from cogmeta.progress import progress_bar
from jax_impl.backend import build_model
from jax_impl.numerics import resolve_dtype
from jax_impl.optim import init_adam
from jax_impl.training import StepOutputs, make_member_chunk
from jax_impl.weights import state_to_canonical

STRATEGIES = ("auto", "vmap", "map", "loop")


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


class Engine:
    """Trains S members of one architecture in one compiled program, ``chunk`` steps per call.

    Args:
        config: the shared run config (its ``train.seed`` and ``train.learning_rate`` are replaced by
            each member's).
        strategy: ``auto``, ``vmap``, ``map`` or ``loop`` (see the module docstring).
        chunk: optimizer steps per compiled call (default ``config.jax.steps_per_call``, at most
            ``train.steps``).
        map_batch: with ``map``, members vmapped together inside each ``lax.map`` iteration.
    """

    def __init__(self, config: RunConfig, strategy: str = "auto", chunk: int | None = None, map_batch: int | None = None):
        self.config = config
        self.requested = strategy
        self.strategy = choose_strategy(strategy)
        self.calibration: dict[str, float] = {}  # seconds per chunk of each strategy tried by ``auto``
        self.chunk = min(config.jax.steps_per_call if chunk is None else chunk, config.train.steps)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1 steps per call, got {self.chunk}")
        if map_batch is not None and map_batch < 1:
            raise ValueError(f"map_batch must be >= 1 members per map iteration, got {map_batch}")
        self.map_batch = map_batch
        self.graphdef, _ = nnx.split(build_model(config))
        self._member = make_member_chunk(self.graphdef, config, self.chunk)
        self._programs: dict[str, Callable] = {}

    # ------------------------------------------------------------------ pure core
    def run_members(self, params, opt_state, start, counts, seeds, learning_rates):
        """One chunk for every member: ``(params, opt_state, StepOutputs [S, chunk])``; pure, jittable.

        ``counts[s]`` steps of member s are applied (0 freezes a member that stopped); ``start`` is
        the shared step index of the chunk's first step.
        """
        return self._run_members(self.strategy, params, opt_state, start, counts, seeds, learning_rates)

    def _run_members(self, strategy, params, opt_state, start, counts, seeds, learning_rates):
        member = lambda p, o, c, s, lr: self._member(p, o, start, c, s, lr)  # noqa: E731
        if strategy == "vmap":
            return jax.vmap(member)(params, opt_state, counts, seeds, learning_rates)
        return jax.lax.map(lambda xs: member(*xs), (params, opt_state, counts, seeds, learning_rates),
                           batch_size=self.map_batch)

    def _program(self, strategy: str) -> Callable:
        """The jitted program of ``strategy`` (``loop``: the single-member chunk), built once."""
        if strategy not in self._programs:
            function = self._member if strategy == "loop" else functools.partial(self._run_members, strategy)
            self._programs[strategy] = jax.jit(function)
        return self._programs[strategy]

    # ------------------------------------------------------------------ host side
    def init(self, seeds: Sequence[int]) -> tuple:
        """Stacked ``(params [S, ...], opt_state [S, ...])``: member s initialised as a run with seed s."""
        states = [nnx.split(build_model(self.config, int(seed)))[1] for seed in seeds]
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
        return params, jax.vmap(init_adam)(params)

    def call(self, params, opt_state, start: int, counts, seeds, learning_rates, strategy: str | None = None):
        """One compiled chunk for all members (``loop``: one call per member)."""
        strategy = self.strategy if strategy is None else strategy
        program = self._program(strategy)
        if strategy != "loop":
            return program(params, opt_state, jnp.asarray(start), counts, seeds, learning_rates)
        results = []
        for s in range(len(seeds)):
            take = lambda tree: jax.tree.map(lambda x: x[s], tree)  # noqa: E731
            results.append(program(take(params), take(opt_state), jnp.asarray(start), counts[s], seeds[s],
                                   learning_rates[s]))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)

    def calibrate(self, params, opt_state, counts, seeds, learning_rates) -> str:
        """Time one chunk (after a compiling call) with each strategy; keep and return the fastest."""
        for strategy in ("loop", "map", "vmap"):
            jax.block_until_ready(self.call(params, opt_state, 0, counts, seeds, learning_rates, strategy))
            began = time.perf_counter()
            jax.block_until_ready(self.call(params, opt_state, 0, counts, seeds, learning_rates, strategy))
            self.calibration[strategy] = time.perf_counter() - began
        self.strategy = min(self.calibration, key=self.calibration.get)
        return self.strategy

    def train(self, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
              progress: bool = True, callback: Callable[[int, StepOutputs], None] | None = None) -> list[MemberRun]:
        """Train every member for ``train.steps`` steps; ``callback(step, outputs)`` runs after each chunk.

        A member whose loss or gradient becomes non-finite stops there (its update is not applied and
        it stays frozen), as a single run would; the others go on.
        """
        seeds = [int(seed) for seed in seeds]
        rates = [self.config.train.learning_rate] * len(seeds) if learning_rates is None else [float(r) for r in learning_rates]
        if not seeds or len(rates) != len(seeds):
            raise ValueError(f"need one learning rate per seed and at least one member; got {len(seeds)} seeds, "
                             f"{len(rates)} learning rates")
        dtype = resolve_dtype(self.config.train.dtype)
        params, opt_state = self.init(seeds)
        seed_array, rate_array = jnp.asarray(seeds, jnp.int32), jnp.asarray(rates, dtype)
        total, members = self.config.train.steps, len(seeds)
        alive = np.ones(members, bool)
        if self.requested == "auto":
            self.strategy = choose_strategy("auto", members)
            if members > 1 and jax.default_backend() == "cpu":
                self.calibrate(params, opt_state, jnp.full(members, self.chunk, jnp.int32), seed_array, rate_array)
        history: list[list[StepOutputs]] = [[] for _ in seeds]
        done = np.zeros(members, int)
        bar = progress_bar(progress, total, f"sweep (jax, {members} members, {self.strategy})")
        step = 0
        while step < total:
            count = min(self.chunk, total - step)
            counts = jnp.asarray(np.where(alive, count, 0), jnp.int32)
            params, opt_state, outputs = self.call(params, opt_state, step, counts, seed_array, rate_array)
            host = StepOutputs(*(np.asarray(x)[:, :count] for x in outputs))
            for s in np.flatnonzero(alive):
                finite = np.isfinite(host.loss[s]) & np.isfinite(host.grad_norm[s])
                attempted = count if finite.all() else int(np.argmin(finite)) + 1
                history[s].append(StepOutputs(*(x[s, :attempted] for x in host)))
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
        runs = []
        for s, seed in enumerate(seeds):
            metrics = StepMetrics(*(np.concatenate([getattr(o, f) for o in history[s]]) for f in StepOutputs._fields))
            weights = state_to_canonical(jax.tree.map(lambda x: x[s], params))
            runs.append(MemberRun(seed, rates[s], weights, metrics, int(done[s]), not alive[s]))
        return runs


def make_train(config: RunConfig, strategy: str = "auto", chunk: int | None = None, map_batch: int | None = None) -> Callable:
    """``train(seeds, learning_rates=None, progress=True) -> [MemberRun]``, compiled once for all calls."""
    return Engine(config, strategy, chunk, map_batch).train


def train_members(config: RunConfig, seeds: Sequence[int], learning_rates: Sequence[float] | None = None, *,
                  strategy: str = "auto", progress: bool = True) -> list[MemberRun]:
    """The backend entry point of ``cogmeta.sweep``: every member of one architecture, trained together."""
    return Engine(config, strategy).train(seeds, learning_rates, progress=progress)
