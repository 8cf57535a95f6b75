"""The paired-comparison task's exact Bayes reference next to the existing baselines, per condition.

    python benchmarks/exact_bayes_reference.py                        # 1000 held-out tasks per condition, M = 2^21
    python benchmarks/exact_bayes_reference.py --tasks 200 --num-samples 65536 --out /tmp/eb   # quick look

Held-out tasks: ``cogmeta.experiments.heuristics.eval_batch`` (the ones ``run_experiment`` evaluates the
networks and baselines on: numpy sampler, seed 12345 + condition index, K = 4, T = 10, sigma = 0.1).
Models: the exact Bayes predictive under the condition's own prior
(``cogmeta.baselines.exact_bayes``, importance sampling with M prior samples) and the baselines of
``cogmeta.experiments.heuristics.HEURISTICS`` through ``cogmeta.baselines.BASELINES``.

Metrics, over all T x B predictions:
- accuracy: ``cell_metrics``'s definition in heuristics.py, mean of the probability given to the
  observed choice y_t (the "avg-prob accuracy" of the paper's tables; "correct" = the target y_t);
- argmax accuracy: fraction of trials whose more probable option (p > 1/2) is the target (p = 1/2: half);
- NLL: mean -log p(y_t) per trial (the exact predictive minimises its expectation);
- Gini of |posterior mean| at trials 2 / 4 / 8 (trial 1 has no data; the ranking and none priors have
  mean 0 there).
Uncertainties: "task SE" is the sampling error over held-out tasks (per-task means); "MC" is the
Monte-Carlo error of the exact reference: of an average over predictions at most the mean of their
standard errors (all fully correlated; they share the prior samples), about sqrt(sum SE^2) / N if
independent; for the argmax accuracy, the share of predictions with |p - 1/2| < 3 SE (which could flip)
and 2 (|p - 1/2| + 3 SE) per such decision bound the MC error (at trial 1 the ranking and none priors give
p = 1/2 exactly, so those decisions are MC noise that costs nothing in expectation).

Runs the tasks in ``--threads`` threads (numpy and scipy release the GIL; each task's predictive does not
depend on the rest of its batch, so the split changes nothing). Writes ``exact-bayes-reference.md`` and
``.csv`` into ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogmeta.baselines import BASELINES
from cogmeta.baselines.exact_bayes import (
    DEFAULT_NUM_SAMPLES,
    ExactPredictive,
    posterior_predictive,
)
from cogmeta.cli_options import integer
from cogmeta.experiments.heuristics import HEURISTICS, cell_metrics, eval_batch
from cogmeta.tasks.paired_comparison import CONDITIONS, PairedComparisonTask


def threaded_predictive(batch, condition, noise_std, num_samples, seed, threads) -> ExactPredictive:
    """:func:`posterior_predictive` over task slices in ``threads`` threads, concatenated."""
    batch_size = batch.cues.shape[1]
    edges = np.linspace(0, batch_size, min(threads, batch_size) + 1).astype(int)

    def run(slice_index):
        part = slice(edges[slice_index], edges[slice_index + 1])
        return posterior_predictive(batch.cues[:, part], batch.targets[:, part], condition, noise_std,
                                    num_samples=num_samples, seed=seed)

    with ThreadPoolExecutor(len(edges) - 1) as pool:
        parts = list(pool.map(run, range(len(edges) - 1)))
    return ExactPredictive(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in ("prob", "std_error", "ess", "mean")),
                           num_samples=num_samples)


def scores(prob, targets):
    """Per-task means ``[B]`` of: probability of the target, argmax hit, -log p(target)."""
    p_target = np.where(targets == 1, prob, 1 - prob)
    hit = np.where(np.isclose(prob, 0.5, rtol=0, atol=1e-12), 0.5, (prob > 0.5) == (targets == 1))
    nll = -np.log(np.clip(p_target, 1e-12, 1))
    return p_target.mean(0), hit.mean(0), nll.mean(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=integer(1), default=1000, help="held-out tasks per condition (heuristics default: 1000)")
    parser.add_argument("--num-samples", type=integer(1), default=DEFAULT_NUM_SAMPLES, help="prior samples M")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of the prior samples")
    parser.add_argument("--threads", type=integer(1), default=2)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    task = PairedComparisonTask()
    rows, sections = [], []
    for condition in args.conditions:
        batch = eval_batch(task, condition, args.tasks)
        started = time.time()
        exact = threaded_predictive(batch, condition, task.noise_std, args.num_samples, args.seed, args.threads)
        seconds = time.time() - started
        outputs = {"exact_bayes": (exact.prob, exact.mean)}
        outputs.update({name: tuple(BASELINES[name](batch.cues, batch.targets, task.noise_std)) for name in HEURISTICS})
        exact_scores = scores(exact.prob, batch.targets)
        se = exact.std_error
        n = se.size
        margin = np.abs(exact.prob - 0.5) < 3 * se  # decisions the MC error could flip
        # a flipped decision at true probability p changes the expected hit by |2p - 1| <= 2 (|p_hat - 1/2| + 3 SE)
        flip_cost = float(np.sum(np.where(margin, 2 * (np.abs(exact.prob - 0.5) + 3 * se), 0.0)) / se.size)
        for name, (prob, mean) in outputs.items():
            metrics = cell_metrics(mean, prob, batch, {})
            per_task = scores(prob, batch.targets)
            row = {"condition": condition, "model": name, "tasks": args.tasks,
                   "num_samples": args.num_samples if name == "exact_bayes" else "",
                   "accuracy": metrics["accuracy"], "accuracy_task_se": per_task[0].std(ddof=1) / np.sqrt(args.tasks),
                   "argmax_accuracy": float(per_task[1].mean()), "argmax_task_se": per_task[1].std(ddof=1) / np.sqrt(args.tasks),
                   "nll": float(per_task[2].mean()),
                   "accuracy_minus_exact": float((per_task[0] - exact_scores[0]).mean()),
                   "accuracy_minus_exact_se": (per_task[0] - exact_scores[0]).std(ddof=1) / np.sqrt(args.tasks),
                   **{f"gini_{t}": metrics[f"gini_{t}"] for t in (2, 4, 8)}}
            if name == "exact_bayes":
                row.update({"mc_se_mean": float(se.mean()), "mc_se_median": float(np.median(se)),
                            "mc_se_p90": float(np.quantile(se, 0.9)), "mc_se_max": float(se.max()),
                            "mc_accuracy_bound": float(se.mean()), "mc_accuracy_independent": float(np.sqrt(np.sum(se**2)) / n),
                            "mc_argmax_could_flip": float(margin.mean()), "mc_argmax_could_flip_after_trial_1": float(margin[1:].mean()),
                            "mc_argmax_bound": flip_cost,
                            "ess_last_median": float(np.median(exact.ess[-1])), "ess_last_min": float(exact.ess[-1].min()),
                            "seconds": seconds})
            rows.append(row)
        per_trial = " / ".join(f"{v * 1e3:.2f}" for v in se.mean(axis=1))
        sections.append(f"- {condition}: M = {args.num_samples}, {seconds:.0f} s; MC standard error per prediction: mean {se.mean():.2e}, "
                        f"median {np.median(se):.2e}, 90th percentile {np.quantile(se, 0.9):.2e}, max {se.max():.2e}; "
                        f"mean per trial 1..{se.shape[0]} (x 1e-3): {per_trial}; ESS at the last trial: median "
                        f"{np.median(exact.ess[-1]):.0f}, min {exact.ess[-1].min():.0f}; predictions with |p - 1/2| < 3 SE: {margin.mean():.2%} "
                        f"({margin[1:].mean():.2%} after trial 1)")
        print(sections[-1], flush=True)

    lines = ["# Exact Bayes reference of the paired-comparison task vs the baselines", "",
             (f"`python benchmarks/exact_bayes_reference.py --tasks {args.tasks} --num-samples {args.num_samples} --seed {args.seed}`: "
              f"held-out tasks of `heuristics.eval_batch` (K = 4, T = 10, sigma = 0.1). accuracy = mean probability of the "
              "observed choice (heuristics.py `cell_metrics`); argmax = fraction of trials where the more probable option is "
              "the observed choice; +- = sampling error over tasks; diff = accuracy minus the exact reference's, paired over tasks."), "",
             "| condition | model | accuracy | argmax accuracy | NLL / trial | accuracy - exact | Gini 2 / 4 / 8 |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        gini = " / ".join("-" if row[f"gini_{t}"] != row[f"gini_{t}"] else f"{row[f'gini_{t}']:.2f}" for t in (2, 4, 8))
        diff = "-" if row["model"] == "exact_bayes" else f"{row['accuracy_minus_exact']:+.3f} +- {row['accuracy_minus_exact_se']:.3f}"
        lines.append(f"| {row['condition']} | {row['model']} | {row['accuracy']:.3f} +- {row['accuracy_task_se']:.3f} | "
                     f"{row['argmax_accuracy']:.3f} +- {row['argmax_task_se']:.3f} | {row['nll']:.3f} | {diff} | {gini} |")
    lines += ["", "Monte-Carlo accuracy of the exact reference:", "", *sections, "",
              ("MC error of an accuracy (a mean over T x B predictions): at most the mean standard error (fully correlated) "
               "and about sqrt(sum SE^2) / N if independent:"), ""]
    for row in rows:
        if row["model"] == "exact_bayes":
            lines.append(f"- {row['condition']}: <= {row['mc_accuracy_bound']:.1e} (independent: {row['mc_accuracy_independent']:.1e}); "
                         f"argmax accuracy: <= {row['mc_argmax_bound']:.1e} (decisions within 3 SE of 1/2: "
                         f"{row['mc_argmax_could_flip']:.2%}, {row['mc_argmax_could_flip_after_trial_1']:.2%} after trial 1, where "
                         "the ranking and none priors make p = 1/2 exactly)")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "exact-bayes-reference.md").write_text(text)
    columns = list(dict.fromkeys(k for row in rows for k in row))  # in order of first appearance
    with open(args.out / "exact-bayes-reference.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
