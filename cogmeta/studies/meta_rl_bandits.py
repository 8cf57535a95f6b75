"""Study: meta-reinforcement learning on bandits (Duan et al. 2016, "RL²"; Wang et al. 2018).

A study trains nothing itself: it names the runs it needs (presets of the one ``RunConfig``), asks the one
pipeline (``cogmeta.training.train``) for each, and analyses the run folders. Three settings, each an
``rl2-*`` preset (``cogmeta.presets``):

    two-armed    k = 2, n = 100, p_i ~ Beta(1, 1)      target: within 2 % of the exact Bayes-optimal V_0,
                                                       above Thompson sampling and UCB1
    dependent    Wang et al.'s p_1 = 1 - p_0, n = 100  target: total regret below Thompson sampling's
    five-armed   k = 5, n = 100, p_i ~ Beta(1, 1)      target: within 2 % of the Gittins index policy

Output folder: ``OUT/<setting>/`` run folders, ``OUT/results.csv`` (every policy of every setting),
``OUT/summary.md`` (the table with the targets, checked) and ``OUT/figures/<setting>.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

from cogmeta.bandit_evaluation import MODEL, BanditEvaluation
from cogmeta.config import RunConfig

#: setting -> preset
SETTINGS: dict[str, str] = {"two-armed": "rl2-bandit", "dependent": "rl2-dependent", "five-armed": "rl2-bandit-k5"}
#: Relative gap to a reference policy within which a target counts as met (issue 17).
WITHIN = 0.02


@dataclass
class SettingResult:
    """One setting's evaluation and its target, checked."""

    setting: str
    run_dir: Path
    seconds: float
    evaluation: BanditEvaluation

    def target(self) -> tuple[str, bool]:
        """The setting's target in words, and whether the trained policy meets it."""
        model = self.evaluation.row(MODEL)
        if self.setting == "dependent":
            thompson = self.evaluation.row("thompson")
            return (f"regret {model.regret:.2f} < Thompson's {thompson.regret:.2f}", model.regret < thompson.regret)
        if self.setting == "five-armed":
            gittins = self.evaluation.row("gittins").mean_reward
            gap = 1 - model.mean_reward / gittins
            return (f"reward {model.mean_reward:.2f} within 2 % of Gittins' {gittins:.2f} (gap {100 * gap:.2f} %)",
                    gap <= WITHIN)
        optimum = self.evaluation.optimum
        gap = 1 - model.mean_reward / optimum
        thompson, ucb = self.evaluation.row("thompson").mean_reward, self.evaluation.row("ucb1").mean_reward
        return (f"reward {model.mean_reward:.2f} within 2 % of V_0 = {optimum:.2f} (gap {100 * gap:.2f} %) and above "
                f"Thompson {thompson:.2f} and UCB1 {ucb:.2f}",
                gap <= WITHIN and model.mean_reward > thompson and model.mean_reward > ucb)


def setting_config(setting: str, *, seed: int = 0, steps: int | None = None) -> RunConfig:
    """The preset of ``setting`` with the study's seed (and a total of ``steps`` updates if given)."""
    from cogmeta.presets import preset

    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {', '.join(SETTINGS)}")
    config = preset(SETTINGS[setting])
    train = dataclasses.replace(config.train, seed=seed, **({} if steps is None else {"steps": steps}))
    return dataclasses.replace(config, train=train)


def run_setting(setting: str, out: Path, backend: str, *, seed: int = 0, steps: int | None = None,
                num_tasks: int = 10_000, progress: bool = True, figures: bool = True) -> SettingResult:
    """Train (or resume, if ``OUT/<setting>`` holds an unfinished run of the same config) and evaluate one setting."""
    from cogmeta.bandit_evaluation import evaluate, write_figures
    from cogmeta.runs import RunDir
    from cogmeta.training import train
    from cogmeta.weights import load_weights

    config = setting_config(setting, seed=seed, steps=steps)
    run = RunDir.at(out / setting)
    start = time.perf_counter()
    if not run.weights.is_file():
        train(config, run.root, backend, resume=run.config.is_file(), progress=progress, figures=figures)
    evaluation = evaluate(config, load_weights(run.weights, config), backend, num_tasks=num_tasks)
    if figures:
        for path in write_figures(evaluation, out / "figures", backend):
            path.replace(path.with_name(f"{setting}.png"))
    return SettingResult(setting, run.root, time.perf_counter() - start, evaluation)


def results_csv(results: list[SettingResult]) -> str:
    """setting, policy, mean_reward, sem, regret, regret_vs_optimal, best_arm_late, exact_optimum."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("setting", "policy", "mean_reward", "sem", "regret", "regret_vs_optimal", "best_arm_late",
                     "exact_optimum", "num_tasks"))
    for result in results:
        evaluation = result.evaluation
        for score in evaluation.scores:
            writer.writerow((result.setting, score.name, repr(score.mean_reward), repr(score.sem), repr(score.regret),
                             "" if score.regret_vs_optimal is None else repr(score.regret_vs_optimal),
                             repr(score.best_arm_late), "" if evaluation.optimum is None else repr(evaluation.optimum),
                             evaluation.num_tasks))
    return buffer.getvalue()


def summary_markdown(results: list[SettingResult], backend: str) -> str:
    """Each setting's table and target (met or not), as Markdown."""
    lines = [f"# Meta-RL on bandits ({backend})", ""]
    for result in results:
        words, met = result.target()
        lines += [f"## {result.setting} ({result.seconds:.0f} s, run folder `{result.run_dir}`)", "",
                  f"Target: {words}: **{'met' if met else 'NOT met'}**", "", "```", result.evaluation.table(), "```", ""]
    return "\n".join(lines)


__all__ = ["SETTINGS", "SettingResult", "WITHIN", "results_csv", "run_setting", "setting_config", "summary_markdown"]
