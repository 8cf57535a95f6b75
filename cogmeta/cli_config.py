"""Command-line options generated from the config dataclasses: choices, types and help live in one place.

Every field of ``ModelConfig``, ``TrainConfig``, ``TorchOptions`` and ``JaxOptions`` (``cogmeta.config``) and
of every registered task (``cogmeta.families``) becomes a ``--flag``: its type from the annotation (whole
numbers and finite numbers parsed strictly by ``cogmeta.cli_options``, ``bool`` as ``--x/--no-x``), its
choices from the field's ``metadata["choices"]``, its help from the ``Attributes:`` section of the class
docstring, its name ``--field-name`` or ``metadata["flag"]``. Every option defaults to ``None`` ("not
given"), so that an explicit value always counts: on ``--resume`` it is compared with the stored config,
for a new run it overrides the preset (``--preset``) or the family's defaults.

Why not ``tyro`` (cleanrl's choice): cogmeta needs the "not given" state above for ``--resume``, one-line
usage errors (``cogmeta.cli_options.OneLineParser``), strict number parsing with memory checks, flat flags
kept stable for existing scripts (``--hidden-size``, not ``--model.hidden-size``) and task fields that depend
on the task chosen; tyro's generated parsers give none of these without overriding most of it. The
generator here is the part of tyro that cogmeta needs: the fields, read once.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Iterator

from cogmeta.checkpoint import checkpoint_step
from cogmeta.cli_options import given_or_default, integer, naming_options, real
from cogmeta.config import BoundConfig, JaxOptions, ModelConfig, RLConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.families import MODEL_FAMILIES, all_task_names, family_of_task, model_family

#: Config sections whose fields become options, in ``--help`` order.
SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig, "rl": RLConfig, "bound": BoundConfig,
                             "torch": TorchOptions, "jax": JaxOptions}


@dataclasses.dataclass(frozen=True)
class Option:
    """One generated option: ``section.field`` of a config (``section`` "task" for task parameters)."""

    section: str
    field: str
    flag: str
    dest: str


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its text in the ``Attributes:`` section of ``cls``'s docstring (``a, b: text`` gives both)."""
    doc = cls.__doc__ or ""
    match = re.search(r"\n(\s*)Attributes:\n(.*?)(?:\n\s*\n(?!\1\s)|\Z)", doc, re.S)
    if not match:
        return {}
    helps: dict[str, str] = {}
    names: list[str] = []
    for line in match.group(2).splitlines():
        entry = re.match(r"\s*((?:\w+, )*\w+): (.*)", line)
        if entry and len(line) - len(line.lstrip()) <= len(match.group(1)) + 4:
            names = entry.group(1).split(", ")
            for name in names:
                helps[name] = entry.group(2).strip()
        elif names and line.strip():
            for name in names:
                helps[name] += " " + line.strip()
    return helps


def _kind(annotation: Any, field: dataclasses.Field):
    """argparse keyword arguments for a field's annotation (strings: ``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" | None", "").replace("Optional[", "").rstrip("]")
    choices = field.metadata.get("choices")
    if text == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if text == "int":
        return {"type": integer()}
    if text == "float":
        return {"type": real()}
    if text == "str":
        return {"choices": tuple(choices)} if choices else {"type": str}
    raise TypeError(f"no command-line type for field {field.name!r} annotated {annotation!r}")


def _annotations(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {f.name: f.type for f in dataclasses.fields(cls)}


def config_options() -> list[Option]:
    """Every config field's option (``section``, ``field``, ``--flag``, argparse ``dest``)."""
    options = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            options.append(Option(section, f.name, flag, flag[2:].replace("-", "_")))
    return options


def _task_classes() -> dict[str, type]:
    return {name: family.task_class(name) for family in MODEL_FAMILIES.values() for name in family.tasks()}


def task_options() -> list[Option]:
    """One option per field name of any registered task (every family's)."""
    seen: dict[str, Option] = {}
    for cls in _task_classes().values():
        for f in dataclasses.fields(cls):
            seen.setdefault(f.name, Option("task", f.name, "--" + f.name.replace("_", "-"), f.name))
    return list(seen.values())


def add_config_options(parser: argparse.ArgumentParser, *, sections: tuple[str, ...] = tuple(SECTIONS),
                       skip: tuple[str, ...] = (), presets: bool = True, family: bool = True) -> None:
    """Add ``--task``, the generated options of ``sections`` (minus the fields in ``skip``) and the task
    parameters to ``parser``, grouped by section; ``--preset`` and ``--family`` unless ``presets`` / ``family``
    is False (a command with options of those names of its own). The options added are recorded in the
    parser's defaults (``config_dests``): :func:`config_from_args` reads only those."""
    from cogmeta.presets import PRESETS

    dests: list[str] = []
    group = parser.add_argument_group("run")
    if presets:
        group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                           help="a named config (a paper's recipe; `cogmeta.presets`) that the options below override")
    group.add_argument("--task", choices=all_task_names(), default=None,
                       help=given_or_default("environment to meta-train on", "the preset's, else gaussian"))
    for section in sections:
        cls = SECTIONS[section]
        helps, hints = field_help(cls), _annotations(cls)
        group = parser.add_argument_group(section)
        defaults = cls()
        for option in (o for o in config_options() if o.section == section and o.field not in skip):
            if option.field == "family" and not family:
                continue
            f = next(x for x in dataclasses.fields(cls) if x.name == option.field)
            kind = _kind(hints[f.name], f)
            text = helps.get(f.name, "")
            if f.name == "family":
                kind = {"choices": tuple(MODEL_FAMILIES)}
                text = "model family: " + "; ".join(f"{n}: {fam.summary}" for n, fam in MODEL_FAMILIES.items())
            group.add_argument(option.flag, dest=option.dest, default=None, **kind,
                               help=given_or_default(_escape(text), f"{getattr(defaults, f.name)}, or the preset's"))
            dests.append(option.dest)
    group = parser.add_argument_group("task parameters (defaults: the preset's, else the task's own)")
    classes = _task_classes()
    for option in task_options():
        if option.flag in parser._option_string_actions:
            continue
        owners = sorted(n for n, c in classes.items() if option.field in {f.name for f in dataclasses.fields(c)})
        f = next(x for c in classes.values() for x in dataclasses.fields(c) if x.name == option.field)
        hints = _annotations(classes[owners[0]])
        group.add_argument(option.flag, dest=option.dest, default=None, **_kind(hints[f.name], f),
                           help=f"parameter of the {', '.join(owners)} task(s)")
        dests.append(option.dest)
    parser.set_defaults(config_dests=tuple(dests))


def _escape(text: str) -> str:
    return text.replace("``", "").replace("%", "%%").rstrip(".")


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) is not None


def given_options(args: argparse.Namespace) -> Iterator[tuple[Option, Any]]:
    """(option, value) of every generated option given on the command line (of those the command's parser has:
    ``config_dests``, recorded by :func:`add_config_options`)."""
    dests = getattr(args, "config_dests", None)
    for option in config_options() + task_options():
        if (dests is None or option.dest in dests) and _given(args, option.dest):
            yield option, getattr(args, option.dest)


def _flags() -> dict[str, str]:
    """Config field -> its flag, for ``naming_options`` (an error ``Owner.field must ...`` names the flag)."""
    return {o.field: o.flag for o in config_options() + task_options()}


def base_config(args: argparse.Namespace) -> RunConfig:
    """The config the given options apply to: ``--preset``'s, else the defaults of the family (``--family``, or
    the family of ``--task``, else the tutorial meta-learner) with ``--task``."""
    from cogmeta.presets import preset

    dests = getattr(args, "config_dests", None)
    family_name = getattr(args, "family", None) if dests is None or "family" in dests else None
    task_name = getattr(args, "task", None)
    if getattr(args, "preset", None) is not None:
        config = preset(args.preset)
        if family_name is not None and family_name != config.model.family:
            raise ValueError(f"--family {family_name} and --preset {args.preset} disagree: the preset is a "
                             f"{config.model.family!r} model; leave --family out")
    else:
        family = model_family(family_name) if family_name is not None else (
            family_of_task(task_name) if task_name is not None else model_family("meta_learner"))
        config = preset(family.default_preset) if family.default_preset else RunConfig(
            model=ModelConfig(family=family.name))
    if task_name is not None and task_name != config.task.name:  # make_task: the error names the task's family
        config = dataclasses.replace(config, task=config.family.make_task(task_name))
    return config


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """``base`` (default :func:`base_config`) with every option given on the command line; errors name the flag."""
    config = base_config(args) if base is None else base
    sections: dict[str, dict[str, Any]] = {name: {} for name in (*SECTIONS, "task")}
    for option, value in given_options(args):
        if option.field == "family":
            continue  # chose the base config
        sections[option.section][option.field] = value
    task_fields = {f.name for f in dataclasses.fields(config.task)}
    foreign = sorted(set(sections["task"]) - task_fields)
    if foreign:
        raise ValueError(f"--{foreign[0].replace('_', '-')} is not a parameter of the {config.task.name!r} task; its "
                         f"parameters are: {', '.join('--' + f.replace('_', '-') for f in sorted(task_fields)) or '(none)'}")
    with naming_options(args, _flags()):
        changes = {name: dataclasses.replace(getattr(config, name), **values)
                   for name, values in sections.items() if values and name != "task"}
        if sections["task"]:
            changes["task"] = dataclasses.replace(config.task, **sections["task"])
        return dataclasses.replace(config, **changes) if changes else config


def resumed_config(args: argparse.Namespace, stored: RunConfig, source: Path) -> RunConfig:
    """The stored config of a run to resume, with the total steps of ``--steps`` if given.

    Every other option given explicitly (not None) must equal the stored value; the ValueError lists each one
    that does not, with both values. A ``--steps`` at or below the step of the run's checkpoint is an error too.
    """
    if getattr(args, "preset", None) is not None:
        raise ValueError(f"--preset and --resume exclude each other: a resumed run keeps the config in {source}")
    differences = []
    if getattr(args, "task", None) is not None and args.task != stored.task.name:
        differences.append(f"--task {args.task} (the run's task is {stored.task.name!r})")
    for option, value in given_options(args):
        if option.field == "steps" and option.section == "train":
            continue
        if option.section == "task":
            if not hasattr(stored.task, option.field):
                differences.append(f"{option.flag} {value} (the run's {stored.task.name!r} task has no {option.field})")
                continue
            have = getattr(stored.task, option.field)
        else:
            have = getattr(getattr(stored, option.section), option.field)
        if value != have:
            differences.append(f"{option.flag} {value} (the run has {option.section}.{option.field} = {have!r})")
    if differences:
        raise ValueError(f"cannot resume {source.parent} with other settings than its config ({source}): "
                         f"{'; '.join(differences)}. A resumed run keeps its config; only --steps (the total) may "
                         f"change. Leave these options out, or start a new run with --out")
    if getattr(args, "steps", None) is None:
        return stored
    done = checkpoint_step(source.parent / "checkpoint.safetensors")
    if done is not None and args.steps <= done:
        raise ValueError(f"argument --steps {args.steps}: the run in {source.parent} has already trained {done} steps "
                         f"(its checkpoint); give a total above {done}")
    with naming_options(args):
        return dataclasses.replace(stored, train=dataclasses.replace(stored.train, steps=args.steps))
