"""The one trainer (JAX): every workload's objective, clipped and updated by Adam or SGD, many steps per call.

An *objective* (:class:`Objective`) says what a workload trains: its model's parameters, the batch of a
step, the loss and its extra metrics. Everything else is this module's and the same for every model
family of the library (the tutorial meta-learner, the bounded GRU, the amortized posterior, meta
seq2seq), written once:

    (loss, aux), g = value_and_grad(objective.loss)(params, batch_k, k, member)
    g <- g * min(1, c / (||g|| + 1e-6))                (unless train.clip_norm is None)
    lr_k = schedule(k, peak = member["learning_rate"])  (cosine, constant or step; ``jax_impl.optim``)
    params, opt <- Adam or SGD at lr_k, applied only if loss and ||g|| are finite

A *member* is one training run of the objective: a dict of scalars, at least ``seed`` and
``learning_rate``, plus whatever the objective varies per run (the bounded GRU's condition and beta).
Builders return pure functions of ``(params, opt_state, ...)``; :func:`make_member_chunk` is the body that
``jax_impl.engine`` ``vmap``s or ``lax.map``s over members, :class:`Trainer` holds one run (the twin,
``torch_impl.trainer``, has the same names over an ``nn.Module`` updated in place).
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from cogmeta.config import TrainConfig
from cogmeta.contract import Checkpoint, StepMetrics
from cogmeta.held_out_check import HeldOutCheck
from jax_impl.executable_store import flat_lowering, store_from_environment
from jax_impl.optim import AdamState, adam_step, clip_by_global_norm, init_adam, learning_rate
from jax_impl.program_keys import training_key
from jax_impl.weights import canonical_to_state, state_to_canonical

FRAMEWORK = "jax"


class StepOutputs(NamedTuple):
    """Per-step values: scalars for one step, ``[K]`` arrays for K steps (``lax.scan`` stacks them).

    ``aux``: the objective's extra values by name (``{}`` for most; ``nll`` and ``kl`` for the bounded GRU).
    """

    loss: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array
    aux: dict


class Objective(Protocol):
    """What one workload trains. Every method is pure; ``sample`` and ``loss`` are traced under ``jit``.

    Attributes:
        train: the update rule, schedule and run length (``cogmeta.config.TrainConfig``).
        batch_axes: optional; the task axis of each leaf of the batch (an int, or a NamedTuple of ints matching
            the batch), for objectives whose loss and metrics are means over tasks. Declaring it lets the
            data-parallel trainer (``distributed.py``) split a run's batch over devices or processes.
        init_many: optional; ``seeds -> params [S, ...]``, bit for bit ``init`` of each seed, for objectives that can
            draw many runs' parameters in one compiled program (:func:`init_runs`); the engine uses it.
        for_vmap: optional; ``() -> Objective``, the same objective arranged for tracing under ``jax.vmap`` over
            members (equal losses and gradients up to the order of float additions); the engine trains vmapped
            members with it (``jax_impl.rl2``: the taped trial loop instead of the replay).
    """

    train: TrainConfig

    def init(self, seed: int) -> Any:
        """The parameters (an ``nnx.State``) of a fresh model of run ``seed``."""

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        """Run ``seed``'s member dict (``learning_rate`` defaults to ``train.learning_rate``)."""

    def sample(self, step: jax.Array, member: dict) -> Any:
        """The batch (a pytree) of training step ``step`` of ``member``, drawn from the run's own stream."""

    def loss(self, params, batch, step: jax.Array, member: dict) -> tuple[jax.Array, dict]:
        """``(scalar loss, aux)`` of ``params`` on ``batch``; ``aux`` maps names to scalars."""


def make_train_step(objective: Objective, loss_and_grad: Callable | None = None) -> Callable:
    """``step(params, opt_state, batch, step, member) -> (params, opt_state, StepOutputs)``.

    A non-finite loss or gradient norm leaves params and optimizer state unchanged (the torch trainer
    stops before such an update too). ``loss_and_grad(params, batch, step, member) -> ((loss, aux),
    grads)`` defaults to ``jax.value_and_grad(objective.loss, has_aux=True)``; ``jax_impl.distributed``
    passes a data-parallel one (per-device gradients averaged over a mesh).
    """
    train = objective.train
    loss_and_grad = jax.value_and_grad(objective.loss, has_aux=True) if loss_and_grad is None else loss_and_grad

    def step_fn(params, opt_state, batch, step, member):
        (loss, aux), grads = loss_and_grad(params, batch, step, member)
        if train.clip_norm is None:
            norm = optax.tree.norm(grads)
        else:
            grads, norm = clip_by_global_norm(grads, train.clip_norm)
        lr = learning_rate(step, train, peak=member["learning_rate"])
        finite = jnp.isfinite(loss) & jnp.isfinite(norm)
        params, opt_state = _update(params, grads, opt_state, lr, train, finite)
        return params, opt_state, StepOutputs(loss, norm, lr, aux)

    return step_fn


def make_train_on_batches(objective: Objective, loss_and_grad: Callable | None = None) -> Callable:
    """Jitted ``run(params, opt_state, batches [K, ...], start, member) -> (params, opt_state, StepOutputs [K])``.

    One step per given batch (a pytree with a leading K axis), steps ``start .. start + K - 1``; a
    non-finite step applies no update (:func:`make_train_step`) and the caller stops there.
    """
    step_fn = make_train_step(objective, loss_and_grad)

    @jax.jit
    def run(params, opt_state, batches, start, member):
        def body(carry, inputs):
            index, batch = inputs
            params, opt_state, outputs = step_fn(*carry, batch, start + index, member)
            return (params, opt_state), outputs

        count = jax.tree.leaves(batches)[0].shape[0]
        (params, opt_state), outputs = jax.lax.scan(body, (params, opt_state), (jnp.arange(count), batches))
        return params, opt_state, outputs

    return run


def make_member_chunk(objective: Objective, chunk: int, loss_and_grad: Callable | None = None,
                      sample: Callable | None = None) -> Callable:
    """Un-jitted ``run(params, opt_state, start, count, member) -> (params, opt_state, StepOutputs [chunk])``.

    One call runs ``chunk`` scan iterations; iteration i trains on ``objective.sample(start + i, member)``
    if i < count and no earlier loss in the call was non-finite. Masking instead of a shorter scan keeps
    one compiled program for every call (outputs past the stop are computed but not applied; the caller
    slices them off). ``member`` is traced, so ``jax_impl.engine`` maps this over many members. ``sample``
    replaces ``objective.sample`` with a function of the same batches (``jax_impl.distributed`` passes one that
    draws them on every device).
    """
    step_fn = make_train_step(objective, loss_and_grad)
    sample = objective.sample if sample is None else sample

    def run(params, opt_state, start, count, member):
        def body(carry, index):
            params, opt_state, alive = carry
            step = start + index
            new_params, new_opt_state, outputs = step_fn(params, opt_state, sample(step, member), step, member)
            active = alive & (index < count)
            params = _select(active, new_params, params)
            opt_state = _select(active, new_opt_state, opt_state)
            alive = alive & ((index >= count) | (jnp.isfinite(outputs.loss) & jnp.isfinite(outputs.grad_norm)))
            return (params, opt_state, alive), outputs

        carry = (params, opt_state, jnp.asarray(True))
        (params, opt_state, _), outputs = jax.lax.scan(body, carry, jnp.arange(chunk))
        return params, opt_state, outputs

    return run


def make_checked_chunk(objective: Objective, chunk: int, every: int, check: Callable,
                       loss_and_grad: Callable | None = None, sample: Callable | None = None) -> Callable:
    """Un-jitted ``run(params, opt_state, start, count, member, target, held_out) -> (params, opt_state,
    StepOutputs [chunk], done, kls [chunk // every + 1])``: :func:`make_member_chunk`'s steps with the held-out check
    of ``train.until_kl`` (``cogmeta.held_out_check``) after every step whose count is a multiple of ``every``.

    A ``lax.while_loop`` over segments that end at those multiples: each runs the segment's steps (a masked scan
    of ``every``), then ``check(params, held_out) -> KL`` where the segment ended on a multiple, and the loop ends
    after ``count`` steps, at the first check below ``target`` or after a segment with a non-finite loss or
    gradient (no check follows it). ``done``: the steps attempted (the outputs' valid prefix, as ``count`` is for
    :func:`make_member_chunk`); ``kls``: the checks' KLs in order (NaN past the last). Stopping inside the
    program is the point: a check that returned to Python cost a call, a transfer and a dispatch each
    (docs/performance.md, "The checks inside the training call").
    """
    segment = make_member_chunk(objective, every, loss_and_grad, sample)
    most_checks = chunk // every + 1  # the multiples of `every` in (start, start + chunk], whatever the start

    def run(params, opt_state, start, count, member, target, held_out):
        shapes = jax.eval_shape(lambda: segment(params, opt_state, start, count, member)[2])
        # one segment past `chunk`: a segment's outputs are written whole at its offset, also where it ends the call
        buffers = jax.tree.map(lambda leaf: _filled(leaf, (chunk + every,) + leaf.shape[1:], 0), shapes)
        nan = _filled(shapes.loss, (), jnp.nan)

        def body(state):
            done, params, opt_state, outputs, kls, checked, _ = state
            step = start + done
            length = jnp.minimum(every - step % every, count - done)
            params, opt_state, new = segment(params, opt_state, step, length, member)
            outputs = jax.tree.map(lambda buffer, part: jax.lax.dynamic_update_slice_in_dim(buffer, part, done, 0),
                                   outputs, new)
            valid = jnp.arange(every) < length
            finite = jnp.all(~valid | (jnp.isfinite(new.loss) & jnp.isfinite(new.grad_norm)))
            due = finite & ((step + length) % every == 0)
            kl = jax.lax.cond(due, lambda p: check(p, held_out).astype(nan.dtype), lambda p: nan, params)
            kls = jax.lax.dynamic_update_index_in_dim(kls, jnp.where(due, kl, kls[checked]), checked, 0)
            return done + length, params, opt_state, outputs, kls, checked + due, ~finite | (due & (kl < target))

        def pending(state):
            return (state[0] < count) & ~state[-1]

        state = (jnp.zeros((), jnp.int32), params, opt_state, buffers, _filled(shapes.loss, (most_checks,), jnp.nan),
                 jnp.zeros((), jnp.int32), jnp.asarray(False))
        done, params, opt_state, outputs, kls, _, _ = jax.lax.while_loop(pending, body, state)
        return params, opt_state, jax.tree.map(lambda buffer: buffer[:chunk], outputs), done, kls

    return run


def _filled(like: jax.ShapeDtypeStruct, shape: tuple, value) -> jax.Array:
    """An array of ``shape`` full of ``value``, of ``like``'s dtype and mesh (a data-parallel trainer's values are
    typed by the mesh of its explicit axes, and a loop's carry or an update must match it)."""
    sharding = getattr(like, "sharding", None)
    mesh = isinstance(sharding, jax.sharding.NamedSharding)
    return jax.lax.full(shape, value, like.dtype, sharding=jax.sharding.NamedSharding(sharding.mesh, jax.P()) if mesh
                        else None)


def make_run_steps(objective: Objective, chunk: int, member: dict, loss_and_grad: Callable | None = None,
                   sample: Callable | None = None, checked: tuple[int, Callable] | None = None) -> Callable:
    """``run(params, opt_state, start, count) -> (params, opt_state, StepOutputs [chunk])``: one member's
    :func:`make_member_chunk` (see there, also for ``loss_and_grad`` and ``sample``), jitted. With
    ``checked = (every, check)``: :func:`make_checked_chunk`'s ``run(params, opt_state, start, count, target,
    held_out) -> (params, opt_state, StepOutputs [chunk], done, kls)``.

    The member (seed, learning rate, ...) is an argument of the compiled program, not a constant in it, so runs
    of every seed and learning rate share one program: a second seed loads the first one's executable from
    the persistent compilation cache instead of compiling again (measured: the first call of a ``cogmeta train
    --until-kl`` run of a new seed took 2.2-2.4 s with the seed baked in, 0.5-0.6 s as an argument).
    """
    program = jax.jit(make_member_chunk(objective, chunk, loss_and_grad, sample) if checked is None
                      else make_checked_chunk(objective, chunk, *checked, loss_and_grad, sample))
    calls = [program]  # what run() calls: the jitted program, or an executable given to run.use

    def run(params, opt_state, start, count, *held_out):
        return calls[0](params, opt_state, start, count, member, *held_out)

    # ``run.lower(...).compile()`` fills the caches that ``run`` then hits (``Trainer(compile_ahead=True)``)
    run.lower = lambda params, opt_state, start, count, *held_out: program.lower(params, opt_state, start, count,
                                                                                  member, *held_out)
    # ``run.lower_flat(...)``: the same program of flat leaves, as the executable store keeps it (``flat_lowering``)
    run.lower_flat = lambda params, opt_state, start, count, *held_out: flat_lowering(
        program, params, opt_state, start, count, member, *held_out)
    # ``run.use(compiled)``: call that program instead (a ``FlatProgram`` of the executable store)
    run.use = lambda compiled: calls.__setitem__(0, compiled)
    return run


class Trainer:
    """One training run of ``objective``: its parameters, optimizer state and step count.

    Args:
        objective: what to train (see :class:`Objective`).
        checkpoint: resume from a :class:`~cogmeta.contract.Checkpoint` (either framework's): weights,
            optimizer moments and the step count (which also sets the schedule and the batch stream).
        seed: the run's seed (default ``objective.train.seed``).
        steps_per_call: optimizer steps per compiled ``lax.scan`` call of :meth:`run`.
        compile_ahead: compile :meth:`run`'s program on a background thread from the trainer's construction on (for
            a trainer whose next act is :meth:`run`: ``jax_impl.launch.make_trainer``). XLA compiles one program at a
            time in a process, so what overlaps the training program's compilation (GRU-64: 1.5-1.8 s cold on the
            2-core VM) is the Python half of the setting up: drawing the model, writing the run folder, tracing
            the first held-out check (measured in process, cold, first 100 steps: 2.25-2.34 s without, 2.04-2.15 s
            with, when drawing the model still ran JAX programs). The first :meth:`run` waits for the thread and then finds the program compiled. Any failure
            there only means the first call compiles, as without it.
        stored_as: with ``compile_ahead``, a JSON-able description that determines the program together with the
            library's code (for ``launch.make_trainer``: the run's configuration less the member's seed and learning
            rate): where the ``cogmeta`` command turned on the executable store (``jax_impl.executable_store``), the
            thread loads the compiled program from it, skipping tracing and lowering (the warm start: 0.3-0.4 s to
            0.1 s for the README's run), or compiles and stores it. Without it, or with the store off, as before.
        until: the held-out check of ``train.until_kl`` (``cogmeta.held_out_check.HeldOutCheck``) that
            :meth:`run_checked` runs inside its compiled call (objectives with ``held_out_kl``); ``compile_ahead``
            then prepares that program.
    """

    def __init__(self, objective: Objective, checkpoint: Checkpoint | None = None, *, seed: int | None = None,
                 steps_per_call: int = 500, compile_ahead: bool = False, stored_as: Mapping | None = None,
                 until: HeldOutCheck | None = None):
        self.objective = objective
        self.seed = objective.train.seed if seed is None else int(seed)
        self.member = objective.member(self.seed)
        self.step = 0
        self.chunk_size = steps_per_call
        self.until = until
        if until is not None and not hasattr(objective, "held_out_kl"):
            raise ValueError(f"{type(objective).__name__} has no held-out KL to check (train.until_kl is for the "
                             f"tutorial's meta-learner); leave until_kl unset")
        self._run = self._make_run()
        self._run_checked = None if until is None else self._make_run(checked=True)
        self._held_out = None if until is None else self._place_held_out(until)
        store = store_from_environment() if compile_ahead and stored_as is not None else None
        # the key here, not on the thread: ~10 ms of Python, which the thread would take in the slices of the
        # interpreter lock that drawing the model leaves it (40-70 ms measured)
        self._stored = None if store is None else (store, training_key(stored_as, type(self).__qualname__,
                                                                       steps_per_call))
        #: where the first call's program came from: "prefetched" (a stored executable loaded during start-up:
        #: ``jax_impl.program_keys``), "store" (a stored executable), "stored" (compiled and stored now),
        #: "compiled" (JAX's caches, ahead of the call) or None (the first call compiles it)
        self.program_source: str | None = None
        self._compiling = self._compile_ahead() if compile_ahead else None
        self.params = objective.init(self.seed)
        self.opt_state = init_adam(self.params)
        if checkpoint is not None:
            self._restore(checkpoint)
        self._run_on = make_train_on_batches(objective)

    def _make_run(self, checked: bool = False) -> Callable:
        """:meth:`run`'s ``(params, opt_state, start, count) -> (params, opt_state, StepOutputs)``, with ``.lower``;
        ``checked``: :meth:`run_checked`'s (``make_run_steps``' ``checked``)."""
        check = (self.until.every, self.objective.held_out_kl) if checked else None
        return make_run_steps(self.objective, self.chunk_size, self.member, checked=check)

    def _place_held_out(self, until: HeldOutCheck) -> tuple:
        """``(target, held_out)`` as :meth:`run_checked`'s program takes them (:func:`held_out_arrays`), the held-out
        set on the device (once)."""
        target, held_out = held_out_arrays(until, _dtype(self.objective.train))
        return target, self._put_held_out(held_out)

    def _put_held_out(self, held_out: dict):
        """The held-out set's numpy arrays where the check reads them (the data-parallel trainer splits them)."""
        return jax.device_put(held_out)

    def _abstract_state(self, params):
        """The abstract ``(params, opt_state)`` that :meth:`run` will pass (the data-parallel trainer adds their
        placement)."""
        return params, jax.eval_shape(init_adam, params)

    def _abstract_held_out(self) -> tuple:
        """The abstract ``(target, held_out)`` that :meth:`run_checked` will pass (the data-parallel trainer adds
        their placement)."""
        return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), self._held_out)

    def _compile_ahead(self) -> threading.Thread:
        x64 = bool(jax.config.jax_enable_x64)  # ``jax.enable_x64(...)`` contexts are thread-local: carry it over

        first = self._run if self._run_checked is None else self._run_checked  # what the first call will run

        def arguments():
            params, opt_state = self._abstract_state(jax.eval_shape(lambda: self.objective.init(self.seed)))
            # start and count: int32 scalars as run() passes them (their values are not compiled in)
            held_out = () if self._run_checked is None else self._abstract_held_out()
            return params, opt_state, _step_scalar(0), _step_scalar(self.chunk_size), *held_out

        def compile_program():
            try:
                with jax.enable_x64(x64):
                    if self._stored is None:
                        first.lower(*arguments()).compile()
                        self.program_source = "compiled"
                        return
                    store, key = self._stored
                    program, self.program_source = store.load_or_compile(
                        key, lambda: first.lower_flat(*arguments()))
                    first.use(program)
            except Exception:  # noqa: BLE001 (an objective whose init or batches do not trace: the first call compiles)
                self.program_source = None
                logging.getLogger(__name__).debug("compiling ahead failed; the first call compiles", exc_info=True)

        # Not a daemon: the interpreter waits for it at exit. A daemon thread still inside XLA's compiler while
        # the interpreter finalizes aborts the process (SIGABRT; a trainer built and never run).
        thread = threading.Thread(target=compile_program, name="cogmeta-compile-ahead", daemon=False)
        thread.start()
        return thread

    def run(self, count: int) -> StepMetrics:
        """Up to ``count`` updates on the objective's own batches, in one compiled call; stops before applying
        one whose loss or gradient is non-finite."""
        self._ready_for(count)
        params, opt_state, outputs = self._run(self.params, self.opt_state, _step_scalar(self.step), _step_scalar(count))
        return self._advance(params, opt_state, outputs, count)

    def run_checked(self, count: int) -> tuple[StepMetrics, list[tuple[int, float]]]:
        """Up to ``count`` updates with the held-out check of :attr:`until` after every step whose count is a
        multiple of ``until.every``, in one compiled call (:func:`make_checked_chunk`) that ends at the first check
        below ``until.target`` or before applying a non-finite update: the metrics of the steps attempted and
        ``(step, KL)`` of every check made, in order."""
        if self.until is None:
            raise ValueError("this trainer has no held-out check: build it with until=HeldOutCheck.of(config), for a "
                             "config with train.until_kl")
        self._ready_for(count)
        start = self.step
        params, opt_state, outputs, done, kls = self._run_checked(self.params, self.opt_state, _step_scalar(start),
                                                                  _step_scalar(count), *self._held_out)
        metrics = self._advance(params, opt_state, outputs, int(done))
        steps = self.until.check_steps(start, self.step - start)
        return metrics, list(zip(steps, np.asarray(kls)[:len(steps)].tolist()))

    def _ready_for(self, count: int) -> None:
        """Refuse a ``count`` that one compiled call cannot run; wait for the program compiling ahead (rather than
        compile the same program a second time beside it)."""
        if not 0 <= count <= self.chunk_size:
            raise ValueError(f"count must lie in [0, {self.chunk_size}] (the trainer's steps_per_call, one compiled call), got {count}")
        if self._compiling is not None:
            self._compiling.join()
            self._compiling = None

    def run_on(self, batches) -> StepMetrics:
        """One update per given batch (a pytree with a leading axis, e.g. stacked episodes), in one compiled
        call; stops before applying one whose loss or gradient is non-finite."""
        count = int(jax.tree.leaves(batches)[0].shape[0])
        params, opt_state, outputs = self._run_on(self.params, self.opt_state, batches, jnp.asarray(self.step),
                                                  self.member)
        return self._advance(params, opt_state, outputs, count)

    def _advance(self, params, opt_state, outputs: StepOutputs, count: int) -> StepMetrics:
        loss, norm = np.asarray(outputs.loss)[:count], np.asarray(outputs.grad_norm)[:count]
        finite = np.isfinite(loss) & np.isfinite(norm)
        attempted = count if finite.all() else int(np.argmin(finite)) + 1
        self.params, self.opt_state = params, opt_state
        self.step += attempted if finite.all() else attempted - 1
        aux = {name: np.asarray(value)[:attempted] for name, value in outputs.aux.items()}
        return StepMetrics(loss[:attempted], norm[:attempted], np.asarray(outputs.learning_rate)[:attempted], aux)

    def weights(self) -> dict[str, np.ndarray]:
        return state_to_canonical(self.params)

    def predictive(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        """The objective's predictive on numpy ``observations`` (objectives that define ``predictive``)."""
        return self.objective.predictive(self.params, observations)

    def checkpoint(self) -> Checkpoint:
        adam = self.opt_state
        return Checkpoint(self.step, self.weights(), state_to_canonical(adam.exp_avg), state_to_canonical(adam.exp_avg_sq),
                          FRAMEWORK)

    def _restore(self, checkpoint: Checkpoint) -> None:
        self.params = canonical_to_state(self.params, checkpoint.params)
        adam = self.opt_state
        self.opt_state = adam._replace(
            count=jnp.asarray(checkpoint.step, adam.count.dtype),
            exp_avg=canonical_to_state(adam.exp_avg, checkpoint.exp_avg),
            exp_avg_sq=canonical_to_state(adam.exp_avg_sq, checkpoint.exp_avg_sq),
        )
        self.step = int(checkpoint.step)


def held_out_arrays(until: HeldOutCheck, dtype) -> tuple[np.ndarray, dict]:
    """``(target, held_out)`` of ``until`` in ``dtype`` (numpy): a scalar and
    ``{"observations": [T, N, 1], "exact": {name: [T, N]}}`` (every leaf's task axis is axis 1)."""
    dtype = np.dtype(dtype)
    held_out = {"observations": until.observations.astype(dtype),
                "exact": {name: np.asarray(value, dtype) for name, value in until.exact.items()}}
    return np.asarray(until.target, dtype), held_out


def _step_scalar(value: int) -> np.ndarray:
    """A step or step count as :meth:`Trainer.run`'s program takes it (int32; a numpy scalar, which jit transfers
    without the compiled conversion that ``jnp.asarray`` of a Python int runs the first time)."""
    return np.asarray(value, np.int32)


def default_member(train: TrainConfig, seed: int, learning_rate: float | None = None, **extra) -> dict:
    """``{"seed": int32, "learning_rate": float, **extra}``: a member dict (``learning_rate`` defaults to
    ``train.learning_rate``), in the run's dtype."""
    rate = train.learning_rate if learning_rate is None else learning_rate
    # device_put of numpy scalars: ``jnp.asarray`` of a Python number runs a compiled conversion per dtype (10-30 ms
    # each in a fresh process, on the critical path of a run's first call)
    return {"seed": jax.device_put(np.asarray(seed, np.int32)),
            "learning_rate": jax.device_put(np.asarray(rate, np.dtype(_dtype(train)))), **extra}


def _dtype(train: TrainConfig):
    return jnp.float64 if train.dtype == "float64" else jnp.float32


def _update(params, grads, state: AdamState, lr, train: TrainConfig, apply):
    """Adam (``jax_impl.optim.adam_step``) or SGD (p - lr g, the count still advancing), where ``apply``."""
    if train.optimizer == "adam":
        return adam_step(params, grads, state, lr, train, apply=apply)
    lr = jnp.asarray(lr)
    new_params = jax.tree.map(lambda p, g: p - lr.astype(p.dtype) * g, params, grads)
    new_state = state._replace(count=optax.safe_increment(state.count))
    return _select(apply, new_params, params), _select(apply, new_state, state)


def _select(condition: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def stack_on_host(trees: Sequence):
    """S pytrees of equal structure -> one pytree of ``[S, ...]`` arrays, stacked by numpy on the host.

    ``jnp.stack`` of S leaves compiles a concatenation of S operands for every new S (measured: ~1 s at
    S = 400 per leaf shape); numpy stacks without compiling. PRNG key arrays have no numpy form and are
    stacked by ``jnp.stack``, and so are Python scalars (whose dtype JAX, not numpy, must choose).
    """

    def stack(*leaves):
        arrays = all(isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves)
        if not arrays or jax.dtypes.issubdtype(leaves[0].dtype, jax.dtypes.prng_key):
            return jnp.stack([jnp.asarray(leaf) for leaf in leaves])
        return jnp.asarray(np.stack([np.asarray(leaf) for leaf in leaves]))

    return jax.tree.map(stack, *trees)


#: Runs from which :func:`init_runs` draws fresh parameters in one compiled program (objectives may pass their own
#: threshold). A module built one by one, its weights drawn on the host (``jax_impl.host_random``), takes 2-3 ms
#: (the tutorial GRU-64 2.3 ms, RL²'s agent 2.8 ms: 256 engine members 0.6-0.7 s), while the compiled draw costs a
#: trace and a compilation per member count (GRU-64: 1.7-2.0 s cold, 0.3-0.4 s from the ``cogmeta`` command's
#: compilation cache) and then milliseconds: break-even near 150 members with a warm cache, ~800 on a first run.
COMPILED_INIT_FROM = 512


@functools.lru_cache(maxsize=32)
def compiled_init(module: type[nnx.Module], *args, **kwargs) -> Callable:
    """``seeds [S] (int32) -> params [S, ...]``: the parameters of ``module(*args, rngs=nnx.Rngs(jax.random.key(seed)),
    **kwargs)`` for every seed in one jitted ``vmap``, one program per module and (hashable) arguments. The same key
    as ``nnx.Rngs(seed)``, hence the same draws as building each module eagerly (tested bit for bit for the tutorial
    model, RL²'s agent and learning to infer's participant)."""
    build = lambda seed: module(*args, rngs=nnx.Rngs(jax.random.key(seed)), **kwargs)  # noqa: E731
    return jax.jit(jax.vmap(lambda seed: nnx.split(build(seed))[1]))


def init_runs(seeds: Sequence[int], init: Callable[[int], Any], compiled: Callable[[], Callable] | None = None,
              compiled_from: int | None = None):
    """Stacked ``[S, ...]`` initial parameters of runs ``seeds``: ``init(seed)`` one by one, or, from ``compiled_from``
    (default :data:`COMPILED_INIT_FROM`) seeds in [0, 2^31) on, ``compiled()`` (a :func:`compiled_init`) on all."""
    seeds = [int(seed) for seed in seeds]
    threshold = COMPILED_INIT_FROM if compiled_from is None else compiled_from
    if compiled is None or len(seeds) < threshold or not all(0 <= seed < 2**31 for seed in seeds):
        return stack_on_host([init(seed) for seed in seeds])
    return compiled()(jnp.asarray(seeds, jnp.int32))


def stack_members(members: list[Mapping]) -> dict:
    """Member dicts -> one dict of ``[S]`` arrays (the leading axis that the engine maps over)."""
    return stack_on_host([dict(m) for m in members])


__all__ = ["COMPILED_INIT_FROM", "FRAMEWORK", "Objective", "StepOutputs", "Trainer", "compiled_init", "default_member",
           "held_out_arrays", "init_runs", "make_checked_chunk", "make_member_chunk", "make_run_steps",
           "make_train_on_batches", "make_train_step", "stack_members", "stack_on_host"]
