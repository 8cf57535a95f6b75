"""Command-line options shared by ``cogmeta train``, ``sweep``, ``seq2seq`` and the studies (``cogmeta experiment``).

- Task parameters are generated from the registered task dataclasses (``cogmeta.contract.TASKS``): a new
  task's fields become ``--flags`` with no change here; a flag that the chosen task lacks is an error
  that lists the task's own.
- Numbers are parsed by :func:`integer` and :func:`real`, which refuse text, empty strings, NaN and
  infinities (and, where given, values outside a range) while parsing, in one line naming the option.
  The ranges of config fields are the config's own (``cogmeta.config``); :func:`naming_options` adds the
  option to their messages.
- :func:`fitting_count` adds an upper bound and a memory estimate (``cogmeta.memory``) to a count, and
  :func:`check_in_file` refuses an input file that is missing, a folder or unreadable before anything runs.
- :class:`OneLineParser` prints a usage error as one line (exit code 2), and :func:`check_out_folder`
  refuses an output folder that cannot be created before anything runs.
- :func:`resumed_config` is the rule of ``cogmeta train --resume``: every option given explicitly must
  equal the stored config, except the total number of steps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from cogmeta.config import MAX_COUNT, JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.tasks import TASKS, make_task, task_fields


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2): the error and where help is.

    (argparse prints the whole usage block first; for a bad number in a long command that hides the message.)
    Sub-command parsers made with ``add_subparsers`` are of the same class.
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------------------------- numbers
def _words(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number (``8000``, ``8_000`` or ``8e3``) in ``[low, high]``."""

    def parse(text: str) -> int:
        stripped = text.strip()
        try:
            value = int(stripped)
        except ValueError:
            try:
                number = float(stripped)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
            if not math.isfinite(number) or number != int(number):
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
            value = int(number)
        if low is None and high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be a whole number of at most {high}, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number in {_words(low, high)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def real(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number (not NaN or an infinity) in ``[low, high]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a number in {_words(low, high)}, got {text!r}")
        return value

    parse.__name__ = "real"
    return parse


def task_count(option: str, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse ``type`` for a number of held-out tasks: at least 2 (or 0 to skip, if ``zero``), at most
    :data:`MAX_COUNT`, and few enough that scoring them fits in memory (``cogmeta.memory``; at T = 1, the
    least any task needs; the command checks again with the run's own T)."""

    def scoring(value: int) -> tuple[int, str]:
        from cogmeta.memory import evaluation_bytes

        nbytes, arithmetic = evaluation_bytes(value, 1)
        return nbytes, f"scoring {arithmetic}"

    counted = fitting_count(option, MAX_COUNT, scoring, low=0 if zero else 2)

    def parse(text: str) -> int:
        value = counted(text)
        if value == 1 and zero:
            raise argparse.ArgumentTypeError("must be 0 (skip) or at least 2 (a standard error needs two tasks), got 1")
        return value

    parse.__name__ = "task_count"
    return parse


def fitting_count(option: str, high: int, estimate: Callable[[int], tuple[int, str]] | None = None,
                  low: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at most ``high`` (and at least ``low`` if given) whose
    ``estimate(value)`` -> (bytes, arithmetic) fits in the memory available now (``cogmeta.memory``).

    The estimate takes the other options at their least, so that only a count too large on its own fails
    while parsing; the command checks again with every option's value before any work.
    """
    base = integer(low, high)

    def parse(text: str) -> int:
        from cogmeta.memory import require_fits

        value = base(text)
        if estimate is not None and value > 0:
            nbytes, arithmetic = estimate(value)
            try:
                require_fits(nbytes, f"{arithmetic} (at least)", f"lower {option}")
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return value

    parse.__name__ = "count"
    return parse


def check_in_file(path: Path, option: str) -> Path:
    """Refuse ``path`` as an input file unless it exists, is a file (not a folder) and can be read (ValueError
    naming ``option``; checked before any training)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder, not a file")
    if not path.is_file():
        raise ValueError(f"{option} {path} does not exist" if not path.exists() else f"{option} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{option} {path} cannot be read")
    return path


def given_or_default(help: str, default: object) -> str:
    """Help text of an option whose default is None ("not given") and means ``default``."""
    return f"{help} (default: {default})" if help else f"default: {default}"


@contextlib.contextmanager
def naming_options(args: argparse.Namespace, flags: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise a config's ``Owner.field must ...`` error with the option that set the field appended.

    The config validates its own fields (one place); this only says which flag of the command line that was:
    ``--field-name``, or ``flags[field]`` where the option is named otherwise (``{"learning_rate": "--lr"}``).
    """
    try:
        yield
    except ValueError as error:
        match = re.match(r"[\w-]+\.(\w+) ", str(error))
        if match is None:
            raise
        field = match.group(1)
        option = (flags or {}).get(field, "--" + field.replace("_", "-"))
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is None or isinstance(value, bool):
            raise
        raise ValueError(f"{error} (option {option})") from None


# ---------------------------------------------------------------------------------------- output folders
def check_out_folder(path: Path, option: str = "--out", label: str | None = None) -> None:
    """Refuse ``path`` as a folder to write into unless it is (or can be created as) a writable folder.

    Checked before any training so that a run of hours does not end in ``NotADirectoryError``: the path
    must not be a file, its nearest existing ancestor must be a folder, and that folder must be writable.
    ``label`` names the path in messages (default: ``"<option> <path>"``).
    """
    path = Path(path)
    label = label or f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{label} is a file, not a folder; choose a folder (new or existing)")
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ValueError(f"{label} cannot be created: {existing} is a file, not a folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{label} cannot be {'written' if existing == path else 'created'}: "
                         f"{existing} is not writable; choose another folder")


def check_out_file(path: Path, option: str = "--out") -> None:
    """Refuse ``path`` as a file to write unless it is not a folder and its folder can be written or created."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file path, e.g. {path / 'attention.png'}")
    check_out_folder(path.parent, label=f"the folder {path.parent} of {option} {path}")


# ---------------------------------------------------------------------------------------- task and config
def add_task_parameters(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` per field of any registered task (default None: the task's own default)."""
    group = parser.add_argument_group("task parameters (defaults: the task's own)")
    seen: set[str] = set()
    for task_name in sorted(TASKS):
        for field in dataclasses.fields(TASKS[task_name]):
            if field.name in seen:
                continue
            seen.add(field.name)
            owners = [n for n in sorted(TASKS) if field.name in task_fields(n)]
            kind = integer() if field.type in (int, "int") else real()
            group.add_argument("--" + field.name.replace("_", "-"), type=kind, default=None,
                               help=f"{', '.join(owners)} task(s)")


def _task_parameter_names() -> set[str]:
    return {f.name for cls in TASKS.values() for f in dataclasses.fields(cls)}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of the options given; an option left at None takes the config's default."""
    task = args.task or "gaussian"
    params = {}
    for name in _task_parameter_names():
        value = getattr(args, name, None)
        if value is not None:
            if name not in task_fields(task):
                raise ValueError(f"--{name.replace('_', '-')} is not a parameter of the {task!r} task; "
                                 f"its parameters are: {', '.join('--' + f.replace('_', '-') for f in task_fields(task))}")
            params[name] = value
    given = lambda name: getattr(args, name, None) is not None  # noqa: E731
    with naming_options(args):
        train = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if given(f.name)})
        model = ModelConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelConfig) if given(f.name)})
        torch = {"threads": getattr(args, "threads", None), "device": getattr(args, "torch_device", None),
                 "cuda_graphs": getattr(args, "cuda_graphs", None)}
        jax = {"steps_per_call": getattr(args, "steps_per_call", None)}
        return RunConfig(
            task=make_task(task, **params),
            model=model,
            train=train,
            # `cogmeta sweep` shares this builder and has no device flags (its torch engine is CPU-only)
            torch=TorchOptions(**{k: v for k, v in torch.items() if v is not None}),
            jax=JaxOptions(**{k: v for k, v in jax.items() if v is not None}),
        )


#: Options of ``cogmeta train`` stored in config.json besides the task: argparse dest -> (section, field).
STORED_OPTIONS: dict[str, tuple[str, str]] = {
    **{f.name: ("model", f.name) for f in dataclasses.fields(ModelConfig)},
    **{f.name: ("train", f.name) for f in dataclasses.fields(TrainConfig)},
    "threads": ("torch", "threads"), "torch_device": ("torch", "device"), "cuda_graphs": ("torch", "cuda_graphs"),
    "steps_per_call": ("jax", "steps_per_call"),
}


def resumed_config(args: argparse.Namespace, stored: RunConfig, source: Path) -> RunConfig:
    """The stored config of a run to resume, with the total steps of ``--steps`` if given.

    Every other model, task or training option given explicitly (not None) must equal the stored value;
    the ValueError lists each one that does not, with both values. A ``--steps`` at or below the step of
    the run's checkpoint is an error too (a finished run resumed without ``--steps`` has nothing to do).
    """
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    differences = []
    if getattr(args, "task", None) is not None and args.task != stored.task.name:
        differences.append(f"--task {args.task} (the run's task is {stored.task.name!r})")
    for name in sorted(_task_parameter_names()):
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in task_fields(stored.task.name):
            differences.append(f"{flag(name)} {value} (the run's {stored.task.name!r} task has no {name})")
        elif value != getattr(stored.task, name):
            differences.append(f"{flag(name)} {value} (the run has task.{name} = {getattr(stored.task, name)!r})")
    for name, (section, field) in STORED_OPTIONS.items():
        value = getattr(args, name, None)
        if value is None or name == "steps":
            continue
        have = getattr(getattr(stored, section), field)
        if value != have:
            differences.append(f"{flag(name)} {value} (the run has {section}.{field} = {have!r})")
    if differences:
        raise ValueError(f"cannot resume {source.parent} with other settings than its config ({source}): "
                         f"{'; '.join(differences)}. A resumed run keeps its config; only --steps (the total) may "
                         f"change. Leave these options out, or start a new run with --out")
    if getattr(args, "steps", None) is None:
        return stored
    done = _checkpoint_step(source.parent / "checkpoint.safetensors")
    if done is not None and args.steps <= done:
        raise ValueError(f"argument --steps {args.steps}: the run in {source.parent} has already trained {done} steps "
                         f"(its checkpoint); give a total above {done}")
    with naming_options(args):
        return dataclasses.replace(stored, train=dataclasses.replace(stored.train, steps=args.steps))


def _checkpoint_step(path: Path) -> int | None:
    """The step in a checkpoint's metadata (its header only), or None if the file is missing or unreadable
    (loading it then reports what is wrong)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            return int((handle.metadata() or {})["step"])
    except Exception:  # noqa: BLE001 - any unreadable checkpoint is load_checkpoint's error to report
        return None
