"""`cogmeta experiment STUDY EXPERIMENT`: one parser per study, with only that study's options.

Nothing here trains: every case fails in argparse or in the config validation before a backend loads.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cogmeta.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

HEURISTICS_ONLY = ("--betas", "--seeds", "--pretrain-steps", "--finetune-steps", "--hidden-size", "--batch-size",
                   "--eval-tasks")
LEARNING_TO_INFER_ONLY = ("--participants", "--hidden", "--optimizer", "--draws")
SHARED = ("--backend", "--out", "--no-figures", "--seed", "--lr")


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _help(study, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", study, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv,flag", [
    (["experiment", "learning-to-infer", "eu", "--betas", "0.1"], "--betas"),
    (["experiment", "learning-to-infer", "sample-size", "--pretrain-steps", "10"], "--pretrain-steps"),
    (["experiment", "heuristics", "ranking", "--participants", "3"], "--participants"),
    (["experiment", "heuristics", "all", "--draws", "paper"], "--draws"),
])
def test_a_flag_of_the_other_study_is_a_usage_error(argv, flag, capsys):
    err = _usage_error(argv, capsys)
    study = argv[1]
    assert f"cogmeta experiment {study}: error: unrecognized arguments: {flag}" in err


@pytest.mark.parametrize("argv,field", [
    (["experiment", "heuristics", "ranking", "--betas", "0.03", "-0.1"], "heuristics.betas"),
    (["experiment", "heuristics", "ranking", "--seeds", "0"], "heuristics.seeds"),
    (["experiment", "heuristics", "direction", "--finetune-steps", "-1"], "heuristics.finetune_steps"),
    (["experiment", "learning-to-infer", "eu", "--participants", "0"], "learning-to-infer.participants"),
    (["experiment", "learning-to-infer", "sample-size", "--participants", "-3"], "learning-to-infer.participants"),
    (["experiment", "learning-to-infer", "eu", "--seed", "-1"], "TrainConfig.seed"),
])
def test_a_bad_value_is_one_line_naming_the_field(argv, field, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"cogmeta: error: {field} must ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("study,name,choices", [
    ("heuristics", "both", "'ranking', 'direction', 'none', 'all'"),
    ("learning-to-infer", "urns", "'eu', 'sample-size'"),
])
def test_an_unknown_experiment_lists_the_choices(study, name, choices, capsys):
    err = _usage_error(["experiment", study, name], capsys)
    assert f"argument EXPERIMENT: invalid choice: '{name}' (choose from {choices})" in err


def test_an_unknown_or_missing_study_is_a_usage_error(capsys):
    assert "choose from 'learning-to-infer', 'heuristics'" in _usage_error(["experiment", "other-paper", "eu"], capsys)
    assert "required: STUDY" in _usage_error(["experiment"], capsys)
    assert "required: EXPERIMENT" in _usage_error(["experiment", "heuristics"], capsys)


@pytest.mark.parametrize("study,own,other", [
    ("heuristics", HEURISTICS_ONLY, LEARNING_TO_INFER_ONLY),
    ("learning-to-infer", LEARNING_TO_INFER_ONLY, HEURISTICS_ONLY),
])
def test_help_lists_the_study_options_and_not_the_others(study, own, other, capsys):
    text = _help(study, capsys)
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert set(own) | set(SHARED) <= flags
    assert not flags & set(other), flags & set(other)
    assert "(default: torch)" in text and "(default: 0)" in text  # ArgumentDefaultsHelpFormatter


def test_help_shows_the_study_defaults(capsys):
    text = " ".join(_help("heuristics", capsys).split())
    assert "(default: [0.03, 0.01])" in text and "(default: 8000)" in text and "(default: 0.001)" in text
    text = " ".join(_help("learning-to-infer", capsys).split())
    assert "(default: sgd)" in text and "(default: generative)" in text
    assert "(default: None)" not in text  # experiment-dependent defaults are described in the help instead


def test_the_studies_own_their_meaning_of_shared_flags():
    parser = build_parser()
    heuristics = parser.parse_args(["experiment", "heuristics", "ranking"])
    infer = parser.parse_args(["experiment", "learning-to-infer", "eu"])
    assert heuristics.lr == 1e-3 and infer.lr is None  # the EU / sample-size defaults differ: the config picks
    assert heuristics.handler.__module__ == "cogmeta.cli_heuristics"
    assert infer.handler.__module__ == "cogmeta.cli_learning_to_infer"
    assert not hasattr(heuristics, "participants") and not hasattr(infer, "betas")


def _documented_command_lines():
    """Each `cogmeta experiment ...` line of the docs, with `a|b` alternatives expanded."""
    for name in ("README.md", "docs/tasks/heuristics.md", "docs/tasks/learning-to-infer.md"):
        for match in re.finditer(r"cogmeta experiment [^`\n#]*", (ROOT / name).read_text()):
            variants = [[]]
            for token in shlex.split(match.group(0))[1:]:
                alternatives = token.split("|") if "|" in token and not token.startswith("-") else [token]
                variants = [v + [a] for v in variants for a in alternatives]
            for argv in variants:
                yield name, ["torch" if token == "B" else token for token in argv]  # `--backend B` in prose


def test_documented_command_lines_parse():
    lines = list(_documented_command_lines())
    assert len(lines) >= 8
    parser = build_parser()
    for name, argv in lines:
        args = parser.parse_args(argv)
        assert args.command == "experiment" and args.study == argv[1], (name, argv)
