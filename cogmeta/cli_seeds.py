"""``cogmeta train --seeds N``: N runs of one config, seeds SEED .. SEED + N - 1, and their spread.

Each seed is an ordinary run folder ``OUT/seed-S`` (resumable and evaluable like any other), trained one
after another, then scored by its model family's ``score_run`` (``cogmeta.families``: the tutorial
meta-learner's held-out KL, the seq2seq family's accuracies). ``OUT/seeds.csv`` holds every score and
their mean +- sem (``cogmeta.experiments.seeds``), written then renamed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from cogmeta.config import RunConfig

#: Largest seed (JAX holds seeds as int32; ``TrainConfig.seed``'s bound).
MAX_SEED = 2**31 - 1


def train_seeds(config: RunConfig, out: Path, backend: str, seeds: int, count: int, *, progress: bool = True,
                figures: bool = True) -> int:
    """Train and score ``seeds`` runs of ``config`` into ``out/seed-S``; print and write the table."""
    from cogmeta.experiments.seeds import spread
    from cogmeta.io import atomic_write_text
    from cogmeta.training import train

    first = config.train.seed
    numbers = list(range(first, first + seeds))
    if numbers[-1] > MAX_SEED:
        raise ValueError(f"--seed {first} with --seeds {seeds} runs past seed {MAX_SEED} (option --seeds)")
    driver = config.family.load_driver()
    rows: list[tuple[int, dict[str, float]]] = []
    for seed in numbers:
        run_config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        result = train(run_config, out / f"seed-{seed}", backend, progress=progress, figures=figures)
        scores = driver.score_run(result.run_dir, backend, count) if count > 0 else {}
        rows.append((seed, scores))
        print(f"seed {seed}: trained {result.steps} steps in {result.seconds:.2f} s with {backend}; "
              + (", ".join(f"{name} {value:.6g}" for name, value in scores.items()) or "not scored (--summary-tasks 0)"))
    names = sorted({name for _, scores in rows for name in scores})
    lines = [",".join(["seed", *names])]
    lines += [",".join([str(seed), *(repr(scores.get(name, math.nan)) for name in names)]) for seed, scores in rows]
    for name in names:
        summary = spread(scores.get(name, math.nan) for _, scores in rows)
        print(f"{name}: {summary.format(4)} (mean +- sem over {summary.n} seeds; {summary.low:.4g} to {summary.high:.4g})")
        lines.append(f"# {name} mean {summary.mean!r} sem {summary.sem!r} min {summary.low!r} max {summary.high!r} "
                     f"n {summary.n}")
    atomic_write_text(out / "seeds.csv", "\n".join(lines) + "\n")
    print(f"run folders: {out}/seed-{{{numbers[0]}..{numbers[-1]}}}; table: {out / 'seeds.csv'}")
    return 0
