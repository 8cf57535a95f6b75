"""The command line of the ``amortized`` family: what ``cogmeta train`` / ``evaluate`` print for its runs (one
simulated participant), and the study ``cogmeta experiment learning-to-infer EXPERIMENT`` (registered in ``cli.py``).

    cogmeta experiment learning-to-infer eu|sample-size --backend torch|jax [--participants 400 --hidden 1
        --seed 0 --repeats 1 --optimizer sgd|adam --lr 0.05 --draws generative|paper --out DIR --no-figures]

Learning to infer (Dasgupta, Schulz, Tenenbaum & Gershman 2020): base-rate neglect and conservatism of
amortized inference. Numbers are parsed strictly, with upper bounds, while parsing; values below their ranges
raise ValueError from the participant's run config (presets ``l2i-eu-id`` / ``l2i-sample-size``) or the study's
checks with the option named, and ``--out``, the seed range of the repeats and the memory of a population are checked before
any training: ``cogmeta.cli.main`` reports each as one ``cogmeta: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse

from cogmeta.cli_experiment import MAX_SEED, add_shared_options, add_study_parser, check_out
from cogmeta.cli_options import integer, naming_options, real

#: The study's experiments (``cogmeta.experiments.learning_to_infer.EXPERIMENTS``; not imported here so
#: that building the parser loads no experiment code).
CHOICES = ("eu", "sample-size")
#: Most participants and RBF units (the study's bounds: ``learning_to_infer.study_setup``).
MAX_PARTICIPANTS, MAX_HIDDEN = 10_000_000, 100_000
#: Most repeats (populations trained one after another; each takes seconds to minutes).
MAX_REPEATS = 10_000
#: Config fields whose option is named otherwise.
_FLAGS = {"learning_rate": "--lr", "hidden_size": "--hidden"}


def add_parser(studies) -> argparse.ArgumentParser:
    """Register ``learning-to-infer`` on the ``experiment`` parser's study subcommands."""
    parser = add_study_parser(
        studies, "learning-to-infer", help="Dasgupta et al. 2020: base-rate neglect and conservatism",
        description="Learning to infer (Dasgupta, Schulz, Tenenbaum & Gershman 2020): populations of amortized "
                    "posteriors trained on urn queries. eu: ID- vs UD-trained coefficients of prior and "
                    "likelihood; sample-size: alpha_L by sample size over thirteen classic studies.",
        experiments=CHOICES, experiment_help="which experiment")
    add_shared_options(parser, out_help="folder for the CSV table, the config and the figure (default: print only)",
                       seed_help="first participant seed", figures_help="do not write the figure")
    parser.add_argument("--participants", type=integer(None, MAX_PARTICIPANTS), default=None,
                        help="simulated participants (seeds); default eu 400, sample-size 260 (20 per study)")
    parser.add_argument("--hidden", type=integer(None, MAX_HIDDEN), nargs="+", default=None,
                        help="RBF units (eu: one value, default 1; sample-size: one or more, default 1 8)")
    parser.add_argument("--repeats", type=integer(None, MAX_REPEATS), default=1,
                        help="repeat the whole experiment K times with disjoint participant seeds (repeat r starts at "
                             "seed + r * participants) and report each table entry as mean ± sem over the repeats")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="sgd (the paper's) or adam (torch's defaults)")
    parser.add_argument("--lr", type=real(), default=None,
                        help="learning rate (default: the paper's, eu .05, sample-size .01)")
    parser.add_argument("--draws", choices=("generative", "paper"), default="generative",
                        help="draw the balls as the generative process states, or as the paper's code does "
                             "(the prior-p urn with the other urn's likelihood)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler: build the experiment's config (ValueError naming the option), check --out, the seeds and the
    memory, train, print, write."""
    from cogmeta._validation import require_int
    from cogmeta.experiments import learning_to_infer
    from cogmeta.memory import population_bytes, require_fits

    with naming_options(args, _FLAGS):
        repeats = require_int("learning-to-infer", "repeats", args.repeats, 1)
        base, participants, hidden = learning_to_infer.study_setup(
            args.experiment, participants=args.participants, hidden=args.hidden, seed=args.seed,
            optimizer=args.optimizer, learning_rate=args.lr, draws=args.draws)
    first = base.train.seed
    last = first + repeats * participants - 1
    if last > MAX_SEED:
        raise ValueError(f"argument --repeats {repeats}: {repeats} repeat(s) x {participants} participants from "
                         f"--seed {first} need participant seeds up to {last}, beyond the largest seed {MAX_SEED}; "
                         f"lower --repeats, --participants or --seed")
    out = check_out(args.out)
    nbytes, arithmetic = population_bytes(participants, base.train.steps, max(hidden))
    require_fits(nbytes, f"a population needs at least {arithmetic}", "lower --participants (or --hidden)")
    learning_to_infer.run_experiment(args.experiment, args.backend, out, participants=args.participants,
                                     hidden=args.hidden, seed=args.seed, figures=not args.no_figures,
                                     optimizer=args.optimizer, learning_rate=args.lr, draws=args.draws, repeats=repeats)
    return 0


def report_training(result, config, backend: str, eval_tasks: int) -> None:
    """What ``cogmeta train`` prints after an amortized run: time, final loss and, unless ``eval_tasks`` is 0, the
    evaluation on that many held-out queries."""
    print(f"trained {result.steps} queries in {result.seconds:.1f} s with {backend}; final KL (window mean) "
          f"{result.final_loss:.5f}")
    if eval_tasks > 1:
        report_evaluation(result.run_dir, backend, eval_tasks, figures=False)
    print(f"run folder: {result.run_dir}")


def report_evaluation(run, backend: str | None, num_tasks: int, seed: int | None = None, figures: bool = True) -> int:
    """``cogmeta evaluate RUN`` for an amortized run (one participant): its mean KL to the exact posterior on
    ``num_tasks`` held-out queries and the study's own measure of it, the EU regression coefficients
    (b_prior, b_lik, b_0 on the EU test queries; ``urn_queries``) or alpha_L per sample-size bin on its
    study's queries (``urn_study``); ``RUN/evaluation-<backend>.csv``."""
    from cogmeta.config import RunConfig
    from cogmeta.experiments import amortized_runs
    from cogmeta.experiments.learning_to_infer import participant_evaluation
    from cogmeta.io import atomic_write_text
    from cogmeta.runs import RunDir
    from cogmeta.weights import load_weights, trained_with

    del figures  # the learning curve is written at the end of training; the numbers are the evaluation
    run_dir = RunDir.at(run)
    config = RunConfig.load(run_dir.config)
    backend = backend or trained_with(run_dir.weights) or "torch"
    weights = load_weights(run_dir.weights, config)
    seed = amortized_runs.CHECK_SEED if seed is None else seed
    scores = {"heldout_kl": amortized_runs.heldout_kl(config, weights, backend, num_tasks, seed),
              **participant_evaluation(config, weights, backend)}
    task = config.task
    what = (f"study {task.study} (participant {task.participant})" if task.name == "urn_study"
            else f"{task.queries} queries")
    print(f"{run_dir.root}: {what}, {task.draws} draws, amortized posterior H{config.model.hidden_size}, trained with "
          f"{trained_with(run_dir.weights) or 'unknown'}, evaluated with {backend}")
    for name, value in scores.items():
        print(f"  {name:<14}{value:>10.4f}")
    atomic_write_text(run_dir.evaluation(backend),
                      "metric,value\n" + "".join(f"{name},{value!r}\n" for name, value in scores.items()))
    return 0
