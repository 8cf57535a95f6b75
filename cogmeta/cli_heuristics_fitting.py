"""``cogmeta experiment heuristics-fit``: fit the paired-comparison models to participants, or run the
model-recovery study on simulated ones (registered in ``cli.py``).

    cogmeta experiment heuristics-fit --data FILE.csv --backend torch|jax [--condition ranking --betas 0 0.01 0.03
        --models ... --weights DIR --no-lapse --exact-samples 65536 --negate-cues --out DIR --no-figures]
    cogmeta experiment heuristics-fit --simulate --backend torch|jax [--participants 20 --tasks 30 --trials 10
        --lapse-rate 0.1 --generators take_the_best equal_weighting bmli --models ... --seed 0 ...]

Data format, models, BIC convention: ``cogmeta.fitting`` and ``cogmeta.experiments.heuristics_fitting``;
docs/tasks/heuristics-fitting.md. Numbers are parsed strictly, with upper bounds (and for the counts a memory
estimate) while parsing; ``--data`` that is not a readable file, values below their ranges, an ``--out`` or
``--weights`` that cannot be a folder and a study too large for the memory raise ValueError before any
training, reported by ``cogmeta.cli.main`` as one ``cogmeta: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_experiment import MAX_SEED, StudyHelpFormatter, check_out
from cogmeta.cli_heuristics import MAX_EXACT_SAMPLES
from cogmeta.cli_options import check_in_file, fitting_count, integer, naming_options, real
from cogmeta.config import MAX_COUNT

_CONDITIONS = ("ranking", "direction", "none")
#: Most trials per task (``PairedComparisonTask.num_trials``'s bound).
MAX_TRIALS = 100_000


def _trials_estimate(tasks: int, trials: int = 1):
    """Simulated tasks of ``trials`` trials: 16 float64 arrays of [T, N] (cues, choices, every model's
    probabilities, the exact reference's sums) at least (``cogmeta.memory.evaluation_bytes``)."""
    from cogmeta.memory import evaluation_bytes

    return evaluation_bytes(tasks, trials)


def add_parser(studies) -> argparse.ArgumentParser:
    """Register ``heuristics-fit`` on the ``experiment`` parser's study subcommands."""
    from cogmeta.experiments.heuristics import FINETUNE_STEPS, base_config
    from cogmeta.experiments.heuristics_fitting import DEFAULT_BETAS, EXACT_SAMPLES, MODELS
    from cogmeta.experiments.heuristics_recovery import DEFAULT_CANDIDATES, DEFAULT_GENERATORS

    parser = studies.add_parser(
        "heuristics-fit", help="fit take-the-best, equal weighting and the meta-learned model to participants",
        description="Fit the models of Binz et al. 2022 (heuristics, exact Bayes, the bounded meta-learned model "
                    "over a beta grid) to each participant of a CSV (--data), with BIC, posterior model "
                    "probabilities and group-level frequencies; or, with --simulate, run the model-recovery study.",
        formatter_class=StudyHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="FILE.csv",
                        help="participant CSV: participant, task, trial (or step), x0.. (or a0.., b0..), choice, target")
    source.add_argument("--simulate", action="store_true", help="model recovery on simulated participants instead")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="torch",
                        help="framework that runs (and if needed trains) the meta-learned model")
    parser.add_argument("--condition", choices=_CONDITIONS, default="ranking",
                        help="what the participants knew about the cues: the meta-learned model's training "
                             "environment and the exact reference's prior")
    parser.add_argument("--betas", type=real(), nargs="+", default=list(DEFAULT_BETAS),
                        help="beta grid of the meta-learned model (each >= 0)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None, metavar="MODEL",
                        help=f"candidate models (of: {', '.join(MODELS)}; default: all with --data, "
                             f"{' '.join(DEFAULT_CANDIDATES)} with --simulate)")
    parser.add_argument("--weights", type=Path, default=None, metavar="DIR",
                        help="folder of the meta-learned model's run folders, <condition>-beta<beta>-seed0/ (as "
                             "`cogmeta experiment heuristics` writes them under OUT/runs); missing ones are trained "
                             "there (default: runs/heuristics-bmli-weights)")
    parser.add_argument("--pretrain-steps", type=integer(None, MAX_COUNT), default=base_config().train.steps,
                        help="training recipe for missing weights: steps at beta = 0")
    parser.add_argument("--finetune-steps", type=integer(None, MAX_COUNT), default=FINETUNE_STEPS,
                        help="training recipe for missing weights: steps per beta > 0")
    parser.add_argument("--no-lapse", action="store_true", help="do not fit a lapse rate (k - 1 for every model)")
    parser.add_argument("--exact-samples", type=integer(None, MAX_EXACT_SAMPLES), default=None,
                        help=f"prior samples of the exact Bayes reference (default {EXACT_SAMPLES} with --data, "
                             f"16384 with --simulate)")
    parser.add_argument("--negate-cues", action="store_true",
                        help="multiply the cue differences by -1 (Binz et al.'s Experiment 2 data flipped the targets)")
    group = parser.add_argument_group("--simulate")
    group.add_argument("--participants", type=fitting_count("--participants", MAX_COUNT, _trials_estimate), default=20, help="simulated participants per generator")
    group.add_argument("--tasks", type=fitting_count("--tasks", MAX_COUNT, _trials_estimate), default=30, help="tasks per simulated participant")
    group.add_argument("--trials", default=10, type=fitting_count("--trials", MAX_TRIALS, lambda t: _trials_estimate(1, t)), help="trials per task")
    group.add_argument("--lapse-rate", type=real(), default=0.1, help="lapse rate of the simulated participants")
    group.add_argument("--generators", nargs="+", choices=MODELS, default=list(DEFAULT_GENERATORS), metavar="MODEL",
                       help="models that generate the simulated choices (bmli: one generator per beta)")
    group.add_argument("--seed", type=integer(None, MAX_SEED), default=0, help="seed of the simulated tasks and choices")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: runs/heuristics-fit-<backend> or runs/heuristics-recovery-<backend>)")
    parser.add_argument("--no-figures", action="store_true", help="do not write the figures")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler: fit the participants of ``--data``, or run the recovery study with ``--simulate``; the values,
    ``--out``, ``--weights`` and the memory are checked first (ValueError naming the option)."""
    from cogmeta._validation import require_int
    from cogmeta.experiments.heuristics import base_config, check_beta
    from cogmeta.experiments.heuristics_fitting import MODELS, run_fit
    from cogmeta.experiments.heuristics_recovery import DEFAULT_CANDIDATES, expand_generators, run_recovery

    with naming_options(args, {"steps": "--pretrain-steps"}):
        base = base_config(pretrain_steps=args.pretrain_steps)
        finetune_steps = require_int("heuristics-fit", "finetune_steps", args.finetune_steps, 0)
        if args.exact_samples is not None:
            require_int("heuristics-fit", "exact_samples", args.exact_samples, 1)
        if args.simulate:
            seed = require_int("heuristics-fit", "seed", args.seed, 0)
            for name in ("participants", "tasks", "trials"):
                require_int("heuristics-fit", name, getattr(args, name), 1)
        betas = [check_beta(beta, "heuristics-fit.betas") for beta in args.betas]
    if args.data is not None:
        check_in_file(args.data, "--data")
    lapse = _rate(args.lapse_rate) if args.simulate else None
    out = check_out(args.out, f"runs/heuristics-{'recovery' if args.simulate else 'fit'}-{args.backend}")
    models = args.models or (DEFAULT_CANDIDATES if args.simulate else MODELS)
    if "bmli" in models or (args.simulate and "bmli" in args.generators):  # weights are read, or trained there
        check_out(args.weights, "runs/heuristics-bmli-weights", "--weights")
    common = dict(condition=args.condition, betas=args.betas, weights_folder=args.weights, out=out,
                  base=base, finetune_steps=finetune_steps, figures=not args.no_figures)
    if args.simulate:
        from cogmeta.memory import require_fits

        generators = len(expand_generators(args.generators, sorted(set(betas))))
        nbytes, arithmetic = _trials_estimate(generators * args.participants * args.tasks, args.trials)
        require_fits(nbytes, f"{generators} generator(s) x --participants {args.participants} x --tasks {args.tasks} "
                             f"= {arithmetic}", "lower --participants, --tasks or --trials")
        run_recovery(args.backend, generators=args.generators, candidates=models,
                     participants_per_generator=args.participants, num_tasks=args.tasks, num_trials=args.trials,
                     lapse=lapse, fit_lapse=not args.no_lapse,
                     exact_samples=2**14 if args.exact_samples is None else args.exact_samples, seed=seed, **common)
    else:
        from cogmeta.experiments.heuristics_fitting import EXACT_SAMPLES

        run_fit(args.data, args.backend, models=models, lapse=not args.no_lapse,
                exact_samples=EXACT_SAMPLES if args.exact_samples is None else args.exact_samples,
                negate_cues=args.negate_cues, **common)
    return 0


def _rate(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"--lapse-rate must lie in [0, 1] (the share of random choices), got {value!r}")
    return value
