"""``cogmeta experiment learning-to-infer EXPERIMENT``: the study's parser and handler (registered in ``cli.py``).

    cogmeta experiment learning-to-infer eu|sample-size --backend torch|jax [--participants 400 --hidden 1
        --seed 0 --repeats 1 --optimizer sgd|adam --lr 0.05 --draws generative|paper --out DIR --no-figures]

Learning to infer (Dasgupta, Schulz, Tenenbaum & Gershman 2020): base-rate neglect and conservatism of
amortized inference. Invalid values raise ValueError from
:class:`~cogmeta.experiments.learning_to_infer.EUConfig` / ``SampleSizeConfig``, which
``cogmeta.cli.main`` reports as one ``cogmeta: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import argparse

from cogmeta.cli_experiment import add_shared_options, add_study_parser

#: The study's experiments (``cogmeta.experiments.learning_to_infer.EXPERIMENTS``; not imported here so
#: that building the parser loads no experiment code).
CHOICES = ("eu", "sample-size")


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
    parser.add_argument("--participants", type=int, default=None,
                        help="simulated participants (seeds); default eu 400, sample-size 260 (20 per study)")
    parser.add_argument("--hidden", type=int, nargs="+", default=None,
                        help="RBF units (eu: one value, default 1; sample-size: one or more, default 1 8)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat the whole experiment K times with disjoint participant seeds (repeat r starts at "
                             "seed + r * participants) and report each table entry as mean ± sem over the repeats")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="sgd (the paper's) or adam (torch's defaults)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the paper's, eu .05, sample-size .01)")
    parser.add_argument("--draws", choices=("generative", "paper"), default="generative",
                        help="draw the balls as the generative process states, or as the paper's code does "
                             "(the prior-p urn with the other urn's likelihood)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler: build the experiment's config (ValueError on bad values), train, print, write."""
    from cogmeta.experiments.learning_to_infer import run_experiment

    run_experiment(args.experiment, args.backend, args.out, participants=args.participants, hidden=args.hidden,
                   seed=args.seed, figures=not args.no_figures, optimizer=args.optimizer, learning_rate=args.lr,
                   draws=args.draws, repeats=args.repeats)
    return 0
