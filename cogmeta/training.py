"""The framework-free training driver: run folder, chunked loop, logging, checkpoints, figures.

The backend's ``Trainer`` runs optimizer steps (one Python step at a time in PyTorch, many steps per
compiled ``lax.scan`` call in JAX); this driver decides how many steps to ask for, logs the metrics,
writes checkpoints atomically, stops on a non-finite loss while keeping the last good state, and
writes the final weights and figures.

The writing process holds the run folder's lock (``cogmeta.runs.lock_folder``) from before its first
write to the end, and writes the step-0 checkpoint before ``config.json``: a folder that holds a config
always holds a checkpoint, so a run killed at any moment can be resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from cogmeta.backends import load_module
from cogmeta.checkpoint import checkpoint_step, load_checkpoint, save_checkpoint
from cogmeta.config import RunConfig
from cogmeta.contract import NonFiniteLossError, StepMetrics, TrainResult
from cogmeta.evaluation import HELD_OUT_SEED, held_out_observations, score_predictions
from cogmeta.held_out_check import held_out_set
from cogmeta.metrics_log import MetricsLog
from cogmeta.progress import progress_bar
from cogmeta.runs import RunDir, folder_holder, locked_error
from cogmeta.weights import save_weights


def train(
    config: RunConfig,
    run_dir: str | Path,
    backend: str,
    *,
    resume: bool = False,
    progress: bool = True,
    figures: bool = True,
    devices: int | None = None,
    workload: "Workload | None" = None,
) -> TrainResult:
    """Train the model of ``config`` with ``backend`` ("torch" or "jax") into ``run_dir``: the one entry point
    for every model family (the tutorial meta-learner's loop is below; other families' drivers are named in
    ``cogmeta.families``).

    Args:
        config: the run. With ``resume=True`` it must equal the stored config except ``train.steps``.
        run_dir: folder to create (must not hold a run already, unless resuming).
        backend: framework that trains.
        resume: continue from ``RUN/checkpoint.safetensors`` (from step 0 with the stored config if the
            folder has none: a run that stopped before its first checkpoint was written).
        progress: show a progress bar.
        figures: write the learning-curve and predictive figures at the end.
        devices: data-parallel training (``cogmeta.distributed``): JAX splits every batch over this many
            devices of a mesh; PyTorch must be started by ``torchrun`` (then it defaults to, and must
            equal, the number of processes). ``None``: one device, or torchrun's world size.
        workload: what this loop trains and how it scores it (a family driver passes its own; default: the
            family's driver decides, the tutorial meta-learner's is :data:`PREDICTIVE`).
    """
    if workload is None and config.family.driver != __name__:  # the family's driver (``cogmeta.families``)
        driver = config.family.load_driver()
        if not hasattr(driver, "WORKLOAD"):  # a family with a loop of its own (seq2seq: episodes drawn in Python)
            return driver.train_run(config, run_dir, backend, resume=resume, progress=progress, figures=figures,
                                    devices=devices)
        workload = driver.WORKLOAD
    workload = PREDICTIVE if workload is None else workload
    run = RunDir.at(run_dir)
    checkpoint = None
    if resume:
        config = resumable_config(run, config)
        if run.checkpoint.is_file():
            checkpoint = load_checkpoint(run.checkpoint, config)
        elif run.weights.is_file():  # a finished run whose checkpoint is gone: do not retrain it from scratch
            raise FileNotFoundError(f"cannot resume: {run.checkpoint} does not exist (the run's final weights do)")
    elif run.config.exists():
        _refuse_existing_run(run)
    # The clock of the run (and of its time to quality) starts here: JAX compiles its first training program
    # while the trainer draws the model (``compile_ahead``), so building the trainer is part of training; importing
    # the framework (0.8-1.1 s of torch, jax and flax) is start-up, as it was before that, so it comes first.
    prepare = getattr(workload, "prepare", None)
    if prepare is not None:  # start-up work that needs no model, beside the framework's remaining imports
        prepare(config, devices, backend)
    load_module(backend, "launch")
    began = time.perf_counter()
    # Built before anything is written: in a data-parallel run this is where the workers meet (and
    # agree on the config), so no worker sees files that another one has just created.
    trainer = workload.make_trainer(config, checkpoint, devices, backend)
    built = time.perf_counter() - began
    try:
        with _writer_lock(run, trainer, resume):
            return _train_loop(config, run, backend, trainer, checkpoint, progress, figures, workload, began, built)
    finally:
        close = getattr(trainer, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def _writer_lock(run: RunDir, trainer, resume: bool):
    """The run folder's lock, held by the process that writes (data-parallel runs: rank / process 0 only)."""
    if not getattr(trainer, "is_writer", True):
        yield
        return
    with run.writing():
        if not resume and run.config.exists():  # another process finished a run here since the check above
            _refuse_existing_run(run)
        yield


def _refuse_existing_run(run: RunDir):
    holder = folder_holder(run.root)
    if holder is not None:
        raise locked_error(run.root, holder)
    raise FileExistsError(f"{run.root} already holds a run; continue it with --resume or choose a new output folder")


def _train_loop(config: RunConfig, run: RunDir, backend: str, trainer, checkpoint, progress: bool,
                figures: bool, workload: "Workload", began: float, built: float) -> TrainResult:
    writer = getattr(trainer, "is_writer", True)  # data-parallel runs: only rank / process 0 writes
    start = checkpoint.step if checkpoint else 0
    if writer:
        run.root.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:  # before config.json: a folder with a config can always be resumed
            save_checkpoint(run.checkpoint, trainer.checkpoint(), config)
        config.save(run.config)
    log = MetricsLog(run.metrics) if writer else _NoLog()
    if start == 0:
        log.reset()  # a fresh start, or a resume at step 0: everything is logged again
    else:
        log.truncate_after(start)  # and a torn last line

    held_out = workload.held_out(config, backend)
    metric = workload.metric
    total = config.train.steps
    target = config.train.until_kl
    reached: tuple[int, float, float] | None = None  # (step, training seconds, KL) of the first check below target
    # where the seconds to the target go (printed with it): JAX compiles while building the trainer or in its first
    # call; the checks of until_kl run inside the calls (Trainer.run_checked), "checks" is the step-0 one
    parts = {"trainer": built, "first_call": 0.0, "later_calls": 0.0, "checks": 0.0}
    logger = _WindowLogger(config.train.log_every, start)
    bar = progress_bar(progress and writer, total, f"train ({backend})", initial=start)
    try:
        next_checkpoint = (start // config.train.checkpoint_every + 1) * config.train.checkpoint_every
        next_eval = (start // config.train.eval_every + 1) * config.train.eval_every
        if (start == 0 and writer) or target is not None:
            timed = time.perf_counter()
            kl = held_out(trainer)
            parts["checks"] += time.perf_counter() - timed
            if start == 0 and writer:
                log.append([(0, metric, kl)])
            if target is not None and kl < target:
                reached = (start, time.perf_counter() - began, kl)
        while trainer.step < total and reached is None:
            before = trainer.step
            # Stop at the next evaluation or checkpoint so that they happen at exact multiples. (A JAX call always
            # scans steps_per_call steps and masks the rest, so keep those multiples of it.)
            count = int(min(trainer.chunk_size, total - before, next_eval - before, next_checkpoint - before))
            timed = time.perf_counter()
            metrics, checks = (trainer.run(count), []) if target is None else trainer.run_checked(count)
            parts["first_call" if before == start else "later_calls"] += time.perf_counter() - timed
            finite = np.isfinite(metrics.loss) & np.isfinite(metrics.grad_norm)
            done = int(np.argmin(finite)) if not finite.all() else len(metrics.loss)
            rows = logger.add(metrics, done)
            for step, kl in checks:  # every check is a row of the held-out score; the first below target ends the run
                rows.append((step, metric, kl))
                if kl < target and reached is None:
                    reached = (step, time.perf_counter() - began, kl)
            log.append(sorted(rows, key=lambda row: row[0]))
            if bar is not None:
                bar.update(done)
                if done:
                    bar.set_postfix(loss=f"{float(np.mean(metrics.loss[:done])):.4f}")
            if done < len(metrics.loss):
                if writer:
                    _save_checkpoint(run, trainer, config, log)
                raise NonFiniteLossError(
                    f"non-finite loss or gradient (loss {metrics.loss[done]}, gradient norm {metrics.grad_norm[done]}) "
                    f"at step {before + done}; training stopped and the last "
                    f"good state (step {trainer.step}) was saved to {run.checkpoint}. Try a lower learning_rate or "
                    f"clip_norm, or float64."
                )
            if trainer.step >= next_eval or trainer.step >= total or reached is not None:
                log.append(logger.flush())
                checked = bool(checks) and checks[-1][0] == trainer.step  # a check of this step is logged already
                if writer and not checked:
                    log.append([(trainer.step, metric, held_out(trainer))])
                next_eval = (trainer.step // config.train.eval_every + 1) * config.train.eval_every
            if trainer.step >= next_checkpoint or trainer.step >= total or reached is not None:
                if writer:
                    _save_checkpoint(run, trainer, config, log)
                next_checkpoint = (trainer.step // config.train.checkpoint_every + 1) * config.train.checkpoint_every
        if reached is not None and trainer.step == start and writer:
            _save_checkpoint(run, trainer, config, log)  # already below target when it began
        log.append(logger.flush())
    finally:
        if bar is not None:
            bar.close()
    weights = trainer.weights()
    if writer:
        save_weights(run.weights, weights, config, framework=backend)
    if figures and writer:
        workload.write_figures(run, config, weights, backend)
    final = logger.last_loss
    result = TrainResult(run.root, trainer.step, final, time.perf_counter() - began, writer,
                         program_source=getattr(trainer, "program_source", None))
    if reached is not None:
        result.until_kl_step, result.until_kl_seconds, result.until_kl_value = reached
        result.until_kl_parts = parts
    return result


def _save_checkpoint(run: RunDir, trainer, config: RunConfig, log) -> None:
    """fsync the metrics rows logged so far, then write the checkpoint that vouches for them."""
    log.sync()
    save_checkpoint(run.checkpoint, trainer.checkpoint(), config)


class Workload(Protocol):
    """What the run-folder loop of :func:`train` needs from a model family besides the config.

    Attributes:
        metric: the name of the held-out score logged to ``metrics.csv`` (e.g. ``heldout_kl``).
    """

    metric: str

    def make_trainer(self, config: RunConfig, checkpoint, devices: int | None, backend: str):
        """The backend's one trainer on the family's objective (``cogmeta.contract.Trainer``)."""

    def held_out(self, config: RunConfig, backend: str) -> Callable[[Any], float]:
        """``score(trainer) -> float`` on a fixed held-out set (``train.eval_tasks`` tasks)."""

    def score_weights(self, config: RunConfig, weights, backend: str, num_tasks: int) -> float:
        """The held-out score of canonical ``weights`` on ``num_tasks`` tasks (sweep members)."""

    def write_figures(self, run: RunDir, config: RunConfig, weights, backend: str) -> None:
        """The run's figures into ``RUN/figures``."""

    # Optional: ``prepare(config, devices, backend)``, called before the backend's trainer module is imported (and
    # before the run's clock starts), for start-up work that needs no model (:meth:`PredictiveWorkload.prepare`).


class PredictiveWorkload:
    """The tutorial meta-learner's: the backend's ``launch.make_trainer`` (one device or data-parallel), the mean
    exact KL(Bayes || model) over t on fixed held-out observations, the learning-curve and predictive figures."""

    metric = "heldout_kl"

    def prepare(self, config: RunConfig, devices: int | None, backend: str) -> None:
        """JAX: start loading the run's two compiled programs from the executable store on a thread, while Flax and
        the library are still being imported (``jax_impl.program_keys.prefetch``; only in the ``cogmeta`` command,
        which turns the store on). PyTorch compiles nothing, so it has nothing to load."""
        if backend == "jax":
            load_module(backend, "program_keys").prefetch(config, devices)

    def make_trainer(self, config: RunConfig, checkpoint, devices: int | None, backend: str):
        return load_module(backend, "launch").make_trainer(config, checkpoint, devices)

    def held_out(self, config: RunConfig, backend: str) -> Callable[[Any], float]:
        observations = held_out_set(config)
        return lambda trainer: score_predictions(config.task, observations, trainer.predictive(observations)).mean_kl

    def score_weights(self, config: RunConfig, weights, backend: str, num_tasks: int) -> float:
        observations = held_out_observations(config.task, num_tasks, HELD_OUT_SEED + 1)
        predictive = load_module(backend, "backend").predict(config, weights, observations)
        return score_predictions(config.task, observations, predictive).mean_kl

    def write_figures(self, run: RunDir, config: RunConfig, weights, backend: str) -> None:
        from cogmeta.figures import write_run_figures

        write_run_figures(run, config, weights, backend)


PREDICTIVE = PredictiveWorkload()


def workload_of(config: RunConfig) -> Workload:
    """The :class:`Workload` of ``config``'s model family: its driver's ``WORKLOAD`` (the meta-learner's:
    :data:`PREDICTIVE`); a family whose driver runs its own loop (seq2seq) has none (ValueError)."""
    driver = config.family.load_driver()
    if driver.__name__ == __name__:
        return PREDICTIVE
    if not hasattr(driver, "WORKLOAD"):
        raise ValueError(f"model family {config.model.family!r} trains through its own driver ({driver.__name__}), "
                         f"not the shared run-folder loop")
    return driver.WORKLOAD


def resumable_config(run: RunDir, config: RunConfig) -> RunConfig:
    """``config`` after checking that it may continue ``run``: equal to the stored config in every field but
    ``train.steps``; a changed total must exceed the step of the run's checkpoint.

    Errors list each differing field with both values. A checkpoint beyond the stored total is left to
    ``load_checkpoint`` (a damaged file, not a bad request).
    """
    if not run.config.is_file():
        raise FileNotFoundError(f"cannot resume: {run.config} does not exist")
    stored = RunConfig.load(run.config)
    requested = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=stored.train.steps))
    if requested != stored:

        def flatten(data, prefix=""):
            if not isinstance(data, dict):
                return {prefix[:-1]: data}
            return {key: value for name, item in data.items() for key, value in flatten(item, f"{prefix}{name}.").items()}

        have, want = flatten(stored.to_dict()), flatten(requested.to_dict())
        differences = [f"{key}: {have.get(key, '(absent)')!r} in the run, {want.get(key, '(absent)')!r} requested"
                       for key in sorted(set(have) | set(want)) if have.get(key) != want.get(key)]
        raise ValueError(f"cannot resume {run.root} with a different config; only train.steps may change: "
                         f"{'; '.join(differences)} (stored config: {run.config})")
    if config.train.steps != stored.train.steps and config.family.fixed_length:
        raise ValueError(f"cannot resume {run.root} with train.steps={config.train.steps}: a run of model family "
                         f"{config.model.family!r} draws its whole training stream for its {stored.train.steps} steps "
                         f"when it starts; resume it with --steps {stored.train.steps} (or leave --steps out), or "
                         f"train a new run")
    done = checkpoint_step(run.checkpoint)
    if config.train.steps != stored.train.steps and done is not None and done <= stored.train.steps \
            and config.train.steps <= done:
        raise ValueError(f"cannot resume {run.root} with train.steps={config.train.steps}: its checkpoint "
                         f"{run.checkpoint} has already trained {done} steps; give a larger total (--steps N, N > {done})")
    return config


class _NoLog:
    """Stands in for the metrics log in workers that do not write files."""

    def append(self, rows) -> None:
        del rows

    def truncate_after(self, step: int) -> None:
        del step

    def reset(self) -> None:
        pass

    def sync(self) -> None:
        pass


class _WindowLogger:
    """Turns per-step metrics (the objective's ``aux`` included) into one row per ``log_every`` steps (window means)."""

    def __init__(self, every: int, start: int) -> None:
        self.every, self.step = every, start
        self.buffer: dict[str, list[float]] = {"loss": [], "grad_norm": []}
        self.learning_rate = math.nan
        self.last_loss = math.nan

    def add(self, metrics: StepMetrics, count: int) -> list[tuple[int, str, float]]:
        rows = []
        for i in range(count):
            self.buffer["loss"].append(float(metrics.loss[i]))
            self.buffer["grad_norm"].append(float(metrics.grad_norm[i]))
            for name, values in metrics.aux.items():  # the objective's extras (e.g. the rl2 episode reward)
                self.buffer.setdefault(name, []).append(float(values[i]))
            self.learning_rate = float(metrics.learning_rate[i])
            self.step += 1
            if self.step % self.every == 0:
                rows.extend(self.flush())
        return rows

    def flush(self) -> list[tuple[int, str, float]]:
        if not self.buffer["loss"]:
            return []
        self.last_loss = float(np.mean(self.buffer["loss"]))
        rows = [(self.step, name, float(np.mean(values))) for name, values in self.buffer.items()]
        rows.append((self.step, "learning_rate", self.learning_rate))
        self.buffer = {name: [] for name in self.buffer}
        return rows


def score_run(run_dir: str | Path, backend: str, count: int) -> dict[str, float]:
    """The run's final score on ``count`` held-out tasks: ``{"mean_kl": mean KL(Bayes || model) in nats}``
    (``cogmeta train --seeds`` reports it per seed and as mean +- sem)."""
    from cogmeta.evaluation import evaluate
    from cogmeta.weights import load_weights

    run = RunDir.at(run_dir)
    config = RunConfig.load(run.config)
    return {"mean_kl": evaluate(config, load_weights(run.weights, config), backend, num_tasks=count).mean_kl}
