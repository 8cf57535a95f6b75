"""``cogmeta verify`` on the registered families besides the tutorial meta-learner: the RL² agent and meta seq2seq.

Tiny configs (hidden 6, a few steps). Each family passes every rung in float64; a framework broken on purpose
(monkeypatched here only) fails at the rung where the broken code first acts; a run folder trained by
``cogmeta train`` is checked with its own weights and its family's evaluation in both frameworks.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

pytest.importorskip("torch", reason="verify needs PyTorch")
pytest.importorskip("jax", reason="verify needs JAX")

from cogmeta.cli import main  # noqa: E402
from cogmeta.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from cogmeta.presets import preset  # noqa: E402
from cogmeta.tasks.bandit import BernoulliBanditTask  # noqa: E402
from cogmeta.tasks.scan_episodes import MutualExclusivityTask  # noqa: E402
from cogmeta.verify import verify  # noqa: E402
from cogmeta.verify_registered import RL2Verify, Seq2SeqVerify, registered_verify  # noqa: E402


def tiny_rl2(dtype: str = "float64", cell: str = "gru") -> RunConfig:
    """Three arms (the one-hot, the gathers and a cumulative sum of more than two terms), 7 trials."""
    return RunConfig(task=BernoulliBanditTask(arms=3, horizon=7, alpha=0.8, beta=1.3),
                     model=ModelConfig(family="rl2", cell=cell, hidden_size=6),
                     train=TrainConfig(batch_size=5, learning_rate=1e-2, clip_norm=0.5, dtype=dtype))


def tiny_seq2seq(dtype: str = "float64", memory: bool = True) -> RunConfig:
    """Lake's recipe at hidden 6 with dropout 0.5 (the injected masks matter) and 4 queries an episode."""
    paper = preset("seq2seq-me-paper")
    return dataclasses.replace(
        paper, task=MutualExclusivityTask(num_query=4),
        model=ModelConfig(family="seq2seq", cell="lstm", hidden_size=6, num_layers=1, dropout=0.5, memory=memory),
        train=dataclasses.replace(paper.train, learning_rate=1e-2, clip_norm=0.5, dtype=dtype))


def test_a_run_config_of_a_registered_family_is_wrapped_and_others_are_not():
    assert isinstance(registered_verify(tiny_rl2()), RL2Verify)
    assert isinstance(registered_verify(tiny_seq2seq()), Seq2SeqVerify)
    tutorial = RunConfig()
    assert registered_verify(tutorial) is tutorial
    with pytest.raises(ValueError, match="wraps a 'rl2' run config"):
        RL2Verify(tiny_seq2seq())


def test_a_seq2seq_config_trains_alike_in_float64():
    """The default tier's seq2seq check: training and the held-out forward (the ladder: --runslow, below)."""
    report = verify(tiny_seq2seq(), steps=2, device="cpu", heldout_tasks=6)
    assert report.passed, report.format()
    assert {check.layer for check in report.checks} == {"one step", "N steps", "held-out forward"}
    assert report.max_error() <= 1e-10


@pytest.mark.parametrize("config", [tiny_rl2, pytest.param(tiny_seq2seq, marks=pytest.mark.slow)],
                         ids=["rl2", "seq2seq"])
def test_a_registered_family_passes_every_rung_in_float64(config):
    report = verify(config(), steps=3, device="cpu", layers=True, heldout_tasks=6)
    assert report.dtypes == ["float64"]
    assert report.passed, report.format()
    assert {check.layer for check in report.checks} >= {"cell", "model forward", "loss", "gradients",
                                                         "optimizer update", "one step", "N steps", "held-out forward"}
    assert report.max_error() <= 1e-10
    quantities = {(check.layer, check.quantity) for check in report.checks}
    family = {"rl2": [("model forward", "rollout"), ("loss", "loss terms"), ("loss", "discounted returns"),
                      ("N steps", "reward curve"), ("N steps", "entropy curve")],  # the agent's own draws, A2C terms
              "seq2seq": [("cell", "episode encoding"), ("model forward", "teacher-forced outputs")]}
    assert set(family[report.config.family]) <= quantities, sorted(quantities)


def _jax_discount(monkeypatch):
    """The JAX returns discount by gamma^2: a bug in the A2C target only."""
    import jax_impl.rl2 as rl2

    original = rl2.discounted_returns
    monkeypatch.setattr(rl2, "discounted_returns", lambda rewards, discount: original(rewards, discount ** 2))


def _torch_attention_temperature(monkeypatch):
    """Torch's attention scores halved: the episode encoding (memory retrieval) is the first to differ."""
    import torch_impl.seq2seq as seq2seq

    original = seq2seq.attend
    monkeypatch.setattr(seq2seq, "attend", lambda queries, keys, values, hide=None: original(queries / 2, keys, values, hide))


@pytest.mark.parametrize("breaks, config, first_layer", [
    (_jax_discount, tiny_rl2, "loss"),
    pytest.param(_torch_attention_temperature, tiny_seq2seq, "cell", marks=pytest.mark.slow),
], ids=["rl2 discount", "seq2seq attention"])
def test_a_broken_family_fails_at_the_first_rung_it_touches(breaks, config, first_layer, monkeypatch):
    breaks(monkeypatch)
    report = verify(config(), steps=2, device="cpu", layers=True, heldout_tasks=6)
    assert not report.passed
    assert report.first_failure().layer == first_layer, report.format()
    assert f"first disagreeing layer: {first_layer}" in report.verdict()


@pytest.mark.slow
@pytest.mark.parametrize("family, argv", [
    ("rl2", ["--task", "bandit", "--arms", "3", "--horizon", "6", "--hidden-size", "6", "--batch-size", "4",
             "--summary-tasks", "0", "--eval-tasks", "20"]),
    ("seq2seq", ["--preset", "seq2seq-me-cpu", "--num-query", "4", "--hidden-size", "6", "--summary-tasks", "0",
                 "--eval-tasks", "2"]),
])
def test_a_run_folder_of_a_registered_family_round_trip(family, argv, tmp_path, capsys):
    run = tmp_path / family
    assert main(["train", *argv, "--backend", "torch", "--steps", "4", "--log-every", "2", "--checkpoint-every", "2",
                 "--out", str(run), "--no-progress", "--no-figures"]) == 0
    capsys.readouterr()
    code = main(["verify", "--run", str(run), "--steps", "2", "--eval-tasks", "8", "--heldout-tasks", "8",
                 "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((run / "verify" / "summary.json").read_text())
    assert summary["passed"] and summary["family"] == family and summary["dtypes"] == ["float64", "float32"]
    checks = (run / "verify" / "checks.csv").read_text()
    evaluation = {"rl2": ("eval: mean reward", "eval: regret per trial"),
                  "seq2seq": ("eval: retrieval %", "eval: generalization %")}[family]
    for quantity in ("predictions", *evaluation):
        assert f"run weights,{quantity},cpu,float32" in checks


def test_a_seq2seq_run_folder_with_another_weights_format(tmp_path, capsys):
    """The seq2seq family's weights carry their own format tag; a tutorial-format file there is refused."""
    from cogmeta.io import atomic_save_safetensors
    from cogmeta.weights import FORMAT

    run = tmp_path / "s2s"
    assert main(["train", "--preset", "seq2seq-me-cpu", "--num-query", "4", "--hidden-size", "6", "--backend", "torch",
                 "--steps", "2", "--log-every", "2", "--checkpoint-every", "2", "--summary-tasks", "0",
                 "--out", str(run), "--no-progress", "--no-figures"]) == 0
    from safetensors.numpy import load_file

    atomic_save_safetensors(run / "weights.safetensors", load_file(run / "weights.safetensors"), {"format": FORMAT})
    capsys.readouterr()
    assert main(["verify", "--run", str(run)]) == 2
    assert "another cogmeta version" in capsys.readouterr().err


def test_bounded_and_amortized_run_configs_are_checked_as_their_family_configs(tmp_path):
    """A ``bounded_gru`` or ``amortized`` RunConfig (a preset, a run folder's config.json) is checked as the
    ``--family`` config it describes, and passes every rung in float64; an ``urn_study`` participant and a
    run's weights are refused with what to do instead."""
    from cogmeta.verify_families import AmortizedVerify, BoundedGRUVerify

    bounded = preset("heuristics-direction")
    bounded = dataclasses.replace(bounded, model=dataclasses.replace(bounded.model, hidden_size=5),
                                  train=dataclasses.replace(bounded.train, batch_size=4, dtype="float64"))
    wrapped = registered_verify(bounded)
    assert isinstance(wrapped, BoundedGRUVerify) and wrapped.task.condition == "direction"
    assert (wrapped.hidden_size, wrapped.beta, wrapped.train) == (5, 0.0, bounded.train)
    report = verify(bounded, steps=3, device="cpu", layers=True, heldout_tasks=8)
    assert report.passed, report.format()
    amortized = preset("l2i-eu-ud")
    amortized = dataclasses.replace(amortized, train=dataclasses.replace(amortized.train, dtype="float64"))
    wrapped = registered_verify(amortized)
    assert isinstance(wrapped, AmortizedVerify) and (wrapped.queries, wrapped.hidden) == ("UD", 1)
    report = verify(amortized, steps=3, device="cpu", layers=True, heldout_tasks=8)
    assert report.passed, report.format()
    with pytest.raises(ValueError, match="check it with --family amortized --queries noise"):
        registered_verify(preset("l2i-sample-size"))
    with pytest.raises(ValueError, match="held-out evaluation of a run's weights is implemented for"):
        verify(bounded, steps=2, device="cpu", run_weights={"x": [0.0]})
