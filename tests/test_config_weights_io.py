"""Run config, canonical weights, checkpoints, atomic writes, the metrics log and the LR schedule (core only)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import numpy as np
import pytest

from cogmeta.backends import load_backend
from cogmeta.checkpoint import FORMAT as CHECKPOINT_FORMAT
from cogmeta.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig
from cogmeta.io import (
    atomic_save_safetensors,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    tensors_digest,
)
from cogmeta.metrics_log import MetricsLog, metric_series, read_metrics
from cogmeta.runs import RunDir
from cogmeta.schedules import learning_rate
from cogmeta.tasks import CoinTask, GaussianMeanTask
from cogmeta.weights import FORMAT as WEIGHTS_FORMAT
from cogmeta.weights import (
    WeightsError,
    load_weights,
    parameter_shapes,
    save_weights,
    validate_weights,
)

CUSTOM = RunConfig(
    task=CoinTask(alpha=2.5, beta=0.5, sequence_length=12),
    model=ModelConfig(cell="lstm", hidden_size=7, num_layers=2),
    train=TrainConfig(
        steps=123, batch_size=9, learning_rate=1e-4, schedule="constant", final_lr_fraction=0.5, clip_norm=2.5,
        adam_beta1=0.8, adam_beta2=0.99, adam_eps=1e-6, seed=42, dtype="float64", log_every=3, checkpoint_every=50,
    ),
    torch=TorchOptions(threads=0),
    jax=JaxOptions(steps_per_call=17),
)


def _leftovers(folder, keep):
    return sorted(name for name in os.listdir(folder) if name not in keep)


# --------------------------------------------------------------------------------------------------
# RunConfig
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [RunConfig(), CUSTOM], ids=["default", "custom"])
def test_config_json_round_trip(config, tmp_path):
    text = json.dumps(config.to_dict())
    assert RunConfig.from_dict(json.loads(text)) == config
    path = tmp_path / "config.json"
    config.save(path)
    assert RunConfig.load(path) == config
    assert json.loads(path.read_text())["task"]["name"] == config.task.name
    assert _leftovers(tmp_path, {"config.json"}) == []


def test_config_dict_is_plain_json():
    data = CUSTOM.to_dict()
    assert data == {
        "task": {"name": "coin", "alpha": 2.5, "beta": 0.5, "sequence_length": 12},
        "model": {"cell": "lstm", "hidden_size": 7, "num_layers": 2, "family": "meta_learner", "dropout": 0.0, "memory": True},
        "train": dataclasses.asdict(CUSTOM.train),
        "torch": {"threads": 0, "device": "cpu", "cuda_graphs": False},
        "jax": {"steps_per_call": 17},
    }


def test_partial_config_takes_defaults():
    config = RunConfig.from_dict({"model": {"hidden_size": 3}})
    assert config == RunConfig(model=ModelConfig(hidden_size=3))


def test_output_size_follows_the_task():
    assert RunConfig().output_size == 2
    assert RunConfig(task=CoinTask()).output_size == 1


def test_unknown_sections_and_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown config section.*optimiser"):
        RunConfig.from_dict({"optimiser": {}})
    with pytest.raises(ValueError, match="unknown key.*hidden.*'model'.*hidden_size"):
        RunConfig.from_dict({"model": {"hidden": 64}})
    with pytest.raises(ValueError, match="unknown key.*lr.*'train'"):
        RunConfig.from_dict({"train": {"lr": 0.1}})
    with pytest.raises(ValueError, match="unknown key.*threads.*'jax'"):
        RunConfig.from_dict({"jax": {"threads": 1}})
    with pytest.raises(ValueError, match="noise"):
        RunConfig.from_dict({"task": {"name": "coin", "noise": 1.0}})
    with pytest.raises(ValueError, match="unknown task 'no_such_task'"):
        RunConfig.from_dict({"task": {"name": "no_such_task"}})
    with pytest.raises(ValueError, match="name"):
        RunConfig.from_dict({"task": {"alpha": 1.0}})


INVALID_SECTIONS = [
    ("model", "hidden_size", 0),
    ("model", "hidden_size", 2.0),
    ("model", "num_layers", 0),
    ("model", "cell", "rnn"),
    ("train", "dtype", "float16"),
    ("train", "learning_rate", 0.0),
    ("train", "learning_rate", -1e-3),
    ("train", "learning_rate", float("nan")),
    ("train", "steps", 0),
    ("train", "batch_size", 0),
    ("train", "schedule", "linear"),
    ("train", "final_lr_fraction", 1.5),
    ("train", "clip_norm", 0.0),
    ("train", "adam_beta1", 1.0),
    ("train", "adam_beta2", -0.1),
    ("train", "adam_eps", 0.0),
    ("train", "seed", -1),
    ("train", "seed", 2**31),
    ("train", "log_every", 0),
    ("train", "checkpoint_every", 0),
    ("train", "eval_every", 0),
    ("train", "eval_tasks", 1),
    ("train", "steps", True),
    ("torch", "threads", -1),
    ("jax", "steps_per_call", 0),
]
SECTION_CLASSES = {"model": ModelConfig, "train": TrainConfig, "torch": TorchOptions, "jax": JaxOptions}


@pytest.mark.parametrize("section, field, value", INVALID_SECTIONS, ids=lambda v: repr(v))
def test_invalid_values_are_rejected_naming_the_field(section, field, value):
    cls = SECTION_CLASSES[section]
    pattern = re.escape(f"{cls.__name__}.{field}")
    with pytest.raises(ValueError, match=pattern) as excinfo:
        cls(**{field: value})
    assert repr(value) in str(excinfo.value)
    with pytest.raises(ValueError, match=pattern):
        RunConfig.from_dict({section: {field: value}})
    with pytest.raises(ValueError, match=pattern):
        dataclasses.replace(cls(), **{field: value})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().model.hidden_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().task = CoinTask()


@pytest.mark.parametrize("name", ["rl2-bandit", "seq2seq-me-cpu", "heuristics-ranking", "l2i-eu-id"])
def test_cuda_graphs_are_refused_for_families_without_a_captured_step(name):
    """Only the tutorial's PyTorch step has a CUDA-graph form; the others ignored the option silently before, in
    a config built in code as in a config.json."""
    from cogmeta.presets import preset

    config = preset(name)
    graphs = TorchOptions(device="cuda", cuda_graphs=True)
    with pytest.raises(ValueError, match=f"the {config.model.family} family's PyTorch step has no CUDA-graph form"):
        dataclasses.replace(config, torch=graphs)
    data = config.to_dict() | {"torch": dataclasses.asdict(graphs)}
    with pytest.raises(ValueError, match="leave --cuda-graphs out"):
        RunConfig.from_dict(data)
    assert dataclasses.replace(RunConfig(), torch=graphs).torch.cuda_graphs  # the tutorial's family has it


def test_loading_a_missing_config_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        RunConfig.load(tmp_path / "nope.json")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; choose one of jax, torch"):
        load_backend("tensorflow")


# --------------------------------------------------------------------------------------------------
# canonical weights
# --------------------------------------------------------------------------------------------------
def _config(cell="gru", layers=1, hidden=5, task=None):
    return RunConfig(task=task or GaussianMeanTask(), model=ModelConfig(cell=cell, hidden_size=hidden, num_layers=layers))


@pytest.mark.parametrize("cell, gates", [("gru", 3), ("lstm", 4)])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("task, outputs", [(GaussianMeanTask(), 2), (CoinTask(), 1)], ids=["gaussian", "coin"])
def test_parameter_shapes(cell, gates, layers, task, outputs):
    hidden = 5
    expected = []
    for layer in range(layers):
        width = 2 if layer == 0 else hidden
        expected += [
            (f"core.weight_ih_l{layer}", (gates * hidden, width)),
            (f"core.weight_hh_l{layer}", (gates * hidden, hidden)),
            (f"core.bias_ih_l{layer}", (gates * hidden,)),
            (f"core.bias_hh_l{layer}", (gates * hidden,)),
        ]
    expected += [("head.weight", (outputs, hidden)), ("head.bias", (outputs,))]
    assert list(parameter_shapes(_config(cell, layers, hidden, task)).items()) == expected


def _random_weights(config, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in parameter_shapes(config).items()}


def _with_dtype(config, dtype):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, dtype=np.dtype(dtype).name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_round_trip_is_bit_exact(tmp_path, dtype):
    config = _with_dtype(_config("lstm", 2), dtype)
    weights = _random_weights(config, dtype)
    path = tmp_path / "weights.safetensors"
    save_weights(path, dict(reversed(list(weights.items()))), config, framework="torch")
    loaded = load_weights(path, config)
    assert list(loaded) == list(parameter_shapes(config))
    for name, value in weights.items():
        assert loaded[name].dtype == dtype
        np.testing.assert_array_equal(loaded[name], value)
    assert _leftovers(tmp_path, {"weights.safetensors"}) == []
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        assert handle.metadata() == {"format": WEIGHTS_FORMAT, "framework": "torch", "sha256": tensors_digest(weights)}


def _write_raw(path, tensors):
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, str(path))


def _broken_weights(config, problem):
    weights = _random_weights(config)
    if problem == "missing":
        del weights["core.bias_hh_l1"]
        return weights, "core.bias_hh_l1"
    if problem == "extra":
        weights["core.weight_ih_l2"] = np.zeros((3, 3), np.float32)
        return weights, "core.weight_ih_l2"
    if problem == "shape":
        weights["head.weight"] = np.zeros((2, 6), np.float32)
        return weights, "head.weight"
    if problem == "transposed":
        weights["core.weight_ih_l0"] = weights["core.weight_ih_l0"].T.copy()
        return weights, "core.weight_ih_l0"
    if problem == "nonfinite":
        weights["core.weight_hh_l0"][0, 0] = np.nan
        return weights, "core.weight_hh_l0"
    raise AssertionError(problem)


PROBLEMS = ["missing", "extra", "shape", "transposed", "nonfinite"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_loading_a_file_that_does_not_fit_names_the_tensor(tmp_path, problem):
    config = _config("gru", 2)
    weights, name = _broken_weights(config, problem)
    path = tmp_path / "weights.safetensors"
    _write_raw(path, weights)
    with pytest.raises(WeightsError, match=re.escape(name)) as excinfo:
        load_weights(path, config)
    assert "2-layer GRU with hidden_size=5" in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_saving_weights_that_do_not_fit_writes_nothing(tmp_path, problem):
    config = _config("gru", 2)
    weights, name = _broken_weights(config, problem)
    with pytest.raises(WeightsError, match=re.escape(name)):
        save_weights(tmp_path / "weights.safetensors", weights, config, framework="jax")
    assert os.listdir(tmp_path) == []


def test_weights_for_another_model_are_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_weights(path, _random_weights(_config("gru", 1)), _config("gru", 1), framework="torch")
    with pytest.raises(WeightsError, match="core.weight_ih_l0"):
        load_weights(path, _config("lstm", 1))
    with pytest.raises(WeightsError, match="head.weight"):
        load_weights(path, _config("gru", 1, task=CoinTask()))


def test_validate_weights_checks_dtype_when_asked():
    config = _config()
    weights = _random_weights(config, np.float32)
    validate_weights(weights, config, dtype="float32")
    with pytest.raises(WeightsError, match="dtype float32, expected float64"):
        validate_weights(weights, config, dtype="float64")


def test_unreadable_weights_files_raise_weights_error(tmp_path):
    config = _config()
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        load_weights(garbage, config)
    good = tmp_path / "good.safetensors"
    save_weights(good, _random_weights(config), config, framework="torch")
    data = good.read_bytes()
    for cut in (4, 20, len(data) // 2, len(data) - 1):
        truncated = tmp_path / f"truncated{cut}.safetensors"
        truncated.write_bytes(data[:cut])
        with pytest.raises(WeightsError, match=f"truncated{cut}"):
            load_weights(truncated, config)
        with pytest.raises(WeightsError, match=f"truncated{cut}"):
            load_checkpoint(truncated, config)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError):
        load_weights(empty, config)
    with pytest.raises(FileNotFoundError, match="absent"):
        load_weights(tmp_path / "absent.safetensors", config)


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
class Boom(RuntimeError):
    pass


def test_failed_safetensors_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.numpy

    config = _config()
    path = tmp_path / "weights.safetensors"
    old = _random_weights(config, seed=1)
    save_weights(path, old, config, framework="torch")
    before = path.read_bytes()

    def garbage_then_raise(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise Boom("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", garbage_then_raise)
    with pytest.raises(Boom):
        save_weights(path, _random_weights(config, seed=2), config, framework="torch")
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"weights.safetensors"}) == []
    monkeypatch.undo()
    np.testing.assert_array_equal(load_weights(path, config)["head.bias"], old["head.bias"])


def test_failed_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    RunConfig().save(path)
    before = path.read_text()

    def refuse(src, dst):
        raise Boom("rename failed")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(Boom):
        CUSTOM.save(path)
    with pytest.raises(Boom):
        atomic_save_safetensors(tmp_path / "new.safetensors", {"x": np.zeros(3)})
    monkeypatch.undo()
    assert path.read_text() == before
    assert _leftovers(tmp_path, {"config.json"}) == []


def test_failed_writer_leaves_no_file(tmp_path):
    def half_write(tmp):
        tmp.write_text("partial")
        raise Boom("interrupted")

    with pytest.raises(Boom):
        atomic_write_with(tmp_path / "out.txt", half_write)
    assert os.listdir(tmp_path) == []


def test_atomic_writes_replace_the_target(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    atomic_write_json(tmp_path / "data.json", {"a": [1, 2.5]})
    assert json.loads((tmp_path / "data.json").read_text()) == {"a": [1, 2.5]}
    atomic_write_with(tmp_path / "bytes.bin", lambda tmp: tmp.write_bytes(b"\x00\x01"))
    assert (tmp_path / "bytes.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["bytes.bin", "data.json", "sub"]
    assert os.listdir(tmp_path / "sub") == ["file.txt"]


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------
def _checkpoint(config, step=17, dtype=np.float32):
    return Checkpoint(
        step=step,
        params=_random_weights(config, dtype, seed=1),
        exp_avg=_random_weights(config, dtype, seed=2),
        exp_avg_sq={k: np.abs(v) for k, v in _random_weights(config, dtype, seed=3).items()},
        framework="jax",
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checkpoint_round_trip(tmp_path, dtype):
    config = _with_dtype(_config("lstm", 2), dtype)
    checkpoint = _checkpoint(config, dtype=dtype)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, checkpoint, config)
    loaded = load_checkpoint(path, config)
    assert loaded.step == 17 and loaded.framework == "jax"
    for group in ("params", "exp_avg", "exp_avg_sq"):
        original, restored = getattr(checkpoint, group), getattr(loaded, group)
        assert list(restored) == list(parameter_shapes(config))
        for name in original:
            assert restored[name].dtype == dtype
            np.testing.assert_array_equal(restored[name], original[name])
    assert _leftovers(tmp_path, {"checkpoint.safetensors"}) == []


def test_checkpoint_rejects_a_weights_file(tmp_path):
    config = _config()
    path = tmp_path / "weights.safetensors"
    save_weights(path, _random_weights(config), config, framework="torch")
    with pytest.raises(WeightsError, match=re.escape(f"format '{WEIGHTS_FORMAT}', expected '{CHECKPOINT_FORMAT}'")):
        load_checkpoint(path, config)


def test_checkpoint_with_a_missing_or_foreign_tensor_is_refused(tmp_path):
    from safetensors.numpy import save_file

    config = _config()
    checkpoint = _checkpoint(config)
    tensors = {f"{group}.{name}": value for group, arrays in (
        ("param", checkpoint.params), ("exp_avg", checkpoint.exp_avg), ("exp_avg_sq", checkpoint.exp_avg_sq)
    ) for name, value in arrays.items()}
    metadata = {"format": CHECKPOINT_FORMAT, "step": "3", "framework": "torch"}
    path = tmp_path / "checkpoint.safetensors"

    missing = dict(tensors)
    del missing["exp_avg_sq.head.bias"]
    save_file(missing, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="group 'exp_avg_sq'.*head.bias"):
        load_checkpoint(path, config)

    save_file({**tensors, "momentum.head.bias": tensors["param.head.bias"]}, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="momentum.head.bias"):
        load_checkpoint(path, config)

    save_file(tensors, str(path), metadata=metadata)
    assert load_checkpoint(path, config).step == 3
    with pytest.raises(WeightsError, match="core.weight_ih_l0"):
        load_checkpoint(path, _config("lstm"))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors", config)


def test_save_checkpoint_validates_every_group(tmp_path):
    config = _config()
    checkpoint = _checkpoint(config)
    checkpoint.exp_avg["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsError, match="head.weight"):
        save_checkpoint(tmp_path / "checkpoint.safetensors", checkpoint, config)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# metrics log and run folder
# --------------------------------------------------------------------------------------------------
def test_metrics_log_append_read_truncate(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    assert path.read_text() == "step,metric,value\n"
    assert read_metrics(path) == []
    rows = [(10, "loss", 1 / 3), (10, "grad_norm", 2.5), (20, "loss", 0.1), (30, "loss", 1e-300), (30, "lr", 3e-3)]
    log.append(rows[:2])
    log.append([])
    log.append(rows[2:])
    assert read_metrics(path) == rows  # floats round-trip exactly (repr)
    MetricsLog(path)  # re-opening an existing log keeps it
    assert read_metrics(path) == rows
    log.truncate_after(20)
    assert read_metrics(path) == rows[:3]
    log.append([(25, "loss", 0.5)])
    assert read_metrics(path) == rows[:3] + [(25, "loss", 0.5)]
    assert metric_series(read_metrics(path), "loss") == ([10, 20, 25], [1 / 3, 0.1, 0.5])
    log.truncate_after(0)
    assert read_metrics(path) == []
    assert _leftovers(tmp_path, {"metrics.csv"}) == []


def test_read_metrics_rejects_other_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="not a cogmeta metrics log"):
        read_metrics(path)


def test_run_dir_paths_and_require_run(tmp_path):
    run = RunDir.at(tmp_path / "run")
    assert run.config.name == "config.json" and run.weights.name == "weights.safetensors"
    assert run.checkpoint.name == "checkpoint.safetensors" and run.metrics.name == "metrics.csv"
    assert run.evaluation("jax").name == "evaluation-jax.csv"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.require_run()
    run.root.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        run.require_run()
    RunConfig().save(run.config)
    run.checkpoint.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="--resume"):
        run.require_run()
    run.weights.write_bytes(b"")
    run.require_run()


# --------------------------------------------------------------------------------------------------
# learning-rate schedule
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("final", [0.0, 0.02, 0.5, 1.0])
def test_cosine_schedule_endpoints_and_midpoint(final):
    base, total = 3e-3, 1000
    assert learning_rate(0, base, total, "cosine", final) == base
    assert learning_rate(total, base, total, "cosine", final) == pytest.approx(base * final, rel=1e-14, abs=1e-18)
    assert learning_rate(5 * total, base, total, "cosine", final) == pytest.approx(base * final, rel=1e-14, abs=1e-18)
    assert learning_rate(total // 2, base, total, "cosine", final) == pytest.approx(base * (1 + final) / 2, rel=1e-14)
    quarter = base * (final + (1 - final) * (1 + math.sqrt(0.5)) / 2)
    assert learning_rate(total // 4, base, total, "cosine", final) == pytest.approx(quarter, rel=1e-14)
    rates = [learning_rate(k, base, total, "cosine", final) for k in range(total + 1)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_constant_step_and_unknown_schedule():
    assert all(learning_rate(k, 0.1, 10, "constant", 0.02) == 0.1 for k in (0, 5, 10, 100))
    # Lake (2019): lr0 * 0.1 ** floor(k / 5000), k counted from 0
    steps = [learning_rate(k, 1e-3, 10_000, "step", 0.0, decay_every=5_000, decay_factor=0.1)
             for k in (0, 4_999, 5_000, 9_999, 10_000)]
    assert steps == [1e-3, 1e-3, 1e-3 * 0.1, 1e-3 * 0.1, 1e-3 * 0.1**2]
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate(0, 0.1, 10, "linear", 0.0)
