"""``cogmeta seq2seq``: meta sequence-to-sequence learning (Lake 2019).

    cogmeta seq2seq train --preset me-cpu --backend torch|jax [--out RUN] [--episodes N] [--no-memory] ...
    cogmeta seq2seq train --resume RUN [--episodes N] [--backend torch|jax]   continue from RUN's checkpoint
    cogmeta seq2seq evaluate RUN [--backend torch|jax] [--episodes 200]
    cogmeta seq2seq translate RUN "dax wif" --support "dax=RED" "lug=BLUE" [--backend ...]
    cogmeta seq2seq figure RUN [--backend ...]        attention maps of one evaluation episode

Presets: me-cpu, me-paper, add-jump-cpu, add-jump-paper (GPU: 10,000 episodes at H = 200), around-right-paper.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_options import check_out_file, check_out_folder, integer, naming_options, real

#: Most evaluation episodes of ME (each is drawn, held and decoded in Python: 10^6 take hours, not forever).
MAX_EVAL_EPISODES = 1_000_000
#: Most seeds of one ``seq2seq train --seeds`` (each is a full run, trained one after another).
MAX_SEEDS = 1_000


def add_parser(commands) -> None:
    """Register ``seq2seq`` on the main parser's subcommands."""
    from cogmeta.experiments.meta_seq2seq_config import PRESETS

    seq2seq = commands.add_parser("seq2seq", help="meta sequence-to-sequence learning (Lake 2019)")
    sub = seq2seq.add_subparsers(dest="seq2seq_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="meta-train on episodes and write a run folder",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="task, model and recipe (default: me-cpu; with --resume: the run's config)")
    train.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                       help="framework that trains (default: torch; with --resume: the one that wrote the checkpoint)")
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/seq2seq-<preset>-<backend>-<time>)")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN",
                       help="continue RUN from its checkpoint; only --episodes may differ from its config")
    train.add_argument("--seeds", type=integer(1, MAX_SEEDS), default=1,
                       help="train seeds SEED .. SEED + N - 1 (SEED: --seed or the preset's), one run folder each "
                            "(OUT/seed-S), and report each accuracy as mean +- sem over them")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--no-memory", action="store_true", help="ablation: plain seq2seq without the support memory")
    train.add_argument("--eval-episodes", type=integer(0, MAX_EVAL_EPISODES), default=200,
                       help="ME held-out episodes scored at the end (0: skip)")
    for name, kind in (("episodes", integer()), ("learning_rate", real()), ("decay_every", integer()),
                       ("clip_norm", real()), ("seed", integer()), ("log_every", integer()), ("threads", integer()),
                       ("episodes_per_call", integer()), ("checkpoint_every", integer())):
        train.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help="override the preset")
    train.add_argument("--dtype", choices=("float32", "float64"), default=None, help="override the preset")
    for name, kind in (("hidden_size", integer()), ("num_layers", integer()), ("dropout", real())):
        train.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help="override the preset")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser("evaluate", help="exact-match accuracy (retrieval and generalization)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("run", type=Path, metavar="RUN")
    evaluate.add_argument("--backend", choices=sorted(BACKENDS), default=None, help="default: the training framework")
    evaluate.add_argument("--episodes", type=integer(1, MAX_EVAL_EPISODES), default=200,
                          help="ME held-out episodes (SCAN: the full test set)")
    evaluate.set_defaults(handler=_evaluate)

    translate = sub.add_parser("translate", help="greedy output for commands, given a support set")
    translate.add_argument("run", type=Path, metavar="RUN")
    translate.add_argument("commands", nargs="+", metavar="COMMAND", help='e.g. "dax wif dax"')
    translate.add_argument("--support", nargs="*", default=[], metavar="COMMAND=ACTIONS",
                           help='support items, e.g. "dax=RED" "jump twice=JUMP JUMP"')
    translate.add_argument("--backend", choices=sorted(BACKENDS), default=None)
    translate.set_defaults(handler=_translate)

    figure = sub.add_parser("figure", help="attention maps (memory and decoder) of one evaluation episode")
    figure.add_argument("run", type=Path, metavar="RUN")
    figure.add_argument("--backend", choices=sorted(BACKENDS), default=None)
    figure.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN/figures/attention-<backend>.png)")
    figure.set_defaults(handler=_figure)


def _config(args, base=None):
    """The preset (or ``base``, a stored run's config) with the options given on the command line."""
    from cogmeta.experiments.meta_seq2seq_config import preset

    config = base if base is not None and args.preset is None else preset(args.preset or "me-cpu")
    train = {n: getattr(args, n) for n in ("episodes", "learning_rate", "decay_every", "clip_norm", "seed", "log_every",
                                           "threads", "episodes_per_call", "checkpoint_every", "dtype")
             if getattr(args, n) is not None}
    model = {n: getattr(args, n) for n in ("hidden_size", "num_layers", "dropout") if getattr(args, n) is not None}
    if args.no_memory:
        model["memory"] = False
    with naming_options(args):  # the configs check the values; say which option set a bad one
        return dataclasses.replace(config, model=dataclasses.replace(config.model, **model),
                                   train=dataclasses.replace(config.train, **train))


def _train(args) -> int:
    from cogmeta.experiments.meta_seq2seq import evaluate_run, train_run

    if args.resume is not None:
        if args.out is not None:
            raise ValueError("--out and --resume exclude each other: a resumed run stays in its folder")
        if args.seeds != 1:
            raise ValueError("--seeds and --resume exclude each other: resume each seed's run folder (OUT/seed-S)")
        from cogmeta.experiments.meta_seq2seq_config import Seq2SeqRunConfig
        from cogmeta.runs import RunDir
        from cogmeta.weights import trained_with

        run = RunDir.at(args.resume)
        if not run.config.is_file():
            raise FileNotFoundError(f"cannot resume: {run.config} does not exist")
        config = _config(args, base=Seq2SeqRunConfig.load(run.config))
        backend = args.backend or trained_with(run.checkpoint) or "torch"
        out = run.root
    else:
        config = _config(args)
        backend = args.backend or "torch"
        name = args.preset or "me-cpu"
        out = args.out or Path("runs") / f"seq2seq-{name}-{backend}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        check_out_folder(out)
        if args.seeds > 1:
            return _train_seeds(config, out, backend, args)
    result = train_run(config, out, backend, progress=not args.no_progress, resume=args.resume is not None)
    print(f"trained {result.steps} episodes in {result.seconds:.1f} s with {backend}; "
          f"final episode loss {result.final_loss:.4f}")
    if args.eval_episodes > 0:
        accuracy, _ = evaluate_run(result.run_dir, backend, num_episodes=args.eval_episodes)
        print(accuracy.table())
    print(f"run folder: {result.run_dir}")
    return 0


def _train_seeds(config, out: Path, backend: str, args) -> int:
    """``--seeds N``: N runs (seeds SEED .. SEED + N - 1) into OUT/seed-S, one after another, each scored on
    the task's test set; prints and writes (OUT/seeds.csv, write-then-rename) every accuracy and their
    mean +- sem (``cogmeta.experiments.seeds``)."""
    from cogmeta.experiments.meta_seq2seq import evaluate_run, train_run
    from cogmeta.experiments.seeds import spread
    from cogmeta.io import atomic_write_text

    first = config.train.seed
    seeds = list(range(first, first + args.seeds))
    if seeds[-1] > 2**31 - 1:
        raise ValueError(f"--seed {first} with --seeds {args.seeds} runs past seed 2**31 - 1 (option --seeds)")
    rows = []
    for seed in seeds:
        run_config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        result = train_run(run_config, out / f"seed-{seed}", backend, progress=not args.no_progress)
        accuracy, _ = evaluate_run(result.run_dir, backend, num_episodes=max(args.eval_episodes, 1))
        rows.append((seed, accuracy.generalization_correct, accuracy.generalization_total,
                     accuracy.retrieval_correct, accuracy.retrieval_total))
        print(f"seed {seed}: trained {result.steps} episodes in {result.seconds:.1f} s with {backend}; "
              f"generalization {_percent(rows[-1][1], rows[-1][2])}, retrieval {_percent(rows[-1][3], rows[-1][4])}")
    lines = ["seed,generalization_correct,generalization_total,retrieval_correct,retrieval_total"]
    lines += [",".join(str(v) for v in row) for row in rows]
    for label, (c, t) in (("generalization", (1, 2)), ("retrieval", (3, 4))):
        values = [100.0 * row[c] / row[t] for row in rows if row[t]]
        if values:
            summary = spread(values)
            print(f"{label}: {summary.format(2)} % (mean +- sem over {summary.n} seeds; "
                  f"{summary.low:.2f}-{summary.high:.2f} %)")
            lines.append(f"# {label} % mean {summary.mean:.4f} sem {summary.sem:.4f} min {summary.low:.4f} "
                         f"max {summary.high:.4f} n {summary.n}")
    atomic_write_text(out / "seeds.csv", "\n".join(lines) + "\n")
    print(f"run folders: {out}/seed-{{{seeds[0]}..{seeds[-1]}}}; table: {out / 'seeds.csv'}")
    return 0


def _percent(correct: int, total: int) -> str:
    return f"{100.0 * correct / total:.2f} % ({correct}/{total})" if total else "-"


def _evaluate(args) -> int:
    return report_evaluation(args.run, args.backend, args.episodes)


def report_evaluation(run: Path, backend: str | None = None, episodes: int = 200) -> int:
    """Evaluate a seq2seq run and print its accuracy table (``cogmeta seq2seq evaluate``, ``cogmeta evaluate``)."""
    import time

    from cogmeta.experiments.meta_seq2seq import evaluate_run

    start = time.perf_counter()
    accuracy, backend = evaluate_run(run, backend, num_episodes=episodes)
    print(f"{run}: evaluated with {backend} in {time.perf_counter() - start:.1f} s")
    print(accuracy.table())
    return 0


def is_seq2seq_run(config_path: Path) -> bool:
    """Whether a run's config.json describes a meta-seq2seq run (``"kind": "meta_seq2seq"``)."""
    import json

    try:
        return json.loads(Path(config_path).read_text()).get("kind") == "meta_seq2seq"
    except (OSError, ValueError, AttributeError):
        return False  # the tutorial loader reports what is wrong with the file


def _parse_support(items):
    pairs = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"support item {item!r} must look like COMMAND=ACTIONS, e.g. \"dax=RED\"")
        command, actions = item.split("=", 1)
        pairs.append((tuple(command.split()), tuple(actions.split())))
    return tuple(pairs)


def _load(args):
    from cogmeta.experiments.meta_seq2seq import Decoder, load_weights
    from cogmeta.experiments.meta_seq2seq_config import Seq2SeqRunConfig
    from cogmeta.runs import RunDir
    from cogmeta.weights import trained_with

    run = RunDir.at(args.run)
    run.require_run()
    config = Seq2SeqRunConfig.load(run.config)
    weights = load_weights(run.weights, config)
    backend = args.backend or trained_with(run.weights) or "torch"
    return run, config, Decoder(config, weights, backend), backend


def _translate(args) -> int:
    from cogmeta.experiments.meta_seq2seq import decode_episode
    from cogmeta.tasks.scan_episodes import Episode, check_command

    _, config, decoder, _ = _load(args)
    support = _parse_support(args.support)
    queries = tuple((check_command(config.task, c), (config.task.actions.words[0],)) for c in args.commands)
    predictions, _ = decode_episode(decoder, config.task, Episode(support, queries, (False,) * len(queries)))
    for (words, _), prediction in zip(queries, predictions):
        print(f"{' '.join(words)} -> {' '.join(prediction)}")
    return 0


def _figure(args) -> int:
    from cogmeta.experiments.meta_seq2seq import (
        evaluation_episodes,
        write_attention_figure,
    )

    if args.out is not None:
        check_out_file(args.out)
    run, config, decoder, backend = _load(args)
    episode = evaluation_episodes(config, 1)[0]
    path = args.out or run.figures / f"attention-{backend}.png"
    write_attention_figure(path, config.task, episode, decoder)
    print(f"wrote {path}")
    return 0
