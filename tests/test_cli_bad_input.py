"""Bad input at the command line (issue 14, items 1, 3 and 4): one line, exit code 2, nothing written.

- a matrix of sub-command (the studies of ``cogmeta experiment`` included) x numeric option x {negative,
  zero, nan, inf, huge, text, empty}: every bad value
  fails before any work (at parse time or while the config is built), in one line on stderr naming the
  option, with exit code 2, no traceback and no output folder;
- ``--out`` that cannot be a folder, memory estimates with their arithmetic, the exception boundary of
  ``main``;
- ``train --resume``: every option given must match the stored config; only the total steps may change,
  and must exceed the checkpoint's step;
- strict ``config.json`` (tutorial and seq2seq runs) and seq2seq weights/checkpoints that are corrupt,
  non-finite or of another dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cogmeta.memory
from cogmeta.cli import build_parser, main
from cogmeta.cli_config import resumed_config
from cogmeta.config import ModelConfig, RunConfig, TrainConfig
from cogmeta.contract import Checkpoint
from cogmeta.io import atomic_save_safetensors
from cogmeta.weights import CorruptFileError, WeightsError, parameter_shapes

HUGE_INT, HUGE_FLOAT = "1" + "0" * 15, "1e999"
BAD = {"negative": "-5", "zero": "0", "nan": "nan", "inf": "inf", "text": "abc", "empty": ""}
ALL = ("negative", "zero", "nan", "inf", "huge", "text", "empty")
NOT_ZERO = ("negative", "nan", "inf", "huge", "text", "empty")  # 0 is a valid value of these options
CHOICE = ("text", "empty")

# (sub-command, option, kind, bad categories). kind: "int" or "float" (what "huge" is) or "choice".
MATRIX = [
    *[("train", option, "int", ALL) for option in (
        "--steps", "--batch-size", "--hidden-size", "--num-layers", "--log-every", "--checkpoint-every",
        "--eval-every", "--eval-tasks", "--steps-per-call", "--sequence-length", "--devices")],
    ("train", "--until-kl-every", "int", ("negative", "zero", "nan", "inf", "text", "empty")),  # huge: harmless
    *[("train", option, "int", NOT_ZERO) for option in ("--seed", "--threads", "--summary-tasks")],
    *[("train", option, "float", ALL) for option in (
        "--learning-rate", "--clip-norm", "--adam-eps", "--until-kl", "--prior-std", "--noise-std")],
    *[("train", option, "float", NOT_ZERO) for option in ("--final-lr-fraction", "--adam-beta1", "--adam-beta2")],
    *[("train", option, "choice", CHOICE) for option in ("--task", "--backend", "--cell", "--dtype", "--schedule")],
    *[("sweep", option, "int", ALL) for option in (
        "--seeds", "--steps", "--batch-size", "--hidden-size", "--eval-tasks", "--steps-per-call")],
    ("sweep", "--seed", "int", NOT_ZERO),
    ("sweep", "--learning-rate", "float", ALL),
    ("evaluate", "--num-tasks", "int", ALL),
    ("evaluate", "--seed", "int", ("negative", "nan", "inf", "text", "empty")),  # any size seeds numpy
    *[("seq2seq train", option, "int", ALL) for option in (
        "--steps", "--decay-every", "--log-every", "--steps-per-call", "--hidden-size", "--num-layers", "--seeds")],
    *[("seq2seq train", option, "int", NOT_ZERO) for option in ("--seed", "--threads", "--summary-tasks")],
    *[("seq2seq train", option, "float", ALL) for option in ("--learning-rate", "--clip-norm")],
    ("seq2seq train", "--dropout", "float", NOT_ZERO),
    ("seq2seq evaluate", "--num-tasks", "int", ALL),
    # the studies (`cogmeta experiment STUDY`): every case fails before a backend loads (see `no_training`)
    *[("heuristics", option, "int", ALL) for option in (
        "--seeds", "--pretrain-steps", "--batch-size", "--hidden-size", "--eval-tasks")],
    *[("heuristics", option, "int", NOT_ZERO) for option in ("--seed", "--finetune-steps", "--exact-samples")],
    ("heuristics", "--lr", "float", ALL),
    ("heuristics", "--betas", "float", NOT_ZERO),
    *[("heuristics", option, "choice", CHOICE) for option in ("--backend",)],
    *[("learning-to-infer", option, "int", ALL) for option in ("--participants", "--hidden", "--repeats")],
    ("learning-to-infer", "--seed", "int", NOT_ZERO),
    ("learning-to-infer", "--lr", "float", ALL),
    *[("learning-to-infer", option, "choice", CHOICE) for option in ("--backend", "--optimizer", "--draws")],
    *[("heuristics-fit", option, "int", ALL) for option in (
        "--participants", "--tasks", "--trials", "--exact-samples", "--pretrain-steps")],
    *[("heuristics-fit", option, "int", NOT_ZERO) for option in ("--seed", "--finetune-steps")],
    *[("heuristics-fit", option, "float", NOT_ZERO) for option in ("--lapse-rate", "--betas")],
    *[("heuristics-fit", option, "choice", CHOICE) for option in ("--backend", "--condition", "--generators")],
]
STUDIES = ("heuristics", "learning-to-infer", "heuristics-fit")
CASES = [pytest.param(command, option, kind, category, id=f"{command}{option}={category}")
         for command, option, kind, categories in MATRIX for category in categories]


def run_cli(args, capsys) -> tuple[int, str, str]:
    """``main(args)`` -> (exit code, stdout, stderr); argparse's usage errors exit via SystemExit."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and out == "", (out, err)
    assert any(name in err for name in names), (names, err)


def _prefix(command: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return {
        "train": ["train", "--backend", "torch", "--out", out, "--no-progress", "--no-figures"],
        "sweep": ["sweep", "--backend", "torch", "--out", out, "--no-progress"],
        "evaluate": ["evaluate", out, "--no-figures"],
        "seq2seq train": ["train", "--preset", "seq2seq-me-cpu", "--out", out, "--no-progress"],
        "seq2seq evaluate": ["evaluate", out],
        "heuristics": ["experiment", "heuristics", "ranking", "--backend", "torch", "--out", out, "--no-figures"],
        "learning-to-infer": ["experiment", "learning-to-infer", "eu", "--backend", "torch", "--out", out,
                              "--no-figures"],
        "heuristics-fit": ["experiment", "heuristics-fit", "--simulate", "--backend", "torch", "--out", out,
                           "--no-figures"],
    }[command]


@pytest.fixture
def no_training(monkeypatch):
    """The studies' entry points fail loudly: a bad value that got past the checks would train (minutes)."""
    import cogmeta.experiments.heuristics
    import cogmeta.experiments.heuristics_fitting
    import cogmeta.experiments.heuristics_recovery
    import cogmeta.experiments.learning_to_infer

    def train(*args, **kwargs):
        raise AssertionError("bad input reached the study's training")

    for module, name in ((cogmeta.experiments.heuristics, "run_experiment"),
                         (cogmeta.experiments.learning_to_infer, "run_experiment"),
                         (cogmeta.experiments.heuristics_fitting, "run_fit"),
                         (cogmeta.experiments.heuristics_recovery, "run_recovery")):
        monkeypatch.setattr(module, name, train)


@pytest.mark.parametrize("command, option, kind, category", CASES)
def test_bad_input_matrix(tmp_path, capsys, no_training, command, option, kind, category):
    value = (HUGE_INT if kind == "int" else HUGE_FLOAT) if category == "huge" else BAD[category]
    code, out, err = run_cli([*_prefix(command, tmp_path), option, value], capsys)
    assert_one_line_error(code, out, err, option)
    assert not (tmp_path / "out").exists(), "nothing may be written for bad input"


def test_the_matrix_covers_every_category():
    assert len(CASES) > 350
    assert {category for *_, categories in MATRIX for category in categories} == set(ALL)
    assert {command for command, *_ in MATRIX} >= set(STUDIES)


@pytest.mark.parametrize("command", STUDIES)
@pytest.mark.parametrize("value", ["1e12", "999999999999"])
def test_absurd_counts_fail_at_once_in_the_studies(tmp_path, capsys, no_training, command, value):
    """No hang and no MemoryError traceback: 10^12 seeds, steps, participants or tasks are refused while parsing."""
    options = {"heuristics": ("--seeds", "--pretrain-steps", "--finetune-steps", "--eval-tasks", "--batch-size",
                              "--hidden-size", "--exact-samples"),
               "learning-to-infer": ("--participants", "--repeats", "--hidden"),
               "heuristics-fit": ("--participants", "--tasks", "--trials", "--exact-samples", "--pretrain-steps")}
    for option in options[command]:
        code, out, err = run_cli([*_prefix(command, tmp_path), option, value], capsys)
        assert_one_line_error(code, out, err, f"argument {option}: ")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- --out
@pytest.mark.parametrize("command", ["train", "sweep", "seq2seq train", *STUDIES])
@pytest.mark.parametrize("where", ["under /dev/null", "a file", "under a file"])
def test_an_out_folder_that_cannot_be_made_is_refused_before_training(tmp_path, capsys, no_training, command, where):
    regular = tmp_path / "file"
    regular.write_text("x")
    out = {"under /dev/null": Path("/dev/null/x"), "a file": regular, "under a file": regular / "sub"}[where]
    args = [*_prefix(command, tmp_path), "--out", out]
    code, out_text, err = run_cli(args, capsys)
    assert_one_line_error(code, out_text, err, f"--out {out}")
    assert "is a file, not a folder" in err
    assert regular.read_text() == "x" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["missing", "a folder"])
def test_heuristics_fit_data_must_be_a_readable_file(tmp_path, capsys, no_training, what):
    data = tmp_path / "participants.csv"
    if what == "a folder":
        data.mkdir()
    code, out, err = run_cli(["experiment", "heuristics-fit", "--data", data, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, out, err, f"--data {data} " + ("does not exist" if what == "missing" else "is a folder"))
    assert not (tmp_path / "out").exists()


def test_heuristics_fit_weights_must_be_a_folder(tmp_path, capsys, no_training):
    regular = tmp_path / "file"
    regular.write_text("x")
    code, out, err = run_cli([*_prefix("heuristics-fit", tmp_path), "--generators", "bmli", "--weights", regular], capsys)
    assert_one_line_error(code, out, err, f"--weights {regular} is a file, not a folder")


def test_the_default_study_folder_is_checked_too(tmp_path, capsys, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    code, out, err = run_cli(["experiment", "heuristics", "none"], capsys)
    assert_one_line_error(code, out, err, "the default folder runs/heuristics-torch of --out cannot be created")


def test_study_usage_errors_are_one_line(capsys):
    for args in (["experiment", "heuristics"], ["experiment", "heuristics", "ranking", "--participants", "3"],
                 ["experiment", "learning-to-infer", "urns"], ["experiment", "heuristics-fit"],
                 ["experiment", "heuristics-fit", "--simulate", "--data", "x.csv"]):
        code, out, err = run_cli(args, capsys)
        assert_one_line_error(code, out, err, f"cogmeta experiment {args[1]}: error: ")


def test_seq2seq_figure_out_must_be_a_file_path(tmp_path, capsys):
    code, out, err = run_cli(["seq2seq", "figure", tmp_path / "run", "--out", tmp_path], capsys)
    assert_one_line_error(code, out, err, f"--out {tmp_path} is a folder")


# ------------------------------------------------------------------------------------------ memory
def test_a_model_that_cannot_fit_names_hidden_size_and_batch_size(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cogmeta.memory, "available_bytes", lambda: 2**30)
    hidden = 8192
    code, out, err = run_cli([*_prefix("train", tmp_path), "--hidden-size", hidden], capsys)
    assert_one_line_error(code, out, err, "hidden_size=8192")
    # GRU, one layer, Gaussian head (2 outputs), 2 inputs: 3H(2 + H) + 2 * 3H biases + 2H + 2 = 3H^2 + 14H + 2
    assert f"{3 * hidden**2 + 14 * hidden + 2} parameters" in err
    assert "batch_size=128" in err and "lower --hidden-size or --batch-size" in err
    assert not (tmp_path / "out").exists()


def test_too_many_held_out_tasks_are_refused_with_the_arithmetic(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cogmeta.memory, "available_bytes", lambda: 10**6)
    code, out, err = run_cli(["evaluate", tmp_path, "--num-tasks", "10000"], capsys)
    assert_one_line_error(code, out, err, "--num-tasks")
    assert "10000 tasks x T=1 steps x 16 float64 arrays x 8 bytes" in err  # 1.28e6 bytes > 1e6


def test_the_studies_refuse_what_cannot_fit_with_the_arithmetic(tmp_path, capsys, monkeypatch, no_training):
    monkeypatch.setattr(cogmeta.memory, "available_bytes", lambda: 2**30)
    # parse time: one count too large on its own
    code, out, err = run_cli([*_prefix("heuristics", tmp_path), "--eval-tasks", "10000000"], capsys)
    assert_one_line_error(code, out, err, "argument --eval-tasks: 10000000 tasks x T=10 steps x 16 float64 arrays")
    # before training: all the options together (JAX trains a stage's members in one program)
    args = [*_prefix("heuristics", tmp_path), "--backend", "jax", "--seeds", "1000", "--hidden-size", "128"]
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, out, err, "2000 members trained together x (bounded GRU with hidden_size=128")
    assert "lower --hidden-size or --batch-size (or --seeds, --betas" in err
    code, out, err = run_cli([*_prefix("learning-to-infer", tmp_path), "--participants", "10000"], capsys)
    assert_one_line_error(code, out, err, "10000 participants x (5000 training queries x 11 float32 values")
    assert "lower --participants" in err
    code, out, err = run_cli([*_prefix("heuristics-fit", tmp_path), "--participants", "10000", "--tasks", "1000",
                              "--generators", "take_the_best"], capsys)
    assert_one_line_error(code, out, err, "1 generator(s) x --participants 10000 x --tasks 1000 = 10000000 tasks")
    assert not (tmp_path / "out").exists()


def test_nothing_is_refused_where_memory_cannot_be_read(monkeypatch):
    monkeypatch.setattr(cogmeta.memory, "available_bytes", lambda: None)
    cogmeta.memory.require_fits(10**30, "a lot", "never mind")


def test_sweep_memory_counts_every_member_trained_together(tmp_path, capsys, monkeypatch):
    one, _ = cogmeta.memory.training_bytes(RunConfig(model=ModelConfig(hidden_size=32)))
    monkeypatch.setattr(cogmeta.memory, "available_bytes", lambda: 3 * one)
    args = [*_prefix("sweep", tmp_path), "--hidden-size", "32", "--strategy", "vmap"]
    code, out, err = run_cli([*args, "--seeds", "4"], capsys)
    assert_one_line_error(code, out, err, "4 seeds x 1 grid point(s)")
    # trained one at a time ("loop"), the same four members fit
    from cogmeta.cli_sweep import _require_sweep_fits

    _require_sweep_fits(RunConfig(model=ModelConfig(hidden_size=32)), {}, 4, "loop")


# --------------------------------------------------------------------------------- the main() boundary
@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"), MemoryError(), KeyError("head.weight"), ValueError("bad\nvalue"),
    FileNotFoundError("no file"), PermissionError(13, "Permission denied"),
])
def test_main_turns_user_errors_into_one_line(tmp_path, capsys, monkeypatch, error):
    def fail(args):
        raise error

    monkeypatch.setattr("cogmeta.cli._evaluate", fail)
    code, out, err = run_cli(["evaluate", tmp_path], capsys)
    assert_one_line_error(code, out, err, "cogmeta: error: ")


def test_main_reports_an_unreadable_safetensors_file_in_one_line(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    def fail(args):
        raise SafetensorError("invalid header")

    monkeypatch.setattr("cogmeta.cli._evaluate", fail)
    code, out, err = run_cli(["evaluate", tmp_path], capsys)
    assert_one_line_error(code, out, err, "invalid header")


# ------------------------------------------------------------------------------------------ resume
CONFIG = RunConfig(train=TrainConfig(steps=20, batch_size=4, log_every=5, checkpoint_every=10, eval_every=10,
                                     eval_tasks=10), model=ModelConfig(hidden_size=4))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 20-step torch run of CONFIG (the files are compared, never changed, by the tests)."""
    pytest.importorskip("torch")
    from cogmeta.training import train

    run = tmp_path_factory.mktemp("resume") / "run"
    train(CONFIG, run, "torch", progress=False, figures=False)
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run.iterdir()) if path.is_file()}


@pytest.mark.parametrize("extra, named", [
    (["--hidden-size", "16"], "--hidden-size 16 (the run has model.hidden_size = 4)"),
    (["--learning-rate", "1"], "--learning-rate 1.0 (the run has train.learning_rate = 0.003)"),
    (["--task", "coin"], "--task coin (the run's task is 'gaussian')"),
    (["--prior-std", "2"], "--prior-std 2.0 (the run has task.prior_std = 1.0)"),
    (["--alpha", "2"], "--alpha 2.0 (the run's 'gaussian' task has no alpha)"),
    (["--cell", "lstm", "--seed", "3"], "--cell lstm (the run has model.cell = 'gru'); --seed 3"),
    (["--steps-per-call", "7"], "--steps-per-call 7 (the run has jax.steps_per_call = 500)"),
    (["--steps", "20"], "argument --steps 20: the run in"),
    (["--steps", "10"], "has already trained 20 steps"),
])
def test_resume_refuses_options_that_differ_from_the_run(finished_run, capsys, extra, named):
    before = _snapshot(finished_run)
    code, out, err = run_cli(["train", "--resume", finished_run, "--no-progress", "--summary-tasks", "0", *extra],
                             capsys)
    assert_one_line_error(code, out, err, named)
    assert _snapshot(finished_run) == before


def test_resume_refuses_another_out_folder(finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    code, out, err = run_cli(["train", "--resume", finished_run, "--out", other], capsys)
    assert_one_line_error(code, out, err, f"--out {other} and --resume")
    assert not other.exists()


def test_an_explicit_total_counts_even_if_it_is_the_default(finished_run):
    args = build_parser().parse_args(["train", "--resume", str(finished_run), "--steps", str(TrainConfig.steps),
                                      "--hidden-size", "4", "--learning-rate", "0.003"])
    config = resumed_config(args, RunConfig.load(finished_run / "config.json"), finished_run / "config.json")
    assert config.train.steps == TrainConfig.steps == 8000
    assert config == RunConfig(task=CONFIG.task, model=CONFIG.model,
                               train=TrainConfig(**{**CONFIG.train.__dict__, "steps": 8000}))


def test_resume_with_matching_options_trains_to_the_new_total(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    code, out, err = run_cli(["train", "--resume", run, "--steps", "30", "--hidden-size", "4", "--task", "gaussian",
                              "--no-progress", "--summary-tasks", "0", "--no-figures"], capsys)
    assert code == 0, err
    assert "trained 30 steps" in out
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 30


def test_the_library_names_every_differing_field(finished_run):
    import dataclasses

    from cogmeta.training import train

    other = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, learning_rate=1.0, steps=30))
    with pytest.raises(ValueError, match=r"train\.learning_rate: 0\.003 in the run, 1\.0 requested"):
        train(other, finished_run, "torch", resume=True, progress=False, figures=False)
    shorter = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, steps=15))
    with pytest.raises(ValueError, match="has already trained 20 steps"):
        train(shorter, finished_run, "torch", resume=True, progress=False, figures=False)


# ---------------------------------------------------------------------------------- strict config.json
def _write_config(tmp_path: Path, edit) -> Path:
    data = RunConfig().to_dict()
    edit(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["train"].pop("until_kl"), "key(s) until_kl missing in config section 'train'"),
    (lambda d: d["task"].pop("prior_std"), "key(s) prior_std missing in config section 'task'"),
    (lambda d: d.pop("jax"), "config section(s) jax missing"),
    (lambda d: d["model"].update(hidden=3), "unknown key(s) hidden in config section 'model'"),
    (lambda d: d.update(optimiser={}), "unknown config section(s) optimiser"),
    (lambda d: d["train"].update(steps="many"), "TrainConfig.steps must be an integer"),
    (lambda d: d["task"].update(name="nope"), "needs a 'name' out of"),
])
def test_config_json_is_loaded_strictly(tmp_path, capsys, edit, message):
    path = _write_config(tmp_path, edit)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        RunConfig.load(path)
    assert str(path) in str(error.value)
    (tmp_path / "weights.safetensors").write_bytes(b"")  # so that evaluate reaches the config
    code, out, err = run_cli(["evaluate", tmp_path], capsys)
    assert_one_line_error(code, out, err, str(path))


def test_a_missing_key_error_gives_the_default_to_add(tmp_path):
    path = _write_config(tmp_path, lambda d: d["train"].pop("until_kl_every"))
    with pytest.raises(ValueError, match='"until_kl_every": 25'):
        RunConfig.load(path)


def test_config_json_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"task": \xff')
    with pytest.raises(ValueError, match=f"run config {path} is not valid JSON"):
        RunConfig.load(path)


def test_from_dict_still_completes_configs_written_in_code():
    assert RunConfig.from_dict({"model": {"hidden_size": 3}}).model.hidden_size == 3
    with pytest.raises(ValueError, match="jax"):
        RunConfig.from_dict({"model": {"hidden_size": 3}}, strict=True)


# --------------------------------------------------------------------------------------------- seq2seq
def _seq2seq_config():
    import dataclasses

    from cogmeta.presets import preset

    config = preset("seq2seq-me-cpu")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_size=4),
                               train=dataclasses.replace(config.train, steps=10, log_every=5, checkpoint_every=5))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["train"].pop("dtype"), "key(s) dtype missing in config section 'train'"),
    (lambda d: d["model"].update(width=3), "unknown key(s) width in config section 'model'"),
    (lambda d: d.pop("jax"), "config section(s) jax missing"),
    (lambda d: d["task"].pop("num_query"), "key(s) num_query missing in config section 'task'"),
    (lambda d: d["model"].pop("family"), "key(s) family missing in config section 'model'"),
    (lambda d: d["task"].update(name="gaussian"), "needs a 'name' out of mutual_exclusivity, scan"),
    (lambda d: d["train"].update(batch_size=4), "batch_size must be 1 for the seq2seq family"),
    (lambda d: d["model"].update(cell="gru"), "ModelConfig.cell must be"),
])
def test_seq2seq_config_json_is_loaded_strictly(tmp_path, edit, message):
    from cogmeta.config import RunConfig

    data = _seq2seq_config().to_dict()
    edit(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        RunConfig.load(path)
    assert str(path) in str(error.value)


@pytest.fixture
def seq2seq_run(tmp_path):
    """A seq2seq run folder (config, weights, checkpoint) with random float32 weights: no training needed."""
    from cogmeta.experiments.meta_seq2seq import save_run_checkpoint, save_weights
    from cogmeta.experiments.meta_seq2seq_shapes import parameter_shapes as seq2seq_shapes

    config = _seq2seq_config()
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, shape in seq2seq_shapes(config).items()}
    run = tmp_path / "run"
    run.mkdir()
    config.save(run / "config.json")
    save_weights(run / "weights.safetensors", weights, config, "torch")
    zeros = {name: np.zeros_like(value) for name, value in weights.items()}
    save_run_checkpoint(run / "checkpoint.safetensors", Checkpoint(3, weights, zeros, zeros, "torch"), config)
    return run, config, weights


def _flip_bytes(path: Path, count: int = 16) -> None:
    """Invert the low byte of ``count`` float32 values in the tensor data (values stay finite)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for k in range(count):
        data[start + 4 * k] ^= 0xFF
    path.write_bytes(bytes(data))


def _resave(path: Path, transform) -> None:
    """Rewrite a safetensors file with transformed tensors and a valid SHA-256 (so only the content is wrong)."""
    from cogmeta.weights import read_safetensors

    tensors, metadata = read_safetensors(path)
    atomic_save_safetensors(path, {name: transform(name, value) for name, value in tensors.items()}, metadata)


def test_seq2seq_weights_with_flipped_bytes_are_refused(seq2seq_run, capsys):
    from cogmeta.experiments.meta_seq2seq import load_weights

    run, config, weights = seq2seq_run
    for name, value in load_weights(run / "weights.safetensors", config).items():  # intact: loads as written
        np.testing.assert_array_equal(value, weights[name])
    _flip_bytes(run / "weights.safetensors")
    with pytest.raises(CorruptFileError, match="weights.safetensors is corrupt"):
        load_weights(run / "weights.safetensors", config)
    code, out, err = run_cli(["evaluate", run, "--num-tasks", "2"], capsys)
    assert_one_line_error(code, out, err, "is corrupt")


def test_seq2seq_weights_with_nan_are_refused(seq2seq_run, capsys):
    from cogmeta.experiments.meta_seq2seq import load_weights

    run, config, _ = seq2seq_run
    _resave(run / "weights.safetensors", lambda name, value: np.where(np.arange(value.size).reshape(value.shape) == 0,
                                                                      np.float32(np.nan), value))
    with pytest.raises(WeightsError, match="contains non-finite values") as error:
        load_weights(run / "weights.safetensors", config)
    assert str(run / "weights.safetensors") in str(error.value)
    code, out, err = run_cli(["seq2seq", "translate", run, "dax"], capsys)
    assert_one_line_error(code, out, err, "non-finite")


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_seq2seq_weights_of_another_dtype_are_refused(seq2seq_run, dtype):
    from cogmeta.experiments.meta_seq2seq import load_weights, save_weights
    from cogmeta.weights import read_safetensors

    run, config, _ = seq2seq_run
    _resave(run / "weights.safetensors", lambda name, value: value.astype(dtype))
    with pytest.raises(WeightsError, match=f"dtype {dtype}, expected float32"):
        load_weights(run / "weights.safetensors", config)
    with pytest.raises(WeightsError, match=f"dtype {dtype}, expected float32"):
        save_weights(run / "other.safetensors", read_safetensors(run / "weights.safetensors")[0], config, "torch")
    assert not (run / "other.safetensors").exists()


def test_seq2seq_checkpoints_are_checked_like_the_tutorial_ones(seq2seq_run):
    import dataclasses

    from cogmeta.experiments.meta_seq2seq import load_run_checkpoint

    run, config, _ = seq2seq_run
    path = run / "checkpoint.safetensors"
    assert load_run_checkpoint(path, config).step == 3
    fewer = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=2))
    with pytest.raises(WeightsError, match="beyond the run's total of 2 steps"):
        load_run_checkpoint(path, fewer)
    _resave(path, lambda name, value: value.astype(np.float16))
    with pytest.raises(WeightsError, match="dtype float16, expected float32"):
        load_run_checkpoint(path, config)
    _resave(path, lambda name, value: value.astype(np.float32))
    _flip_bytes(path)
    with pytest.raises(CorruptFileError, match="checkpoint.safetensors is corrupt"):
        load_run_checkpoint(path, config)


def test_parameter_count_of_the_tutorial_model_matches_its_closed_form():
    """The count the memory message quotes: 3H^2 + 14H + 2 for a one-layer GRU with a Gaussian head."""
    for hidden in (1, 7, 64):
        shapes = parameter_shapes(RunConfig(model=ModelConfig(hidden_size=hidden)))
        assert sum(int(np.prod(shape)) for shape in shapes.values()) == 3 * hidden**2 + 14 * hidden + 2
