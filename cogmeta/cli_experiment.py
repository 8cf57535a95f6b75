"""Options every ``cogmeta experiment STUDY`` parser shares, and their help formatter.

Each study's CLI module (``cli_heuristics``, ``cli_learning_to_infer``) builds its own parser with
:func:`add_study_parser` and adds only its own options, so a flag of another study is an argparse
usage error (exit 2) rather than accepted and ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_options import OneLineParser, check_out_folder, integer

#: Largest first seed of a study (seeds are int32 in JAX; ``TrainConfig.seed``'s bound).
MAX_SEED = 2**31 - 1


class StudyParser(OneLineParser):
    """A study's parser: an option it does not know is its own usage error (exit 2), naming the study.

    (A plain subparser hands unknown options up to ``cogmeta``'s parser, whose message names no study.)
    Usage errors are one line, as every ``cogmeta`` parser's (:class:`~cogmeta.cli_options.OneLineParser`).
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}; not options of this study")
        return namespace, extras


class StudyHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to each option, except where the default is None (the help says what it means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action, argparse._StoreTrueAction):
            return action.help
        return super()._get_help_string(action)


def add_study_parser(studies, name: str, *, help: str, description: str, experiments: tuple[str, ...],
                     experiment_help: str) -> argparse.ArgumentParser:
    """``cogmeta experiment NAME EXPERIMENT``: the study's parser with its positional (``choices``)."""
    parser = studies.add_parser(name, help=help, description=description, formatter_class=StudyHelpFormatter)
    parser.add_argument("experiment", choices=experiments, metavar="EXPERIMENT",
                        help=experiment_help + " (one of: %(choices)s)")
    return parser


def add_shared_options(parser: argparse.ArgumentParser, *, out_help: str, seed_help: str, figures_help: str) -> None:
    """``--backend``, ``--out``, ``--no-figures`` and ``--seed``, with the study's own wording."""
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="torch", help="framework that trains")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help=out_help)
    parser.add_argument("--no-figures", action="store_true", help=figures_help)
    parser.add_argument("--seed", type=integer(None, MAX_SEED), default=0, help=seed_help)


def check_out(out: Path | None, default: Path | str | None = None, option: str = "--out") -> Path | None:
    """``out`` (or ``default`` where it is not given) if it is, or can be created as, a writable folder; a
    ValueError naming ``option`` otherwise (``cogmeta.cli_options.check_out_folder``). Called before any training."""
    if out is None and default is None:
        return None
    folder = Path(default if out is None else out)
    check_out_folder(folder, option, label=None if out is not None else f"the default folder {folder} of {option}")
    return folder
