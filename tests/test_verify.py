"""``cogmeta verify``: PyTorch vs JAX from identical inputs, its ladder, its run-folder check and its bad input.

Tiny configs (hidden 6, batch 5, T = 6, a few steps). The broken-framework tests break one framework's code
(monkeypatched in this process only: a GRU gate order, an Adam epsilon, a learning-rate schedule) and check
that verify fails and that its ladder names the rung where the broken code first acts.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch", reason="verify needs PyTorch")
pytest.importorskip("jax", reason="verify needs JAX")

from cogmeta.cli import main  # noqa: E402
from cogmeta.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from cogmeta.tasks import make_task  # noqa: E402
from cogmeta.verify import LADDER, verify  # noqa: E402

#: hidden 6 / batch 5: small and unequal (a transposed tensor cannot line up by accident)
TINY = ["--hidden-size", "6", "--batch-size", "5", "--sequence-length", "6", "--learning-rate", "0.01",
        "--clip-norm", "0.5", "--heldout-tasks", "8", "--device", "cpu", "--no-figure"]


def tiny_config(task: str = "gaussian", cell: str = "gru", num_layers: int = 1, dtype: str = "float64") -> RunConfig:
    return RunConfig(task=make_task(task, sequence_length=6), model=ModelConfig(cell, 6, num_layers),
                     train=TrainConfig(batch_size=5, learning_rate=1e-2, clip_norm=0.5, dtype=dtype))


def test_a_tutorial_config_passes_every_rung_in_float64():
    report = verify(tiny_config(), steps=3, device="cpu", layers=True, heldout_tasks=8)
    assert report.passed, report.format()
    assert report.dtypes == ["float64"]
    assert report.max_error(dtype="float64") <= 1e-10, report.format()
    assert [layer for layer in LADDER if any(c.layer == layer for c in report.checks)] == list(LADDER[:-1])
    assert {(step, quantity) for _, _, step, quantity, _ in report.curves} == {
        (step, quantity) for step in (1, 2, 3) for quantity in ("params", "loss", "grad_norm")}
    assert "verdict: PASS" in report.format()
    assert {"cogmeta", "numpy", "torch", "jax", "flax"} <= set(report.versions)


@pytest.mark.slow  # 10 s; test_a_tutorial_config_passes_every_rung_in_float64 is the default tier's tutorial check
def test_a_two_layer_lstm_on_drift_passes_in_float64_and_float32():
    report = verify(tiny_config("drift", "lstm", num_layers=2, dtype="float32"), steps=2, device="cpu", heldout_tasks=8)
    assert report.passed, report.format()
    assert report.dtypes == ["float64", "float32"]
    assert report.max_error(dtype="float64") <= 1e-10, report.format()


# B = 4, H = 5 in float64: the shape at which XLA:CPU (jax 0.10.2) miscompiled the JAX GRU's reverse pass when
# it took one [B, 3H] x [3H, H] product per step; verify found it at the "gradients" rung (normalized error 1.26)
def test_the_float64_gru_gradient_at_batch_4_hidden_5():
    config = dataclasses.replace(tiny_config(), model=ModelConfig("gru", 5), train=dataclasses.replace(
        tiny_config().train, batch_size=4))
    report = verify(config, steps=1, device="cpu", layers=True, heldout_tasks=4)
    assert report.passed, report.verdict()


# ------------------------------------------------------------------------------------ broken frameworks
def _swap_gru_gates(monkeypatch):
    """JAX's GRU reads torch's (r, z, n) blocks as (z, r, n): a gate-order bug."""
    import jax.numpy as jnp

    import jax_impl.recurrent as recurrent

    original = recurrent.gru_layer

    def swap(x, axis):
        r, z, n = jnp.split(x, 3, axis=axis)
        return jnp.concatenate([z, r, n], axis=axis)

    monkeypatch.setattr(recurrent, "gru_layer", lambda projected, h0, w_hh, b_hh: original(
        swap(projected, -1), h0, swap(w_hh, 0), swap(b_hh, -1)))


def _jax_adam_epsilon(monkeypatch):
    """JAX's trainer uses Adam's epsilon 1e-4 instead of the config's 1e-8."""
    import jax_impl.trainer as trainer

    original = trainer.adam_step
    monkeypatch.setattr(trainer, "adam_step", lambda params, grads, state, lr, train, apply=None: original(
        params, grads, state, lr, dataclasses.replace(train, adam_eps=1e-4), apply=apply))


def _torch_schedule(monkeypatch):
    """torch's trainer decays its cosine schedule to half the peak instead of the config's final fraction."""
    import torch_impl.trainer as trainer

    original = trainer.learning_rate
    monkeypatch.setattr(trainer, "learning_rate", lambda step, train, total_steps=None, peak=None: original(
        step, dataclasses.replace(train, final_lr_fraction=0.5), total_steps, peak))


@pytest.mark.parametrize("breaks, first_layer", [(_swap_gru_gates, "cell"), (_jax_adam_epsilon, "optimizer update"),
                                                 (_torch_schedule, "optimizer update")],
                         ids=["jax-gru-gate-order", "jax-adam-epsilon", "torch-lr-schedule"])
def test_a_broken_framework_fails_and_the_ladder_names_the_first_disagreeing_layer(breaks, first_layer, monkeypatch,
                                                                                   tmp_path, capsys):
    breaks(monkeypatch)
    code = main(["verify", "--task", "gaussian", "--dtype", "float64", "--steps", "3", "--layers",
                 "--out", str(tmp_path), *TINY])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"verdict: FAIL - first disagreeing layer: {first_layer} " in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is False and summary["first_failing_layer"] == first_layer
    below = LADDER[:LADDER.index(first_layer)]
    with open(tmp_path / "checks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["passed"] == "True" for row in rows if row["layer"] in below), "the rungs below must still agree"
    assert any(row["passed"] == "False" for row in rows if row["layer"] == first_layer)


def test_a_broken_framework_fails_without_the_ladder_too(monkeypatch):
    _jax_adam_epsilon(monkeypatch)
    report = verify(tiny_config(), steps=2, device="cpu", heldout_tasks=8)
    assert not report.passed
    assert report.first_failure().layer == "one step"
    assert "run with --layers" in report.verdict()


# ------------------------------------------------------------------------------------ run folders
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 4-step float32 coin run trained by `cogmeta train` with JAX."""
    run = tmp_path_factory.mktemp("verify") / "coin"
    code = main(["train", "--task", "coin", "--backend", "jax", "--out", str(run), "--steps", "4", "--hidden-size", "6",
                 "--batch-size", "5", "--sequence-length", "6", "--summary-tasks", "0", "--no-progress", "--no-figures",
                 "--log-every", "2", "--steps-per-call", "2", "--eval-tasks", "10"])
    assert code == 0
    return run


def test_a_run_folder_round_trip(tiny_run, capsys):
    code = main(["verify", "--run", str(tiny_run), "--steps", "2", "--eval-tasks", "50", "--heldout-tasks", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    folder = tiny_run / "verify"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["passed"] and summary["dtypes"] == ["float64", "float32"] and summary["run"] == str(tiny_run)
    checks = (folder / "checks.csv").read_text()
    for quantity in ("predictions", "evaluation KL per t", "evaluation mean KL"):
        assert f"run weights,{quantity},cpu,float32" in checks
    assert (folder / "curves.png").stat().st_size > 0
    rows = (folder / "curves.csv").read_text().splitlines()
    assert rows[0] == "device,dtype,step,quantity,normalized_error" and len(rows) == 1 + 2 * 2 * 3
    assert max(float(row.split(",")[4]) for row in rows[1:] if ",float64," in row) <= 1e-10


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv, words", [
    (["--steps", "0"], "--steps"),
    (["--steps", "1001"], "--steps"),
    (["--steps", "two"], "--steps"),
])
def test_bad_numbers_are_usage_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", *argv])
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("cogmeta: error: ") and "\n" not in err, err
    return err


def test_run_options_and_config_options_exclude_each_other(tiny_run, capsys):
    assert main(["verify", "--run", str(tiny_run), "--cell", "lstm"]) == 2
    assert "--cell cannot be combined with --run" in _one_line_error(capsys)
    assert main(["verify", "--run", str(tiny_run), "--config", str(tiny_run / "config.json")]) == 2
    assert "exclude each other" in _one_line_error(capsys)
    assert main(["verify", "--task", "coin", "--eval-tasks", "10"]) == 2
    assert "--eval-tasks needs --run" in _one_line_error(capsys)


def test_a_missing_run_folder(tmp_path, capsys):
    assert main(["verify", "--run", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_a_run_folder_of_another_weights_format(tiny_run, tmp_path, capsys):
    from cogmeta.io import atomic_save_safetensors
    from cogmeta.weights import read_safetensors

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("verify"))
    tensors, _ = read_safetensors(run / "weights.safetensors")
    atomic_save_safetensors(run / "weights.safetensors", tensors, {"format": "cogmeta-weights-0", "framework": "jax"})
    assert main(["verify", "--run", str(run)]) == 2
    err = _one_line_error(capsys)
    assert "'cogmeta-weights-0'" in err and "another cogmeta version" in err


def test_a_run_config_written_by_an_older_cogmeta(tiny_run, tmp_path, capsys):
    run = tmp_path / "older"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("verify"))
    data = json.loads((run / "config.json").read_text())
    del data["train"]["until_kl"]
    (run / "config.json").write_text(json.dumps(data))
    assert main(["verify", "--run", str(run)]) == 2
    assert "until_kl missing" in _one_line_error(capsys)


def test_a_model_family_verify_does_not_cover(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"kind": "meta_seq2seq"}))
    assert main(["verify", "--config", str(path)]) == 2
    assert "covers the tutorial meta-learners" in _one_line_error(capsys)


def test_a_cell_one_framework_lacks(monkeypatch, capsys):
    import jax_impl.recurrent as recurrent

    monkeypatch.setattr(recurrent, "CORES", {"gru": recurrent.GRU})
    assert main(["verify", "--cell", "lstm", *TINY]) == 2
    assert "the jax backend has no such cell" in _one_line_error(capsys)


def test_an_absent_device(capsys):
    from cogmeta.backends import load_module

    if all("gpu" in load_module(name, "verify").device_kinds() for name in ("torch", "jax")):
        pytest.skip("both frameworks see a GPU here")
    assert main(["verify", "--device", "gpu", *[a for a in TINY if a not in ("--device", "cpu")]]) == 2
    assert "--device gpu" in _one_line_error(capsys)


def test_the_inputs_are_drawn_once_in_numpy():
    from cogmeta.verify import initial_weights, synthetic_gradients, training_batches
    from cogmeta.weights import parameter_shapes

    config = tiny_config()
    weights = initial_weights(config)
    assert {n: w.shape for n, w in weights.items()} == parameter_shapes(config)
    assert max(float(np.abs(w).max()) for w in weights.values()) <= 1 / np.sqrt(6)
    assert np.array_equal(training_batches(config, 2)[1], training_batches(config, 2)[1])
    norms = [np.sqrt(sum(float(np.sum(g * g)) for g in step.values())) for step in synthetic_gradients(config, 2)]
    assert np.allclose(norms, [1.0, 0.25])  # 2c and c/2 at clip_norm c = 0.5: both branches of the clip


# ------------------------------------------------------------------------------------ the other families
def tiny_bounded(beta: float = 0.0, dtype: str = "float64"):
    from cogmeta.tasks.paired_comparison import PairedComparisonTask
    from cogmeta.verify_families import BoundedGRUVerify, bounded_train_config

    return BoundedGRUVerify(PairedComparisonTask(condition="ranking", num_cues=3, num_trials=5), hidden_size=5,
                            beta=beta, warmup=2 if beta else 0, train=bounded_train_config(batch_size=4, dtype=dtype))


def tiny_amortized(dtype: str = "float64", optimizer: str = "sgd"):
    from cogmeta.verify_families import AmortizedVerify, amortized_train_config

    return AmortizedVerify(hidden=2, train=amortized_train_config(optimizer, 0.05, dtype))


BOUNDED = ["--family", "bounded-gru", "--condition", "ranking", "--num-cues", "3", "--num-trials", "5",
           "--hidden-size", "5", "--batch-size", "4", "--heldout-tasks", "8", "--device", "cpu", "--no-figure"]
AMORTIZED = ["--family", "amortized", "--hidden-size", "2", "--heldout-tasks", "8", "--device", "cpu", "--no-figure"]


@pytest.mark.parametrize("config", [tiny_bounded, pytest.param(lambda: tiny_bounded(beta=0.01), marks=pytest.mark.slow),
                                    tiny_amortized, lambda: tiny_amortized(optimizer="adam")],
                         ids=["bounded-gru", "bounded-gru-beta", "amortized-sgd", "amortized-adam"])
def test_the_other_families_pass_every_rung_in_float64(config):
    report = verify(config(), steps=3, device="cpu", layers=True, heldout_tasks=8)
    assert report.passed, report.format()
    assert report.max_error(dtype="float64") <= 1e-10, report.format()
    assert [layer for layer in LADDER if any(c.layer == layer for c in report.checks)] == list(LADDER[:-1])
    assert {(step, quantity) for _, _, step, quantity, _ in report.curves} == {
        (step, quantity) for step in (1, 2, 3) for quantity in ("params", "loss", "grad_norm")}


@pytest.mark.slow  # 14 s; the bounded GRU passes every rung in the default tier (test_the_other_families_pass_...)
def test_the_bounded_gru_compares_its_loss_terms_and_the_three_weight_modes():
    report = verify(tiny_bounded(beta=0.01, dtype="float32"), steps=2, device="cpu", layers=True, heldout_tasks=8)
    assert report.passed, report.format()
    assert report.dtypes == ["float64", "float32"]
    quantities = {(c.layer, c.quantity) for c in report.checks}
    assert {("cell", "sampled weights"), ("cell", "log alpha"), ("loss", "NLL and KL"), ("N steps", "kl curve"),
            ("one step", "kl (loss term)")} <= quantities
    assert {f"{mode}-mode outputs" for mode in ("sample", "mean", "pruned")} <= {q for _, q in quantities}


def _jax_kl_constant(monkeypatch):
    """JAX's sparse-variational KL uses k1 = 0.63 instead of Molchanov et al.'s 0.63576."""
    import jax_impl.svdo as svdo

    monkeypatch.setattr(svdo, "K1", 0.63)


def _jax_rbf_width(monkeypatch):
    """JAX's RBF reads its width as exp(-beta (a - c)^2 / 2) (a Gaussian's convention) instead of exp(-beta (a - c)^2)."""
    import jax.numpy as jnp

    import jax_impl.amortized as amortized

    monkeypatch.setattr(amortized.RBF, "__call__", lambda self, a: jnp.exp(-self.beta[...] * (a - self.centre[...]) ** 2 / 2))


def _torch_noise_transposed(monkeypatch):
    """torch's sparse-variational layers apply their injected noise row-reversed (a noise-layout bug)."""
    import torch_impl.svdo as svdo

    original = svdo.LinearSVDO.effective_weight

    def effective_weight(self, mode, eps=None, generator=None):
        return original(self, mode, None if eps is None else eps.flip(0), generator)

    monkeypatch.setattr(svdo.LinearSVDO, "effective_weight", effective_weight)


@pytest.mark.parametrize("breaks, argv, first_layer", [
    (_jax_kl_constant, BOUNDED, "loss"),
    (_torch_noise_transposed, BOUNDED, "cell"),
    (_jax_rbf_width, AMORTIZED, "cell"),
], ids=["jax-kl-constant", "torch-noise-order", "jax-rbf-width"])
def test_a_broken_family_fails_and_the_ladder_names_the_first_disagreeing_layer(breaks, argv, first_layer, monkeypatch,
                                                                                tmp_path, capsys):
    breaks(monkeypatch)
    code = main(["verify", *argv, "--dtype", "float64", "--steps", "2", "--layers", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"verdict: FAIL - first disagreeing layer: {first_layer} " in out
    with open(tmp_path / "checks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    below = LADDER[:LADDER.index(first_layer)]
    assert all(row["passed"] == "True" for row in rows if row["layer"] in below), "the rungs below must still agree"


def test_a_broken_kl_fails_at_beta_0_without_the_ladder_too(monkeypatch):
    """At beta = 0 the KL does not enter the loss, but verify compares it (the trainer's aux) at every step."""
    _jax_kl_constant(monkeypatch)
    report = verify(tiny_bounded(), steps=2, device="cpu", heldout_tasks=8)
    first = report.first_failure()
    assert first.layer == "one step" and first.quantity == "kl (loss term)", report.format()


def test_the_family_command_line_writes_the_report(tmp_path, capsys):
    assert main(["verify", *AMORTIZED, "--queries", "UD", "--steps", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model: amortized posterior" in out and "verdict: PASS" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["family"] == "amortized" and summary["config"]["queries"] == "UD"
    assert summary["dtypes"] == ["float64", "float32"]


@pytest.mark.parametrize("argv, words", [
    (["--family", "bounded-gru", "--beta", "-0.1"], "beta must be >= 0"),
    (["--family", "bounded-gru", "--beta", "0.01", "--steps", "201"], "at most 200"),
    (["--family", "bounded-gru", "--cell", "lstm"], "--cell: not an option of --family bounded-gru"),
    (["--family", "amortized", "--condition", "ranking"], "--condition: not an option of --family amortized"),
    (["--condition", "ranking"], "add --family bounded-gru"),
    (["--family", "amortized", "--config", "config.json"], "not study folders"),
])
def test_bad_family_input_is_one_line(argv, words, tmp_path, capsys):
    assert main(["verify", *argv, "--out", str(tmp_path / "out")]) == 2
    assert words in _one_line_error(capsys)


def test_an_unknown_family_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "--family", "seq2seq"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--family" in err and "bounded-gru" in err and "\n" not in err
