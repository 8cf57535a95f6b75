"""Command-line options shared by ``cogmeta train``, ``sweep``, ``seq2seq`` and the studies (``cogmeta experiment``).

- The config's options (model, training, backend options and task parameters) are generated from the
  config dataclasses by ``cogmeta.cli_config``, which also holds the ``--resume`` rule.
- Numbers are parsed by :func:`integer` and :func:`real`, which refuse text, empty strings, NaN and
  infinities (and, where given, values outside a range) while parsing, in one line naming the option.
  The ranges of config fields are the config's own (``cogmeta.config``); :func:`naming_options` adds the
  option to their messages.
- :func:`fitting_count` adds an upper bound and a memory estimate (``cogmeta.memory``) to a count, and
  :func:`check_in_file` refuses an input file that is missing, a folder or unreadable before anything runs.
- :class:`OneLineParser` prints a usage error as one line (exit code 2), and :func:`check_out_folder`
  refuses an output folder that cannot be created before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from cogmeta.config import MAX_COUNT


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
        if high is None and low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {low}, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number in {_words(low, high)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def workers_option(text: str) -> int | str:
    """An argparse ``type`` for ``--workers``: ``auto`` or a whole number from 1 (``cogmeta.cpu_workers``)."""
    return "auto" if text.strip().lower() == "auto" else integer(1, 1024)(text)


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
