"""Participant data of the paired-comparison task: one CSV row per trial, read into per-participant arrays.

Format (the shape of the CSVs Binz et al. 2022 published, ``marcelbinz/HeuristicsFromBMLI`` ``data/exp*.csv``,
whose header is ``participant,task,step,x0,x1,x2,x3,choice,target,time``):

    participant   any label (number or text): who made the choice
    task          any label: the task (a fresh set of cue weights) within the participant
    trial         0, 1, ..., T - 1 (or 1, ..., T) within the task, in file order; ``step`` is accepted instead
    x0 .. x{K-1}  the cue differences dx_k = cue_k(option a) - cue_k(option b), or instead
    a0 .. a{K-1} and b0 .. b{K-1}   both options' cues (dx = a - b is taken)
    choice        1 when the participant chose option a, 0 for option b
    target        the feedback shown after the trial: 1 when option a was the better one, else 0

Other columns (``time``, ...) are ignored. The models predict trial t from the cues of trial t and the
*feedback* (targets) of trials < t, and are scored on the participant's *choices*.

Tasks of one participant may differ in length: they are padded at the end to the longest (zero cues) and
the padding is masked out of every likelihood; the models are causal (trial t never sees later trials),
so padding cannot change the prediction of a real trial.

Arrays are time-major like the rest of cogmeta: ``cues [T, B, K]``, ``targets``, ``choices``, ``mask``
``[T, B]`` for B tasks of at most T trials.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: Column names of the trial index; the first is written, the second (Binz et al.'s) is also read.
TRIAL_COLUMNS = ("trial", "step")
REQUIRED = ("participant", "task", "choice", "target")


class ParticipantDataError(ValueError):
    """A participant CSV that cannot be used; the message names the file, the row or column, and the fix."""


@dataclass(frozen=True)
class ParticipantData:
    """One participant's trials.

    Attributes:
        participant: the participant's label.
        tasks: the B task labels, in file order.
        cues: ``[T, B, K]`` float64 cue differences dx_t (0 on padded trials).
        targets: ``[T, B]`` feedback in {0, 1} (0 on padded trials).
        choices: ``[T, B]`` choices in {0, 1} (0 on padded trials).
        mask: ``[T, B]`` bool, True on real trials.
    """

    participant: str
    tasks: tuple[str, ...]
    cues: np.ndarray
    targets: np.ndarray
    choices: np.ndarray
    mask: np.ndarray

    @property
    def num_trials(self) -> int:
        """n, the number of real trials (the n of the BIC)."""
        return int(self.mask.sum())

    @property
    def num_cues(self) -> int:
        return int(self.cues.shape[-1])


def pack_tasks(participant: str, tasks: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> ParticipantData:
    """Stack ``(label, cues [T_b, K], targets [T_b], choices [T_b])`` per task into padded time-major arrays."""
    steps = max(len(targets) for _, _, targets, _ in tasks)
    count = tasks[0][1].shape[-1]
    cues = np.zeros((steps, len(tasks), count))
    targets = np.zeros((steps, len(tasks)))
    choices = np.zeros((steps, len(tasks)))
    mask = np.zeros((steps, len(tasks)), bool)
    for b, (_, task_cues, task_targets, task_choices) in enumerate(tasks):
        length = len(task_targets)
        cues[:length, b], targets[:length, b], choices[:length, b], mask[:length, b] = task_cues, task_targets, task_choices, True
    return ParticipantData(str(participant), tuple(str(label) for label, *_ in tasks), cues, targets, choices, mask)


def from_arrays(participant: str, cues, targets, choices) -> ParticipantData:
    """A participant whose B tasks all have T trials: ``cues [T, B, K]``, ``targets``/``choices`` ``[T, B]``."""
    cues, targets, choices = (np.asarray(a, np.float64) for a in (cues, targets, choices))
    return ParticipantData(str(participant), tuple(str(b) for b in range(cues.shape[1])), cues, targets, choices,
                           np.ones(targets.shape, bool))


def cue_columns(header: Sequence[str], path: str | Path = "data") -> tuple[str, list[str], list[str]]:
    """``("difference", [x0..], [])`` or ``("options", [a0..], [b0..])`` from a header (error if neither)."""
    def numbered(prefix: str) -> list[str]:
        found = sorted((int(m.group(1)), name) for name in header if (m := re.fullmatch(prefix + r"(\d+)", name)))
        indices = [i for i, _ in found]
        if indices and indices != list(range(len(indices))):
            raise ParticipantDataError(f"{path}: cue columns {prefix}0, {prefix}1, ... must be numbered from 0 without "
                                       f"gaps, found {', '.join(name for _, name in found)}")
        return [name for _, name in found]

    differences, first, second = numbered("x"), numbered("a"), numbered("b")
    if differences and (first or second):
        raise ParticipantDataError(f"{path}: give the cues either as differences x0..x{len(differences) - 1} or as both "
                                   f"options' cues a0.., b0.., not both")
    if differences:
        return "difference", differences, []
    if first and len(first) == len(second):
        return "options", first, second
    if first or second:
        raise ParticipantDataError(f"{path}: option cues need as many a-columns as b-columns, found "
                                   f"{len(first)} a-columns and {len(second)} b-columns")
    raise ParticipantDataError(f"{path}: no cue columns; add the cue differences as columns x0, x1, ... (option a minus "
                               f"option b) or both options' cues as a0, a1, ... and b0, b1, ...")


def load_participants(path: str | Path, negate_cues: bool = False) -> list[ParticipantData]:
    """Read a participant CSV (module doc) into one :class:`ParticipantData` per participant, in file order.

    ``negate_cues`` multiplies every cue difference by -1 (Binz et al.'s Experiment 2 flipped its targets,
    which makes every cue weight negative; docs/tasks/heuristics.md).

    Raises :class:`ParticipantDataError` (a ValueError) naming the file, line and column for: a missing
    column, a non-numeric, NaN or infinite value, a choice or target other than 0/1, trials out of order
    (not 0, 1, 2, ... or 1, 2, 3, ... within a task, or a task split by another task's rows), or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no participant data at {path}")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [name for name in REQUIRED if name not in header]
        trial_column = next((name for name in TRIAL_COLUMNS if name in header), None)
        if trial_column is None:
            missing.insert(2, "trial")
        if missing:
            raise ParticipantDataError(f"{path}: missing column(s) {', '.join(missing)}; a participant CSV needs "
                                       f"participant, task, trial (or step), the cues (x0.. or a0.., b0..), choice and "
                                       f"target (found: {', '.join(header) or 'no header'})")
        kind, first, second = cue_columns(header, path)
        groups: dict[str, dict[str, list]] = {}
        finished: set[tuple[str, str]] = set()
        current: tuple[str, str] | None = None
        base: int | None = None
        for row in reader:
            line = reader.line_num
            participant, task = row["participant"].strip(), row["task"].strip()
            if not participant or not task:
                raise ParticipantDataError(f"{path}, line {line}: empty {'participant' if not participant else 'task'} label")
            key = (participant, task)
            trial = _integer(row[trial_column], path, line, trial_column)
            if key != current:
                if key in finished:
                    raise ParticipantDataError(f"{path}, line {line}: the rows of participant {participant}, task {task} "
                                               f"are not contiguous; sort the file by participant, task and {trial_column}")
                if current is not None:
                    finished.add(current)
                current, expected = key, None
                if base is None:
                    base = trial
                if trial != base or base not in (0, 1):
                    raise ParticipantDataError(
                        f"{path}, line {line}: participant {participant}, task {task} starts at {trial_column} {trial}; "
                        f"every task must start at {base if base in (0, 1) else '0 (or 1)'} and count up by one")
                groups.setdefault(participant, {}).setdefault(task, [])
            elif trial != expected:
                raise ParticipantDataError(f"{path}, line {line}: participant {participant}, task {task}: {trial_column} "
                                           f"{trial} follows {expected - 1}; trials must be in order {base}, {base + 1}, "
                                           f"... without gaps or repeats (sort the file by participant, task and "
                                           f"{trial_column})")
            expected = trial + 1
            cues = np.array([_number(row[name], path, line, name) for name in first])
            if kind == "options":
                cues = cues - np.array([_number(row[name], path, line, name) for name in second])
            choice, target = (_binary(row[name], path, line, name) for name in ("choice", "target"))
            groups[participant][task].append((-cues if negate_cues else cues, target, choice))
    if not groups:
        raise ParticipantDataError(f"{path}: no trials (the file has a header but no rows)")
    participants = []
    for participant, tasks in groups.items():
        packed = [(task, np.stack([c for c, _, _ in rows]), np.array([t for _, t, _ in rows], np.float64),
                   np.array([y for _, _, y in rows], np.float64)) for task, rows in tasks.items()]
        participants.append(pack_tasks(participant, packed))
    return participants


def write_participants(path: str | Path, participants: Sequence[ParticipantData], extra: dict[str, Sequence] | None = None) -> None:
    """Write participants in the CSV format of :func:`load_participants` (cue differences, 0-based trials).

    ``extra``: columns with one value per participant (e.g. the generating model of a simulated one).
    """
    from cogmeta.io import atomic_write_text

    count = participants[0].num_cues
    extra = extra or {}
    lines = [",".join(["participant", "task", "trial", *[f"x{k}" for k in range(count)], "choice", "target", *extra])]
    for index, data in enumerate(participants):
        tail = [str(values[index]) for values in extra.values()]
        for b, task in enumerate(data.tasks):
            for t in range(int(data.mask[:, b].sum())):
                cues = [repr(float(v)) for v in data.cues[t, b]]
                lines.append(",".join([data.participant, task, str(t), *cues, str(int(data.choices[t, b])),
                                       str(int(data.targets[t, b])), *tail]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _number(text: str | None, path, line: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParticipantDataError(f"{path}, line {line}, column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ParticipantDataError(f"{path}, line {line}, column {column}: {text!r} is not finite (NaN or infinite "
                                   f"values are not allowed; drop or fix the trial)")
    return value


def _integer(text: str | None, path, line: int, column: str) -> int:
    value = _number(text, path, line, column)
    if value != int(value):
        raise ParticipantDataError(f"{path}, line {line}, column {column}: {text!r} is not a whole number")
    return int(value)


def _binary(text: str | None, path, line: int, column: str) -> float:
    value = _number(text, path, line, column)
    if value not in (0.0, 1.0):
        meaning = "1 = option a chosen, 0 = option b" if column == "choice" else "1 = option a was better, 0 = option b"
        raise ParticipantDataError(f"{path}, line {line}, column {column}: {text!r} is not 0 or 1 ({meaning})")
    return value
