"""``cogmeta verify``: check a run folder or a config in the other framework (``cogmeta.verify``).

    cogmeta verify --run RUN [--steps 20] [--device all|cpu|gpu] [--layers] [--out DIR]
    cogmeta verify --task gaussian [--cell gru --hidden-size 16 ... task parameters] [--steps 20] [--layers]
    cogmeta verify --config config.json [--steps 20] [--layers]
    cogmeta verify --preset rl2-bandit | seq2seq-me-cpu | ... [any config option] [--steps 20] [--layers]
    cogmeta verify --family bounded-gru [--condition ranking --beta 0 --warmup 0 --hidden-size 8 ...] [--steps 20]
    cogmeta verify --family amortized [--queries ID --hidden-size 1 --optimizer sgd ...] [--steps 20]

Prints the report and writes ``report.txt``, ``checks.csv``, ``curves.csv``, ``summary.json`` and
``curves.png`` into ``--out`` (default ``RUN/verify`` for a run, ``runs/verify-<task or family>-<time>`` otherwise).
Exit code 0: both frameworks agree; 1: they do not; 2: bad input.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from cogmeta.cli_config import add_config_options, config_from_args, given_options
from cogmeta.cli_options import check_out_folder, integer
from cogmeta.tasks.paired_comparison import PairedComparisonTask
from cogmeta.verify_families import FAMILIES

#: Options of the families besides the tutorial (dest -> families that take it); the tutorial takes none of them.
_FAMILY_OPTIONS = {"condition": ("bounded-gru",), "num_cues": ("bounded-gru",), "num_trials": ("bounded-gru",),
                   "warmup": ("bounded-gru",), "queries": ("amortized",)}
#: Options of the tutorial config that a family also takes: its model's, then its training's (``TrainConfig``
#: fields). ``--beta`` is the coin task's Beta prior parameter and the bounded GRU's KL weight.
_SHARED_MODEL = {"bounded-gru": ("hidden_size", "beta"), "amortized": ("hidden_size",)}
_SHARED_TRAIN = {"bounded-gru": ("batch_size", "learning_rate", "clip_norm", "seed", "dtype"),
                 "amortized": ("learning_rate", "optimizer", "seed", "dtype")}

#: Config fields that are not options of ``verify``: it trains ``--steps`` steps of its own, scores ``--eval-tasks``
#: of its own, and logs, checkpoints and evaluates nothing in between; its devices are ``--device``.
_NOT_VERIFY_OPTIONS = ("steps", "eval_tasks", "eval_every", "log_every", "checkpoint_every", "until_kl",
                       "until_kl_every", "device", "cuda_graphs")


def add_parser(commands) -> argparse.ArgumentParser:
    """Register ``cogmeta verify`` on the ``cogmeta`` sub-command set ``commands``."""
    from cogmeta.verify import DEFAULT_EVAL_TASKS, DEFAULT_HELDOUT_TASKS, DEFAULT_STEPS, DEVICE_CHOICES, MAX_STEPS

    parser = commands.add_parser(
        "verify", help="train a run's config in PyTorch and JAX from identical inputs and compare them",
        description="Train a config for N steps in both PyTorch and JAX from the same initial weights and the same "
                    "numpy batches, in float64 and in the config's dtype, on every device present, and compare "
                    "parameters, loss, gradient norm and held-out outputs under the parity suite's tolerances. "
                    "Give a run folder (--run), a config file (--config) or config options (--preset, --task ...) "
                    "of any registered model family (the tutorial meta-learner, rl2, seq2seq); "
                    "--family bounded-gru or amortized checks the heuristics study's bounded GRU or the "
                    "learning-to-infer amortized posterior instead of a tutorial meta-learner. "
                    "Exit code 0: the frameworks agree; 1: they disagree; 2: bad input.")
    parser.add_argument("--run", type=Path, default=None, metavar="RUN",
                        help="run folder written by `cogmeta train`: verify its config, and that its weights give the "
                             "same predictions and evaluation figures in both frameworks")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a run config (JSON, e.g. a run folder's config.json); missing keys take their defaults")
    parser.add_argument("--steps", type=integer(1, MAX_STEPS), default=DEFAULT_STEPS, metavar="N",
                        help=f"training steps per framework, in [1, {MAX_STEPS}]; the schedule is compressed to N steps "
                             f"(default: {DEFAULT_STEPS})")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="all",
                        help="device kinds to check: every one both frameworks have (all), or only cpu or gpu "
                             "(an absent one is an error) (default: all)")
    parser.add_argument("--layers", action="store_true",
                        help="run the whole parity ladder (cell -> model forward -> loss -> gradients -> optimizer "
                             "update -> one step -> N steps) and show the first layer that disagrees")
    parser.add_argument("--heldout-tasks", type=integer(1, 1_000_000), default=DEFAULT_HELDOUT_TASKS, metavar="M",
                        help=f"held-out tasks of the forward comparison (default: {DEFAULT_HELDOUT_TASKS})")
    parser.add_argument("--eval-tasks", type=integer(2, 1_000_000), default=None, metavar="M",
                        help=f"with --run: held-out tasks of the evaluation figures (default: {DEFAULT_EVAL_TASKS})")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for the report, CSVs and figure (default: RUN/verify with --run, else "
                             "runs/verify-<task>-<time>)")
    parser.add_argument("--no-figure", action="store_true", help="do not write curves.png")

    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="model family: the tutorial meta-learners (default), the bounded GRU of the heuristics "
                             "study, or the amortized posterior of learning-to-infer (config options only)")
    # the config options of `cogmeta train` (instead of --run or --config), generated from the config
    add_config_options(parser, sections=("model", "train", "rl", "torch"), skip=_NOT_VERIFY_OPTIONS, family=False)
    bounded = parser.add_argument_group(
        "--family bounded-gru (defaults: the heuristics study's recipe: hidden 64, batch 64, Adam lr 1e-3, clip 40, "
        "float32; the paired-comparison task's --condition none, --num-cues 4, --num-trials 10)")
    # --condition, --num-cues and --num-trials are the paired-comparison task's generated options (above)
    beta = parser._option_string_actions["--beta"]  # the coin task's, shared (one option, two meanings)
    beta.help += ("; --family bounded-gru: the KL weight >= 0 (default: 0; beta > 0 allows at most 200 steps: the "
                  "KL amplifies rounding once weights get pruned, docs/framework-differences.md#kl-amplifies-rounding)")
    bounded.add_argument("--warmup", type=integer(0), default=None,
                         help="steps over which the KL weight ramps up to beta (default: 0)")
    parser.add_argument_group(
        "--family amortized (defaults: one participant, hidden 1, SGD lr 0.05, float32, one query per step; "
        "--queries ID, UD, noise or ladder, the urn_queries task's generated option, default ID)")
    parser.set_defaults(handler=run_verify)
    return parser


def run_verify(args: argparse.Namespace) -> int:
    """The handler: build the config, verify, print, write; 0 if the frameworks agree, else 1."""
    from cogmeta.verify import DEFAULT_EVAL_TASKS, load_config_file, load_run, verify, write_outputs

    family = args.family or "tutorial"
    if family != "tutorial":
        return _run_family(args, family)
    for name, owners in _FAMILY_OPTIONS.items():
        if getattr(args, name, None) is not None:
            raise ValueError(f"{_flag(name)} is an option of --family {' / '.join(owners)}, not of the tutorial "
                             f"meta-learners; add --family {owners[0]}")
    given = _config_options_given(args)
    if args.run is not None and args.config is not None:
        raise ValueError("--run and --config exclude each other: a run folder brings its own config; give one of them")
    source = "--run" if args.run is not None else "--config" if args.config is not None else None
    if source is not None and given:
        raise ValueError(f"{', '.join(given)} cannot be combined with {source}: the config comes from "
                         f"{'the run folder' if source == '--run' else 'the file'}; leave these options out (or "
                         f"give config options alone)")
    if args.run is None and args.eval_tasks is not None:
        raise ValueError("--eval-tasks needs --run (it sets the held-out tasks of the run's evaluation figures)")
    run_weights = None
    if args.run is not None:
        config, run_weights = load_run(args.run)
    elif args.config is not None:
        config = load_config_file(args.config)
    else:
        config = config_from_args(args)
    out = args.out
    if out is None:
        out = (args.run / "verify" if args.run is not None
               else Path("runs") / f"verify-{config.task.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    check_out_folder(out)
    report = verify(config, args.steps, args.device, layers=args.layers, heldout_tasks=args.heldout_tasks,
                    run_weights=run_weights, eval_tasks=args.eval_tasks or DEFAULT_EVAL_TASKS,
                    run=None if args.run is None else str(args.run))
    print(report.format())
    written = write_outputs(report, out, figure=not args.no_figure)
    print(f"written: {', '.join(str(path) for path in written)}")
    return 0 if report.passed else 1


def _run_family(args: argparse.Namespace, family: str) -> int:
    """``--family bounded-gru`` / ``amortized``: build the family config from the options, verify, print, write."""
    from cogmeta.verify import verify, write_outputs
    from cogmeta.verify_families import AmortizedVerify, BoundedGRUVerify, amortized_train_config, bounded_train_config

    if args.run is not None or args.config is not None:
        raise ValueError(f"--family {family} checks a config given by options; --run and --config take run folders "
                         f"and configs of the registered model families (meta_learner, rl2, seq2seq), not study folders "
                         f"of the heuristics and learning-to-infer studies")
    if args.eval_tasks is not None:
        raise ValueError("--eval-tasks needs --run (it sets the held-out tasks of the run's evaluation figures)")
    allowed = {*_SHARED_MODEL[family], *_SHARED_TRAIN[family]} | {n for n, owners in _FAMILY_OPTIONS.items()
                                                                   if family in owners}
    foreign = [flag for flag in _config_options_given(args) + [_flag(n) for n in _FAMILY_OPTIONS
                                                               if getattr(args, n, None) is not None]
               if flag[2:].replace("-", "_") not in allowed]
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not an option of --family {family}; its options are "
                         f"{', '.join(_flag(n) for n in sorted(allowed))}")
    train = {name: getattr(args, name) for name in _SHARED_TRAIN[family] if getattr(args, name) is not None}
    if family == "bounded-gru":
        task = {name: getattr(args, name) for name in ("condition", "num_cues", "num_trials")
                if getattr(args, name) is not None}
        extra = {name: getattr(args, name) for name in ("hidden_size", "beta", "warmup") if getattr(args, name) is not None}
        config = BoundedGRUVerify(PairedComparisonTask(**task), train=bounded_train_config(**train), **extra)
    else:
        extra = {"hidden": args.hidden_size} if args.hidden_size is not None else {}
        config = AmortizedVerify(queries=args.queries or "ID", train=amortized_train_config(**train), **extra)
    out = args.out or Path("runs") / f"verify-{config.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    check_out_folder(out)
    report = verify(config, args.steps, args.device, layers=args.layers, heldout_tasks=args.heldout_tasks)
    print(report.format())
    written = write_outputs(report, out, figure=not args.no_figure)
    print(f"written: {', '.join(str(path) for path in written)}")
    return 0 if report.passed else 1


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _config_options_given(args: argparse.Namespace) -> list[str]:
    """The config options (preset, task, model, training, task parameters) given on the command line, as flags."""
    flags = [f"--{name}" for name in ("preset", "task") if getattr(args, name, None) is not None]
    return flags + [option.flag for option, _ in given_options(args)]


__all__ = ["add_parser", "run_verify"]
