"""The rl2 family on the one pipeline: run folders, exact resume, evaluation, sweeps, the study, bad input.

- ``cogmeta train --task bandit`` writes the run folder of every family (config with its ``rl`` section,
  checkpoint, weights, metrics with the episode reward and the held-out expected reward, figures);
- a run interrupted after a checkpoint and resumed ends bit for bit as the uninterrupted one (weights and
  metrics rows, the entropy anneal included), per backend;
- ``cogmeta evaluate RUN --backend OTHER`` plays the policy in the other framework: its actions on the
  held-out bandits are those of the training framework (float64), and the table lists every reference policy;
- the sweep engines train rl2 members; PyTorch's ``vmap`` strategy equals its ``loop`` (float64);
- :mod:`cogmeta.bandit_evaluation` against hand-computed scores and the exact DP;
- bad input: a discount outside (0, 1], an rl option for another family, ``--until-kl``, a task of another family.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.cli import main
from cogmeta.config import ModelConfig, RLConfig, RunConfig, TrainConfig
from cogmeta.metrics_log import read_metrics
from cogmeta.tasks.bandit import BanditBatch, BernoulliBanditTask, DependentBanditTask
from cogmeta.weights import load_weights

pytestmark = [pytest.mark.torch, pytest.mark.jax]

STEPS = 8
TINY = ["--task", "bandit", "--horizon", "12", "--hidden-size", "8", "--batch-size", "6", "--log-every", "2",
        "--checkpoint-every", "2", "--eval-every", "4", "--eval-tasks", "50", "--steps-per-call", "2", "--dtype",
        "float64", "--entropy-final", "0", "--no-progress", "--summary-tasks", "0"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_config(steps: int = STEPS) -> RunConfig:
    return RunConfig(task=BernoulliBanditTask(horizon=12), model=ModelConfig(family="rl2", hidden_size=8),
                     train=TrainConfig(steps=steps, batch_size=6, log_every=2, checkpoint_every=2, eval_every=4,
                                       eval_tasks=50, dtype="float64"),
                     rl=RLConfig(entropy_final=0.0))


class Interrupted(Exception):
    """Stands in for a kill in the middle of a run (after the checkpoint of step 2, at the check of step 4)."""


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow)])  # jax: 11-20 s
def test_train_writes_the_run_folder_and_resumes_bit_for_bit(tmp_path, capsys, monkeypatch, backend):
    from cogmeta.experiments.rl2 import RL2Workload

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli(["train", *TINY, "--backend", backend, "--steps", STEPS, "--out", whole], capsys)[0] == 0
    held_out = RL2Workload.held_out

    def interrupting(self, config, backend):
        score = held_out(self, config, backend)

        def check(trainer):
            if trainer.step == 4:
                raise Interrupted
            return score(trainer)

        return check

    monkeypatch.setattr(RL2Workload, "held_out", interrupting)
    with pytest.raises(Interrupted):
        main([str(a) for a in ["train", *TINY, "--backend", backend, "--steps", STEPS, "--out", cut]])
    monkeypatch.setattr(RL2Workload, "held_out", held_out)
    assert not (cut / "weights.safetensors").exists()
    code, out, _ = run_cli(["train", "--resume", cut, "--no-progress", "--summary-tasks", "0", "--no-figures"], capsys)
    assert code == 0, out
    config = RunConfig.load(whole / "config.json")
    assert config.model.family == "rl2" and config.rl.entropy_final == 0.0
    assert {"checkpoint.safetensors", "weights.safetensors", "metrics.csv", "figures"} <= {p.name for p in whole.iterdir()}
    assert (whole / "figures" / "policies.png").stat().st_size > 0
    metrics = read_metrics(whole / "metrics.csv")
    assert {"loss", "reward", "entropy", "value_loss", "heldout_reward"} <= {name for _, name, _ in metrics}
    assert metrics == read_metrics(cut / "metrics.csv")  # the entropy anneal and the schedule resume exactly
    first, second = load_weights(whole / "weights.safetensors", config), load_weights(cut / "weights.safetensors", config)
    assert all(np.array_equal(first[name], second[name]) for name in first)


def test_evaluate_in_the_other_framework_plays_the_same_actions(tmp_path, capsys):
    from cogmeta.bandit_evaluation import model_actions

    run = tmp_path / "run"
    assert run_cli(["train", *TINY, "--backend", "torch", "--steps", 4, "--out", run], capsys)[0] == 0
    code, out, _ = run_cli(["evaluate", run, "--backend", "jax", "--num-tasks", 300, "--no-figures"], capsys)
    assert code == 0
    for policy in ("meta-learner", "bayes_optimal", "gittins", "thompson", "ucb1", "greedy", "random"):
        assert policy in out
    assert (run / "evaluation-jax.csv").is_file()
    config = RunConfig.load(run / "config.json")
    weights = load_weights(run / "weights.safetensors", config)
    batch = config.task.sample(np.random.default_rng(5), 200, np.float64)
    np.testing.assert_array_equal(model_actions(config, weights, "torch", batch),
                                  model_actions(config, weights, "jax", batch))


def test_torch_sweep_engine_vmap_equals_loop():
    from torch_impl.engine import Engine

    config = tiny_config(steps=5)
    loop = Engine(config, "loop").train([0, 3], [3e-3, 1e-2], progress=False)
    vmapped = Engine(config, "vmap").train([0, 3], [3e-3, 1e-2], progress=False)
    for a, b in zip(loop, vmapped):
        np.testing.assert_allclose(a.metrics.loss, b.metrics.loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.metrics.aux["reward"], b.metrics.aux["reward"], rtol=0, atol=0)
        for name in a.weights:
            np.testing.assert_allclose(a.weights[name], b.weights[name], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow)])  # jax: 20 s of compiling
def test_sweep_writes_member_folders_scored_by_reward(tmp_path, capsys, backend):
    out = tmp_path / "sweep"
    code, stdout, _ = run_cli(["sweep", "--task", "bandit", "--backend", backend, "--seeds", 2, "--steps", 3,
                               "--horizon", 10, "--hidden-size", 8, "--batch-size", 4, "--eval-tasks", 40,
                               "--steps-per-call", 3, "--out", out, "--no-progress"], capsys)
    assert code == 0, stdout
    assert "heldout_reward" in (out / "summary.csv").read_text()
    assert sorted(p.name for p in out.glob("member-*")) == ["member-000", "member-001"]


def test_bandit_study_writes_table_and_targets(tmp_path, capsys):
    code, out, _ = run_cli(["experiment", "bandits", "dependent", "--backend", "torch", "--steps", 2, "--num-tasks",
                            200, "--out", tmp_path / "study", "--no-figures", "--no-progress"], capsys)
    assert code == 0, out
    assert "Target: regret" in out and "thompson" in out
    rows = (tmp_path / "study" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("setting,policy") and any(row.startswith("dependent,meta-learner") for row in rows)


# ------------------------------------------------------------------------------ evaluation maths
def test_score_actions_against_hand_computation():
    from cogmeta.bandit_evaluation import score_actions

    batch = BanditBatch(np.array([[0.2, 0.7], [0.9, 0.4]]), np.zeros((3, 2, 2)), np.zeros((3, 2)))
    actions = np.array([[0, 0], [1, 1], [1, 0]])  # [n, B]
    optimal = np.array([[1, 0], [1, 0], [1, 0]])
    score = score_actions("x", batch, actions, optimal)
    np.testing.assert_allclose(score.rewards, [0.2 + 0.7 + 0.7, 0.9 + 0.4 + 0.9])
    np.testing.assert_allclose(score.regret_curve, [(0.5 + 0) / 2, (0 + 0.5) / 2, 0])
    np.testing.assert_allclose(score.best_arm_curve, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(score.optimal_gap, [2.1 - 1.6, 2.7 - 2.2])


def test_reference_policies_and_exact_optimum():
    from cogmeta.bandit_evaluation import baseline_names, exact_optimum
    from cogmeta.baselines.bandit_dp import dependent_expected_total_reward, expected_total_reward

    assert "gittins" in baseline_names(BernoulliBanditTask(arms=5)) and "bayes_optimal" not in baseline_names(
        BernoulliBanditTask(arms=5))
    assert "gittins" not in baseline_names(DependentBanditTask()) and "bayes_optimal" in baseline_names(DependentBanditTask())
    assert exact_optimum(BernoulliBanditTask(horizon=30, alpha=2.0)) == expected_total_reward(30, 2.0, 1.0)
    assert exact_optimum(DependentBanditTask(horizon=30)) == dependent_expected_total_reward(30)
    assert exact_optimum(BernoulliBanditTask(arms=3)) is None


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args, words", [
    (["--discount", "0"], "discount must lie in (0.0, 1.0]"),
    (["--discount", "1.5"], "discount must lie in (0.0, 1.0]"),
    (["--until-kl", "0.01"], "until_kl needs an exact Bayes predictive"),
    (["--arms", "1"], "arms"),
])
def test_bad_rl2_options_exit_2_with_the_field(capsys, tmp_path, args, words):
    code, _, err = run_cli(["train", *TINY, "--backend", "torch", "--steps", 2, "--out", tmp_path / "r", *args], capsys)
    assert code == 2 and words in err, err
    assert not (tmp_path / "r").exists()


def test_rl_section_refused_for_other_families(capsys, tmp_path):
    code, _, err = run_cli(["train", "--task", "gaussian", "--entropy-weight", "0.1", "--steps", 2, "--out",
                            tmp_path / "r", "--no-progress"], capsys)
    assert code == 2 and "does not apply to model family 'meta_learner'" in err
    with pytest.raises(ValueError, match="trains the tasks"):
        RunConfig(task=BernoulliBanditTask())  # a bandit task needs the rl2 family


def test_config_json_round_trip_and_older_configs_without_rl_section(tmp_path):
    config = tiny_config()
    config.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == config
    tutorial = RunConfig()
    assert "rl" not in tutorial.to_dict()  # only families that read it write it: older run folders still load
    tutorial.save(tmp_path / "tutorial.json")
    assert RunConfig.load(tmp_path / "tutorial.json") == tutorial
    data = config.to_dict()
    del data["rl"]
    with pytest.raises(ValueError, match="rl"):
        RunConfig.from_dict(data, strict=True)
    assert dataclasses.replace(config.rl, discount=1.0).discount == 1.0
