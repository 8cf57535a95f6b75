"""The ``amortized`` model family (one simulated participant of learning to infer) on the one pipeline: its tasks,
presets, run folders (train, resume, evaluate, sweep) and the identity of a run with a study population's
participant."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.config import RunConfig
from cogmeta.presets import preset
from cogmeta.tasks.urn_tasks import UrnQueryTask, UrnStudyTask


def _tiny(name: str = "l2i-eu-ud", steps: int = 60) -> RunConfig:
    """A preset shortened to ``steps`` queries, a row every 10 and a checkpoint and held-out check every 30."""
    config = preset(name)
    return dataclasses.replace(config, train=dataclasses.replace(
        config.train, steps=steps, log_every=10, checkpoint_every=30, eval_every=30, eval_tasks=40))


def _weights(run):
    from cogmeta.weights import load_weights

    return load_weights(run / "weights.safetensors", RunConfig.load(run / "config.json"))


def test_tasks_presets_and_checks():
    assert UrnQueryTask("UD", "paper").distribution().swapped_draws
    study = UrnStudyTask(participant=14, noise_queries=3, study_queries=2, epochs=4)
    from cogmeta.tasks.urn_studies import STUDY_KEYS

    assert study.study == STUDY_KEYS[1] and study.steps == 20 and study.participant_seed(100) == 114
    train, test = study.queries(7)
    assert np.shape(train.inputs) == (20, 6) and np.shape(test.inputs) == (2, 6)
    np.testing.assert_array_equal(np.asarray(train.inputs)[:5], np.asarray(train.inputs)[15:])  # the block, repeated
    for name in ("l2i-eu-id", "l2i-eu-ud", "l2i-sample-size"):
        config = preset(name)
        assert config.model.family == "amortized" and config.model.hidden_size == 1
        assert RunConfig.from_dict(config.to_dict(), strict=True) == config
    with pytest.raises(ValueError, match="UrnQueryTask.queries must be one of"):
        UrnQueryTask("XY")
    base = preset("l2i-eu-id")
    with pytest.raises(ValueError, match="train.batch_size must be 1 for the amortized family"):
        dataclasses.replace(base, train=dataclasses.replace(base.train, batch_size=4))
    with pytest.raises(ValueError, match="train.clip_norm must be None for the amortized family"):
        dataclasses.replace(base, train=dataclasses.replace(base.train, clip_norm=1.0))
    study_run = preset("l2i-sample-size")
    with pytest.raises(ValueError, match=r"train.steps must be epochs x \(noise_queries \+ study_queries\) = 10000"):
        dataclasses.replace(study_run, train=dataclasses.replace(study_run.train, steps=100))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_run_is_a_population_participant(backend, tmp_path):
    """Participant s of a study population (``train_population`` on the study's queries) is the run of the same
    task with seed S + s: the same weights (JAX: bit for bit, the population is the vmap of the single-run
    program; PyTorch: to float32 rounding, the population is one stacked model)."""
    pytest.importorskip(backend)
    from cogmeta.backends import load_module
    from cogmeta.training import train

    amortized = load_module(backend, "amortized")
    config = _tiny()
    seeds = [4, 5, 6]
    queries = amortized.sample_training_queries([config.task.distribution()], seeds, config.train.steps)
    objective = amortized.AmortizedObjective(queries.inputs, queries.log_odds, hidden=1, learning_rate=0.05,
                                             seeds=seeds)
    population = amortized.train_population(objective).weights
    single = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=5))
    train(single, tmp_path / "run", backend, progress=False, figures=False)
    weights = _weights(tmp_path / "run")
    for name, value in weights.items():
        if backend == "jax":
            np.testing.assert_array_equal(value, population[name][1], err_msg=name)
        else:
            np.testing.assert_allclose(value, population[name][1], rtol=1e-5, atol=1e-6, err_msg=name)


def test_torch_resume_is_bit_exact_and_keeps_its_steps(tmp_path, monkeypatch):
    """A run interrupted after its step-30 checkpoint (the trainer raises at step 40) and resumed ends equal,
    bit for bit, to an uninterrupted one, metrics log included."""
    pytest.importorskip("torch")
    from cogmeta.training import train
    from torch_impl.trainer import Trainer

    task = UrnStudyTask(participant=2, noise_queries=20, study_queries=10, epochs=2)
    base = preset("l2i-sample-size")
    config = dataclasses.replace(base, task=task, train=dataclasses.replace(
        base.train, steps=task.steps, log_every=10, checkpoint_every=30, eval_every=30))
    train(config, tmp_path / "whole", "torch", progress=False, figures=True)
    assert (tmp_path / "whole" / "figures" / "learning_curve.png").is_file()

    run = Trainer.run

    def interrupted(self, count):
        if self.step >= 40:
            raise KeyboardInterrupt("killed")
        return run(self, min(count, 40 - self.step) if self.step < 40 else count)

    monkeypatch.setattr(Trainer, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "part", "torch", progress=False, figures=False)
    monkeypatch.setattr(Trainer, "run", run)
    assert not (tmp_path / "part" / "weights.safetensors").exists()
    train(config, tmp_path / "part", "torch", resume=True, progress=False, figures=True)
    _assert_same(_weights(tmp_path / "whole"), _weights(tmp_path / "part"))
    assert (tmp_path / "whole" / "metrics.csv").read_text() == (tmp_path / "part" / "metrics.csv").read_text()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_cli_train_evaluate_and_sweep(tmp_path, capsys):
    """``cogmeta train --preset l2i-*`` (``--resume`` with other steps refused), ``cogmeta evaluate`` in the other
    framework (the held-out KL and the EU coefficients), and ``cogmeta sweep`` of participants."""
    pytest.importorskip("torch")
    from cogmeta.cli import main

    tiny = ["--steps", "60", "--log-every", "10", "--checkpoint-every", "30", "--eval-every", "30", "--eval-tasks",
            "40", "--no-progress", "--no-figures", "--summary-tasks", "0"]
    whole = tmp_path / "whole"
    assert main(["train", "--preset", "l2i-eu-ud", "--backend", "torch", "--out", str(whole), *tiny]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(whole), "--steps", "90", "--no-progress"]) == 2
    assert "draws its whole training stream for its 60 steps" in capsys.readouterr().err
    assert main(["evaluate", str(whole), "--backend", "jax", "--num-tasks", "200"]) == 0
    out = capsys.readouterr().out
    assert "UD queries, generative draws, amortized posterior H1, trained with torch, evaluated with jax" in out
    for name in ("heldout_kl", "b_prior", "b_lik", "b_0"):
        assert name in out
    assert (whole / "evaluation-jax.csv").read_text().startswith("metric,value\nheldout_kl,")
    sweep = tmp_path / "sweep"
    assert main(["sweep", "--preset", "l2i-eu-id", "--backend", "torch", "--seeds", "3", "--out", str(sweep),
                 *tiny[:-4], "--no-progress"]) == 0
    assert sorted(p.name for p in sweep.glob("member-*")) == ["member-000", "member-001", "member-002"]
    assert "heldout_kl" in (sweep / "summary.csv").read_text().splitlines()[0]


def test_the_eu_study_writes_each_participant_as_a_run_folder(tmp_path):
    """``run_experiment(..., out)`` writes participant s of each population as a run folder of its own config
    (seed S + s, queries ID or UD) and weights; evaluated alone, participant 0 gives the study's own coefficients
    for it (the same weights, the same test queries)."""
    pytest.importorskip("torch")
    from cogmeta.experiments import learning_to_infer as l2i
    from cogmeta.experiments.learning_to_infer import participant_evaluation

    result = l2i.run_experiment("eu", "torch", tmp_path, participants=3, figures=False)
    runs = tmp_path / "runs" / "eu-torch"
    assert sorted(p.name for p in runs.iterdir()) == [f"{c}-seed{s}" for c in ("ID", "UD") for s in range(3)]
    for condition in ("ID", "UD"):
        config = RunConfig.load(runs / f"{condition}-seed0" / "config.json")
        assert config == dataclasses.replace(preset("l2i-eu-id"), task=UrnQueryTask(condition))
        scores = participant_evaluation(config, _weights(runs / f"{condition}-seed0"), "torch")
        # float32 predictions of a stacked population vs one participant: equal to rounding
        np.testing.assert_allclose([scores["b_prior"], scores["b_lik"], scores["b_0"]],
                                   result.coefficients[condition][0], rtol=1e-5, atol=1e-6)
