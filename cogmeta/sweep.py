"""Sweeps: seeds x a grid of settings, trained by a backend's engine, one run folder per member.

    members = seeds x product(grid values)      e.g. --seeds 4 --grid lr=1e-3,3e-3 --grid hidden=32,64

Members that differ only in seed and learning rate share shapes, so a backend's engine
(``jax_impl.engine``, ``torch_impl.engine``) trains them together in one program; every other grid key
(hidden size, cell, batch size, task parameters, ...) changes the program, so each of its values is a
separate group, trained one after the other.

Output folder:

    OUT/member-000/ ...     one ordinary run folder per member (config.json with the member's seed and
                            learning rate, weights.safetensors loadable by either framework, metrics.csv)
    OUT/summary.csv         one row per member: its settings, steps, final loss, held-out score (the exact KL;
                            rl2: the expected total reward)
    OUT/summary.md          the same as a markdown table

``workers`` > 1 splits the members over that many processes, each pinned to one CPU of those this process
may use (member ``i`` goes to worker ``i mod workers``; within a worker the grouping above applies). The
members are independent runs, so a second core raises a sweep's throughput (1.3-1.6x measured on a 2-core
VM, docs/performance.md), where one process could only use it inside a program (XLA's threads, PyTorch's
intra-op threads, which models of this size do not fill). ``workers="auto"`` (the command's default,
:func:`auto_workers`) uses every core: JAX's engine families in one process, whose engine splits the members
over one host device per CPU (``cogmeta.host_devices``, ``jax_impl.engine``; 2.0-2.6x measured), everything
else in one process per CPU once the sweep is long enough to repay starting them. Which worker a member lands on does not change
its weights in PyTorch (``loop`` or ``vmap``) or JAX's ``loop`` (bit for bit, ``tests/test_sweep.py``);
JAX's ``vmap`` and ``map`` batch a worker's members together, which may round differently in the last bit.

The sweep holds ``OUT/.lock`` for its whole run and each member's ``.lock`` while writing it
(``cogmeta.runs.lock_folder``), so a second sweep or training run into the same folder fails at once.

Framework-free: the backend is imported only by :func:`run_sweep`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cogmeta.backends import BACKENDS, load_module
from cogmeta.config import ModelConfig, RunConfig, TrainConfig
from cogmeta.contract import MemberRun
from cogmeta.cpu_workers import auto_processes, require_workers, run_pinned, usable_cpus
from cogmeta.io import atomic_write_text
from cogmeta.runs import RunDir, lock_folder

#: Short names accepted in ``--grid`` (any field of the model, train or task section works too).
ALIASES = {"lr": "train.learning_rate", "hidden": "model.hidden_size", "batch": "train.batch_size",
           "layers": "model.num_layers"}
#: Settings a backend engine varies inside one program (one value per member).
VECTORIZED = ("train.seed", "train.learning_rate")


@dataclass(frozen=True)
class Member:
    """One run of a sweep: its index, its config and the grid values that made it."""

    index: int
    config: RunConfig
    settings: dict[str, Any]


def parse_grid(items: Sequence[str], config: RunConfig) -> dict[str, list[Any]]:
    """``["lr=1e-3,3e-3", "hidden=32,64"]`` -> ``{"train.learning_rate": [0.001, 0.003], "model.hidden_size": [32, 64]}``.

    Keys are aliases (:data:`ALIASES`), ``section.field`` or a bare field name of the model, train or
    task section; values are converted to the field's type. Errors name the bad item and how to fix it.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"grid item {item!r} must look like KEY=V1,V2,... (e.g. lr=1e-3,3e-3)")
        key, _, values = item.partition("=")
        path = _resolve_key(key.strip(), config)
        if path == "train.seed":
            raise ValueError("seeds are set with --seeds N (and --seed for the first), not in --grid")
        if path in grid:
            raise ValueError(f"grid key {key!r} is given twice")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not parts:
            raise ValueError(f"grid item {item!r} has no values; give KEY=V1,V2,...")
        current = _get(config, path)
        grid[path] = [_convert(path, part, current) for part in parts]
    return grid


def expand(config: RunConfig, seeds: Sequence[int], grid: dict[str, list[Any]]) -> list[Member]:
    """Every combination of grid values (outer) and seeds (inner), each a validated RunConfig."""
    members = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values))
        for seed in seeds:
            member = config
            for path, value in {**settings, "train.seed": int(seed)}.items():
                member = _set(member, path, value)
            members.append(Member(len(members), member, settings))
    return members


def group_members(members: Sequence[Member]) -> list[list[Member]]:
    """Members that differ only in :data:`VECTORIZED` settings, in order (one engine program each)."""
    groups: dict[RunConfig, list[Member]] = {}
    for member in members:
        groups.setdefault(_shared_config(member.config), []).append(member)
    return list(groups.values())


def run_sweep(config: RunConfig, out: str | Path, backend: str, seeds: Sequence[int], grid: dict[str, list[Any]],
              *, strategy: str = "auto", progress: bool = True, eval_tasks: int | None = None,
              workers: int | str = 1) -> list[dict[str, Any]]:
    """Train every member with ``backend``'s engine, write the run folders and the summary; return its rows.

    ``workers``: processes that share the members, one CPU each (module docstring); 1 trains them here;
    ``"auto"``: :func:`auto_workers`.
    """
    _require_backend(backend)  # before anything is written
    require_workers(workers)
    cpus = usable_cpus()
    out = Path(out)
    members = expand(config, seeds, grid)
    if workers == "auto":
        workers = auto_workers(members, backend, len(cpus))
    if any(member.config.bound.start_from is not None for member in members):
        raise ValueError("a sweep trains every member from fresh weights; bound.start_from (fine-tuning from a run) "
                         "is for single runs: `cogmeta train`, or `cogmeta experiment heuristics` for a whole grid")
    with lock_folder(out):
        if (out / "summary.csv").exists():
            raise FileExistsError(f"{out} already holds a sweep; choose a new output folder")
        workers = min(workers, len(members))
        if workers == 1:
            rows = train_members(out, members, backend, strategy, progress, eval_tasks)
        else:
            if progress:  # the bar below is worker 0's alone; say so, and how the members were split
                print(f"sweep: {len(members)} members over {workers} worker processes, one CPU each "
                      f"(the progress bar is worker 0's, {len(members[::workers])} members)", file=sys.stderr, flush=True)
            rows = _train_in_workers(out, members, backend, strategy, progress, eval_tasks, cpus[:workers])
        rows.sort(key=lambda row: row["member"])
        write_summary(out, rows)
    return rows


def auto_workers(members: Sequence[Member], backend: str, cpus: int) -> int:
    """Processes for ``workers="auto"`` (``cogmeta.cpu_workers.auto_processes``): 1 when JAX's engine trains every
    member (its members are split over one host device per CPU inside the one program) or when the sweep is
    shorter than ``AUTO_WORKERS_FROM`` member-steps; else one per CPU, at most one per member."""
    engine_devices = backend == "jax" and all(member.config.family.engine_members for member in members)
    return auto_processes(len(members), sum(member.config.train.steps for member in members), cpus, engine_devices)


def _require_backend(backend: str) -> None:
    """A known backend whose framework is installed (found without importing it: workers import their own)."""
    import importlib.util

    from cogmeta.backends import missing_framework_error

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(sorted(BACKENDS))}")
    framework = BACKENDS[backend][1]
    if importlib.util.find_spec(framework) is None:
        raise missing_framework_error(backend, framework)


def train_members(out: Path, members: Sequence[Member], backend: str, strategy: str, progress: bool,
                  eval_tasks: int | None) -> list[dict[str, Any]]:
    """Train ``members`` in this process, group after group (:func:`group_members`), and write their run folders
    into ``out``; return their summary rows. The caller holds ``out``'s lock."""
    engine = load_module(backend, "engine")
    rows = []
    for group in group_members(members):
        if not group[0].config.family.engine_members:  # member after member through the run-folder loop
            rows += [_train_member(out, member, backend, eval_tasks, progress) for member in group]
            continue
        shared = _shared_config(group[0].config)
        began = time.perf_counter()
        runs = engine.train_members(shared, [m.config.train.seed for m in group],
                                    [m.config.train.learning_rate for m in group], strategy=strategy,
                                    progress=progress)
        seconds = time.perf_counter() - began
        for member, run in zip(group, runs):
            rows.append(_write_member(out, member, run, backend, eval_tasks, seconds / len(group)))
    return rows


def _train_in_workers(out: Path, members: Sequence[Member], backend: str, strategy: str, progress: bool,
                      eval_tasks: int | None, cpus: Sequence[int]) -> list[dict[str, Any]]:
    """:func:`train_members` of every ``len(cpus)``-th member in a process pinned to each CPU
    (``cogmeta.cpu_workers.run_pinned``; worker 0 draws the progress bar). A worker's error is raised here."""
    shards = [(out, list(members[index::len(cpus)]), backend, strategy, progress and index == 0, eval_tasks)
              for index in range(len(cpus))]
    return [row for rows in run_pinned(train_members, shards, cpus) for row in rows]


def write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    """``summary.csv`` and ``summary.md`` (atomic writes)."""
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(_format(row[c]) for c in columns) for row in rows]
    atomic_write_text(out / "summary.csv", "\n".join(lines) + "\n")
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(_format(row[c]) for c in columns) + " |" for row in rows]
    atomic_write_text(out / "summary.md", "\n".join(table) + "\n")


# ---------------------------------------------------------------------- helpers
def _write_member(out: Path, member: Member, run: MemberRun, backend: str, eval_tasks: int | None,
                  seconds: float) -> dict[str, Any]:
    run_dir = RunDir.at(out / f"member-{member.index:03d}")
    with run_dir.writing():
        written = write_member_folder(run_dir, member.config, run, backend, eval_tasks)
    return _summary_row(member, run_dir.root.name, run.steps, written, run.stopped, seconds)


def _summary_row(member: Member, folder: str, steps: int, scores: dict[str, float], stopped: bool,
                 seconds: float) -> dict[str, Any]:
    """One row of ``summary.csv``: the member, its grid settings, its steps, final loss and scores."""
    config = member.config
    row = {"member": member.index, "folder": folder, "seed": config.train.seed,
           "learning_rate": config.train.learning_rate}
    row.update({path.split(".")[-1]: value for path, value in member.settings.items() if path != "train.learning_rate"})
    row.update({"steps": steps, **scores, "stopped": stopped, "seconds_per_member": seconds})
    return row


def _train_member(out: Path, member: Member, backend: str, eval_tasks: int | None, progress: bool) -> dict[str, Any]:
    """One member of a family without ``engine_members`` (``cogmeta.families``): an ordinary ``cogmeta train`` run into
    ``OUT/member-NNN``, scored by its family's ``score_run`` on ``eval_tasks`` tasks (None: the family's
    ``summary_tasks``, as ``cogmeta train`` scores it)."""
    from cogmeta.training import train

    config = member.config
    began = time.perf_counter()
    result = train(config, out / f"member-{member.index:03d}", backend, progress=progress, figures=False)
    count = config.family.summary_tasks if eval_tasks is None else eval_tasks
    scores = config.family.load_driver().score_run(result.run_dir, backend, count) if count > 0 else {}
    return _summary_row(member, result.run_dir.name, result.steps, {"final_loss": result.final_loss, **scores}, False,
                        time.perf_counter() - began)


def write_member_folder(run_dir: RunDir, config: RunConfig, run: MemberRun, backend: str,
                        eval_tasks: int | None) -> dict[str, float]:
    """Write one engine-trained member as an ordinary run folder of its model family: ``config.json``,
    ``metrics.csv`` (the training loop's ``log_every`` window means, then the family's held-out score on
    ``eval_tasks`` tasks unless 0; None: ``config.train.eval_tasks``) and ``weights.safetensors``.
    The caller holds ``run_dir``'s lock. Returns ``{"final_loss": ..., <the family's metric>: score}``."""
    from cogmeta.metrics_log import MetricsLog
    from cogmeta.training import (
        _WindowLogger,  # the training driver's log_every window means
        workload_of,
    )
    from cogmeta.weights import save_weights

    if run_dir.config.exists():
        raise FileExistsError(f"{run_dir.root} already holds a run; choose a new output folder")
    config.save(run_dir.config)
    logger = _WindowLogger(config.train.log_every, 0)
    log = MetricsLog(run_dir.metrics)
    log.reset()
    log.append(logger.add(run.metrics, run.steps))
    log.append(logger.flush())
    num_tasks = config.train.eval_tasks if eval_tasks is None else eval_tasks
    workload = workload_of(config)
    score = math.nan
    if num_tasks > 0:
        score = workload.score_weights(config, run.weights, backend, num_tasks)
        log.append([(run.steps, workload.metric, score)])
    save_weights(run_dir.weights, run.weights, config, framework=backend)
    return {"final_loss": logger.last_loss, workload.metric: score}


def _shared_config(config: RunConfig) -> RunConfig:
    """The config with the vectorized settings reset to the defaults (the key of an engine group)."""
    defaults = TrainConfig()
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seed=defaults.seed,
                                                                 learning_rate=defaults.learning_rate))


def _resolve_key(key: str, config: RunConfig) -> str:
    key = ALIASES.get(key, key).replace("-", "_")
    sections = {"model": ModelConfig, "train": TrainConfig, "task": type(config.task)}
    sections.update({name: type(getattr(config, name)) for name in sorted(config.family.sections)})
    if "." in key:
        section, _, name = key.partition(".")
        if section in sections and name in {f.name for f in dataclasses.fields(sections[section])}:
            return key
    else:
        for section, cls in sections.items():
            if key in {f.name for f in dataclasses.fields(cls)}:
                return f"{section}.{key}"
    valid = sorted(ALIASES) + [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)]
    raise ValueError(f"unknown grid key {key!r}; valid keys: {', '.join(valid)}")


def _get(config: RunConfig, path: str) -> Any:
    section, _, name = path.partition(".")
    return getattr(getattr(config, section), name)


def _set(config: RunConfig, path: str, value: Any) -> RunConfig:
    section, _, name = path.partition(".")
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{name: value})})


def _convert(path: str, text: str, current: Any) -> Any:
    try:
        if isinstance(current, bool):
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        return text
    except ValueError:
        raise ValueError(f"grid value {text!r} for {path} is not a valid {type(current).__name__}") from None


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
