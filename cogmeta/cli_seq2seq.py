"""``cogmeta seq2seq``: tools for run folders of the meta sequence-to-sequence family (Lake 2019).

Training, resuming, seeds and evaluation are the commands of every model family:

    cogmeta train --preset seq2seq-me-cpu --backend torch|jax [--out RUN] [--steps N] [--no-memory] [--seeds N] ...
    cogmeta train --resume RUN [--steps N] [--backend torch|jax]     continue from RUN's checkpoint
    cogmeta evaluate RUN [--backend torch|jax] [--num-tasks 200]     exact-match accuracy (ME: N episodes)

and this command adds what only this family has:

    cogmeta seq2seq translate RUN "dax wif" --support "dax=RED" "lug=BLUE" [--backend ...]
    cogmeta seq2seq figure RUN [--backend ...]        attention maps of one evaluation episode

Presets: seq2seq-me-cpu, seq2seq-me-paper, seq2seq-add-jump-cpu, seq2seq-add-jump-paper (GPU: 10,000 episodes
at H = 200), seq2seq-around-right-paper (``cogmeta.presets``).
"""

from __future__ import annotations

from pathlib import Path

from cogmeta.backends import BACKENDS
from cogmeta.cli_options import check_out_file

#: Most evaluation episodes of ME (each is drawn, held and decoded in Python: 10^6 take hours, not forever).
MAX_EVAL_EPISODES = 1_000_000


def add_parser(commands) -> None:
    """Register ``seq2seq`` on the main parser's subcommands."""
    seq2seq = commands.add_parser("seq2seq", help="translate with, or draw the attention of, a seq2seq run "
                                                  "(train and evaluate with `cogmeta train --preset seq2seq-...`)")
    sub = seq2seq.add_subparsers(dest="seq2seq_command", metavar="ACTION", required=True)

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


def report_training(result, config, backend: str, eval_episodes: int) -> None:
    """What ``cogmeta train`` prints after a seq2seq run: time, final loss, and the accuracy table on
    ``eval_episodes`` held-out ME episodes (SCAN: its test set; 0: skip)."""
    from cogmeta.experiments.meta_seq2seq import evaluate_run

    del config  # the run folder holds it
    print(f"trained {result.steps} episodes in {result.seconds:.1f} s with {backend}; "
          f"final episode loss {result.final_loss:.4f}")
    if eval_episodes > 0:
        accuracy, _ = evaluate_run(result.run_dir, backend, num_episodes=min(eval_episodes, MAX_EVAL_EPISODES))
        print(accuracy.table())
    print(f"run folder: {result.run_dir}")


def report_evaluation(run: Path, backend: str | None = None, episodes: int = 200, seed: int | None = None,
                      figures: bool = True) -> int:
    """Evaluate a seq2seq run and print its accuracy table (``cogmeta evaluate``; it writes no figure)."""
    import time

    from cogmeta.experiments.meta_seq2seq import evaluate_run

    del figures
    if seed is not None:
        raise ValueError("argument --seed: seq2seq runs are scored on fixed held-out ME episodes or the SCAN test set; "
                         "leave --seed out")
    if episodes > MAX_EVAL_EPISODES:
        raise ValueError(f"argument --num-tasks {episodes}: at most {MAX_EVAL_EPISODES} evaluation episodes (each is "
                         f"drawn and decoded in Python)")
    start = time.perf_counter()
    accuracy, backend = evaluate_run(run, backend, num_episodes=episodes)
    print(f"{run}: evaluated with {backend} in {time.perf_counter() - start:.1f} s")
    print(accuracy.table())
    return 0


def _parse_support(items):
    pairs = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"support item {item!r} must look like COMMAND=ACTIONS, e.g. \"dax=RED\"")
        command, actions = item.split("=", 1)
        pairs.append((tuple(command.split()), tuple(actions.split())))
    return tuple(pairs)


def _load(args):
    from cogmeta.config import RunConfig
    from cogmeta.experiments.meta_seq2seq import Decoder, load_weights
    from cogmeta.runs import RunDir
    from cogmeta.weights import trained_with

    run = RunDir.at(args.run)
    run.require_run()
    config = RunConfig.load(run.config)
    if config.model.family != "seq2seq":
        raise ValueError(f"{run.root} holds a {config.model.family!r} run, not a seq2seq one; `cogmeta seq2seq "
                         f"{args.seq2seq_command}` needs a run of `cogmeta train --family seq2seq`")
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
