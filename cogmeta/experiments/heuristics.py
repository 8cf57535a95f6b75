"""Heuristics from bounded meta-learned inference (Binz, Gershman, Schulz & Endres 2022): the recipe,
the evaluation (Gini, accuracy, KL to heuristics) and the experiment driver for both backends.

Framework-free: the backends are imported only inside :func:`train_grid` and :func:`run_experiment`.

Recipe (short CPU version of the paper's, references/tasks.md s. 2.6): stage 1 trains the model at
beta = 0 ("MI", meta-learned inference); stage 2 copies it, resets every log sigma to -5 and
fine-tunes with loss = NLL + kl_weight_k * KL, kl_weight_k = beta * min((k + 1) / warmup, 1). Every
cell of both stages is a run of the ``bounded_gru`` model family (preset ``heuristics-<condition>``, its
``bound`` section: :func:`pretrain_config`, :func:`finetune_config`), and the cells of a stage are trained
together by the backend's engine (``*_impl/engine.py``) and written as run folders of that family.

Evaluation: every cell (condition x beta x seed) on the same held-out tasks, beside the baselines and the
task's exact Bayes predictive under the condition's own prior (:func:`exact_reference`, importance
sampling with :data:`EXACT_SAMPLES` prior samples, cached on disk); KL(exact || model) per trial is
:func:`exact_metrics`. Seeds: each table entry is mean ± sem over the seeds (:func:`aggregate`,
:mod:`cogmeta.experiments.seeds`) and each reproduction bar is decided on the seed mean (:func:`check_bars`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cogmeta._validation import require_int, require_real
from cogmeta.backends import BACKENDS
from cogmeta.config import BoundConfig, RunConfig
from cogmeta.sparse_variational import kept_fraction


def check_beta(beta: object, owner: str = "beta") -> float:
    """A finite beta >= 0 (the weight of the description-length penalty)."""
    value = require_real("", owner, beta)
    if value < 0:
        raise ValueError(f"{owner} must be >= 0 (the KL weight of the description-length bound), got {value!r}")
    return value


#: Stage 2 of the short CPU recipe (references/tasks.md s. 2.6): updates per beta, the share of them over which
#: the KL weight ramps up (the paper's 0.5), and the beta grid (at H = 64 these are the "strong" bounds).
FINETUNE_STEPS = 3_000
WARMUP_FRACTION = 0.5
BETAS = (0.03, 0.01)


def check_betas(betas) -> tuple[float, ...]:
    """The betas of a grid, each checked (>= 0), in the order given."""
    return tuple(check_beta(beta, "heuristics.betas") for beta in betas)


def base_config(hidden_size: int | None = None, batch_size: int | None = None, learning_rate: float | None = None,
                pretrain_steps: int | None = None, dtype: str | None = None) -> RunConfig:
    """The study's stage-1 run: preset ``heuristics-ranking`` (the condition is set per cell) with the values
    given (None keeps the preset's)."""
    from cogmeta.presets import preset

    config = preset("heuristics-ranking")
    model = {} if hidden_size is None else {"hidden_size": hidden_size}
    train = {key: value for key, value in (("batch_size", batch_size), ("learning_rate", learning_rate),
                                           ("steps", pretrain_steps), ("dtype", dtype)) if value is not None}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model),
                               train=dataclasses.replace(config.train, **train))


def warmup_steps(finetune_steps: int, fraction: float = WARMUP_FRACTION) -> int:
    """Updates of stage 2 over which the KL weight ramps up to beta."""
    return int(round(fraction * finetune_steps))


def cell_name(condition: str, beta: float, seed: int) -> str:
    """The run folder of one cell of the grid: ``<condition>-beta<beta>-seed<seed>``."""
    return f"{condition}-beta{beta:g}-seed{seed}"


def pretrain_config(base: RunConfig, condition: str, seed: int) -> RunConfig:
    """Stage 1 of cell (condition, seed): ``base`` at beta = 0 on that condition with that seed."""
    return dataclasses.replace(base, task=dataclasses.replace(base.task, condition=condition),
                               train=dataclasses.replace(base.train, seed=seed), bound=BoundConfig())


def finetune_config(pretrained: RunConfig, beta: float, index: int, steps: int, start_from: str | None,
                    fraction: float = WARMUP_FRACTION) -> RunConfig:
    """Stage 2 at the ``index``-th beta of the grid: ``steps`` updates from the stage-1 run ``start_from``
    (log sigma reset to -5, a fresh Adam; None: the caller passes the start weights itself), the KL weight
    ramped up over ``fraction`` of them, random stream ``1 + index`` (other tasks than stage 1 and than the
    other betas)."""
    return dataclasses.replace(pretrained, train=dataclasses.replace(pretrained.train, steps=steps),
                               bound=BoundConfig(beta=beta, warmup_steps=warmup_steps(steps, fraction),
                                                 stream=1 + index, start_from=start_from))


def describe_recipe(base: RunConfig, betas, finetune_steps: int, fraction: float = WARMUP_FRACTION) -> str:
    """One line: the two stages' sizes and optimiser."""
    train = base.train
    return (f"H = {base.model.hidden_size}, batch {train.batch_size}, Adam lr {train.learning_rate:g}, clip "
            f"{train.clip_norm:g}, {train.steps} steps at beta = 0, then {finetune_steps} steps per beta "
            f"({', '.join(f'{b:g}' for b in betas if b > 0) or 'none'}; KL warm-up over "
            f"{warmup_steps(finetune_steps, fraction)})")


# ---------------------------------------------------------------------------------------- evaluation
#: Trials (1-based) at which the paper reports the Gini coefficient.
GINI_TRIALS = (1, 2, 4, 8)

#: The paper's released models re-run (references/tasks.md s. 2.5): Gini at trials 1/2/4/8, avg-prob accuracy.
PAPER = {
    ("ranking", 0.1): ((0.68, 0.71, 0.73, 0.74), 0.616),
    ("ranking", 0.01): ((0.64, 0.65, 0.64, 0.64), 0.693),
    ("ranking", 0.001): ((0.58, 0.55, 0.54, 0.54), 0.718),
    ("ranking", 0.0): ((0.56, 0.54, 0.49, 0.42), 0.776),
    ("direction", 0.1): ((0.00, 0.00, 0.00, 0.00), 0.760),
    ("direction", 0.01): ((0.02, 0.03, 0.05, 0.08), 0.774),
    ("direction", 0.0): ((0.09, 0.14, 0.20, 0.24), 0.823),
    ("none", 0.1): ((0.28, 0.28, 0.28, 0.28), 0.500),
    ("none", 0.01): ((0.47, 0.38, 0.31, 0.31), 0.613),
    ("none", 0.0): ((0.30, 0.31, 0.31, 0.30), 0.708),
}

#: Reproduction bars of the short CPU recipe (the issue's "Done when"): Gini at trial 8 under the
#: strongest bound of the grid, and the beta = 0 accuracy in "ranking".
BARS = {"ranking": (0.65, 1.0), "direction": (0.0, 0.10), "none": (0.2, 0.5)}
RANKING_MI_ACCURACY = 0.75
#: The bound each bar is read at when the grid has it (references/tasks.md s. 2.6: the CPU recipe's
#: "strong" bounds at H = 64); otherwise the largest beta of the grid.
BAR_BETAS = {"ranking": 0.03, "direction": 0.03, "none": 0.01}

#: Heuristics the model's choices are compared with (KL(heuristic || model), summed over trials).
#: ``probit_learner`` is the paper's "ideal observer" (an N(0, I) probit learner, not the task's ideal observer).
HEURISTICS = ("equal_weighting", "single_cue", "best_cue", "probit_learner")
#: Their labels in tables.
LABELS = {"equal_weighting": "EW", "single_cue": "SC", "best_cue": "BC", "probit_learner": "probit N(0,I) learner",
          "exact_bayes": "exact Bayes"}
#: Prior samples M of the exact reference in the experiment (the module's default 2^21 costs 32 times as
#: much): 2^16 takes 3-7 min per condition on 1000 tasks on a shared 2-core machine, once (cached); mean MC
#: standard error per prediction 1.3e-3 (direction) to 3.5e-3 (none), its bounds printed in summary.md.
EXACT_SAMPLES = 2**16


#: Seed of the study's held-out tasks (+ the condition's index).
EVAL_SEED = 12345


def eval_batch(task, condition: str, tasks: int, seed: int = EVAL_SEED):
    """Held-out tasks shared by both backends: numpy sampler, fixed seed per condition."""
    from dataclasses import replace

    from cogmeta.tasks.paired_comparison import CONDITIONS

    spec = replace(task, condition=condition)
    return spec.sample(np_rng(seed + CONDITIONS.index(condition)), tasks)


def np_rng(seed: int):
    import numpy as np

    return np.random.default_rng(seed)


def bernoulli_kl(p, q, eps: float = 1e-6):
    """KL(Bern(p) || Bern(q)) elementwise, probabilities clipped to [eps, 1 - eps]."""
    import numpy as np

    p, q = np.clip(p, eps, 1 - eps), np.clip(q, eps, 1 - eps)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def cell_metrics(mean, prob, batch, heuristic_probs) -> dict[str, float]:
    """Gini of |m_t| at :data:`GINI_TRIALS`, avg-prob accuracy, KL(heuristic || model) per heuristic.

    Args:
        mean: ``[T, B, K]`` the model's weight means; prob: ``[T, B]`` its p(y_t = 1).
        batch: the :class:`ComparisonBatch` evaluated; heuristic_probs: ``{name: [T, B]}``.
    """
    import numpy as np

    from cogmeta.baselines import gini

    row: dict[str, float] = {}
    for trial in GINI_TRIALS:
        values = gini(np.abs(mean[trial - 1]))  # NaN where every weight is 0 (e.g. a baseline before any data)
        row[f"gini_{trial}"] = float(np.nanmean(values)) if np.any(np.isfinite(values)) else float("nan")
    row["accuracy"] = float(np.mean(np.where(batch.targets == 1, prob, 1 - prob)))
    for name, reference in heuristic_probs.items():
        row[f"kl_{name}"] = float(np.mean(np.sum(bernoulli_kl(reference, prob), axis=0)))
    return row


def exact_reference(task, condition: str, batch, num_samples: int = EXACT_SAMPLES, cache: bool = True):
    """The task's exact Bayes predictive on ``batch`` under ``condition``'s prior
    (:func:`cogmeta.baselines.exact_bayes.posterior_predictive`, M = ``num_samples`` prior samples, sample
    seed 0), read from / written to the disk cache of :mod:`cogmeta.baselines.exact_cache` if ``cache``."""
    from dataclasses import replace

    from cogmeta.baselines.exact_bayes import posterior_predictive
    from cogmeta.baselines.exact_cache import cached_posterior_predictive

    spec = replace(task, condition=condition)
    compute = cached_posterior_predictive if cache else posterior_predictive
    return compute(batch.cues, batch.targets, condition, spec.noise_std, spec.flips_targets, num_samples, 0)


def exact_metrics(prob, exact) -> dict[str, float]:
    """KL(exact || model) per trial and its Monte-Carlo error, for a model's p(y_t = 1) ``prob [T, B]``.

    kl_exact = mean_{t, b} KL(Bern(p*_{t,b}) || Bern(q_{t,b})) (nats per trial, p* the exact predictive);
    kl_exact_mc = mean_{t, b} |logit p* - logit q| SE_{t,b}, the delta-method bound on the MC error of
    kl_exact (d KL / d p* = logit p* - logit q; every SE counted with the same sign, as the predictions
    share their prior samples), so the MC error of kl_exact is at most kl_exact_mc.
    """
    import numpy as np

    p, q = (np.clip(np.asarray(a, np.float64), 1e-6, 1 - 1e-6) for a in (exact.prob, prob))
    slope = np.abs(np.log(p / (1 - p)) - np.log(q / (1 - q)))
    return {"kl_exact": float(np.mean(bernoulli_kl(exact.prob, prob))),
            "kl_exact_mc": float(np.mean(slope * exact.std_error))}


def heuristic_probabilities(batch, noise_std: float) -> dict[str, object]:
    """p(y_t = 1) of every heuristic in :data:`HEURISTICS` on ``batch``."""
    from cogmeta.baselines import BASELINES

    return {name: BASELINES[name](batch.cues, batch.targets, noise_std).prob for name in HEURISTICS}


# ---------------------------------------------------------------------------------------- training
def train_grid(base: RunConfig, conditions, seeds, backend: str, *, betas=BETAS, finetune_steps: int = FINETUNE_STEPS,
               warmup_fraction: float = WARMUP_FRACTION, out: str | Path | None = None, progress: bool = False,
               echo=print, workers: int | str = "auto") -> dict:
    """Both stages of the recipe for every (condition, seed), beta grid included, in ``backend``.

    Stage 1 trains :func:`pretrain_config` of each (condition, seed) from fresh weights; stage 2
    :func:`finetune_config` of each (beta, condition, seed), beta > 0 in ``betas``, from its stage-1 weights.
    Each stage is one ``Engine(objective, STRATEGY).train`` call of the backend (JAX: one compiled program
    vmapped over its members, split over one host device per CPU; torch: the members one after another, in
    ``workers`` processes pinned to one CPU each, ``cogmeta.cpu_workers``; ``auto``: one per CPU for a stage of
    at least ``AUTO_WORKERS_FROM`` member-steps, one for JAX); every member is a run of the
    ``bounded_gru`` family, and with ``out`` each is written as its run folder ``OUT/<cell_name>`` (config,
    weights, metrics; ``cogmeta evaluate`` reads it), stage 2's ``bound.start_from`` naming stage 1's folder.
    A cell whose folder already holds its finished run is read, not trained again (an interrupted grid
    continues; the members left train together, a smaller program than the whole stage).

    Returns ``{(condition, beta, seed): canonical weights}``; beta = 0 holds the stage-1 ("MI") model.
    Raises FloatingPointError when a member's loss or gradient became non-finite.
    """
    import time

    from cogmeta.cpu_workers import auto_processes, require_workers, run_pinned, usable_cpus
    from cogmeta.experiments.bounded_runs import reset_log_sigma
    from cogmeta.runs import RunDir
    from cogmeta.sweep import write_member_folder

    require_workers(workers)
    finetune_betas = tuple(beta for beta in check_betas(betas) if beta > 0)
    out = None if out is None else Path(out)
    started = time.time()

    def folder(config: RunConfig) -> Path | None:
        return None if out is None else out / cell_name(config.task.condition, config.bound.beta, config.train.seed)

    def stage(label, configs, start=None):
        """The weights of ``configs`` (one objective, members differing in condition, seed, beta and stream), trained
        together; a cell whose run folder already holds this config's weights is read instead."""
        done = {i: stored for i, c in enumerate(configs) if (stored := _stored_weights(folder(c), c)) is not None}
        todo = [i for i in range(len(configs)) if i not in done]
        if done:
            echo(f"  [{backend}] {label}: {len(done)} run(s) read from their folders in {out}")
        if not todo:
            return [done[i] for i in range(len(configs))]
        trained = dict(zip(todo, _train_stage(label, [configs[i] for i in todo],
                                              None if start is None else [start[i] for i in todo])))
        return [done[i] if i in done else trained[i] for i in range(len(configs))]

    def _train_stage(label, configs, start):
        cpus = usable_cpus()
        processes = (auto_processes(len(configs), sum(c.train.steps for c in configs), len(cpus), backend == "jax")
                     if workers == "auto" else min(workers, len(configs)))
        if processes == 1:
            runs = train_cells(backend, configs, start, f"heuristics {label}", progress)
        else:
            echo(f"  [{backend}] {label}: {len(configs)} runs over {processes} worker processes, one CPU each")
            shards = [(backend, configs[i::processes], None if start is None else start[i::processes],
                       f"heuristics {label}", progress and i == 0) for i in range(processes)]
            parts = run_pinned(train_cells, shards, cpus[:processes])
            runs = [parts[i % processes][i // processes] for i in range(len(configs))]  # member i went to shard i % P
        objective_steps = configs[0].train.steps
        for config, run in zip(configs, runs):
            if run.stopped:
                raise FloatingPointError(f"{label} {config.task.condition} beta {config.bound.beta:g} seed "
                                         f"{config.train.seed}: non-finite loss or gradient at step {run.steps + 1}; "
                                         f"lower the learning rate or beta")
            if out is not None:
                run_dir = RunDir.at(folder(config))
                with run_dir.writing():
                    write_member_folder(run_dir, config, run, backend, 0)
        nll = sum(float(run.metrics.aux["nll"][-1]) for run in runs) / len(runs)
        kl = sum(float(run.metrics.aux["kl"][-1]) for run in runs) / len(runs)
        echo(f"  [{backend}] {label}: {len(runs)} run(s) x {objective_steps} steps, last nll {nll:.4f}, "
             f"kl {kl:.1f} (mean over runs; {time.time() - started:.0f} s)")
        return [run.weights for run in runs]

    pretrain = [pretrain_config(base, condition, int(seed)) for condition in conditions for seed in seeds]
    weights = stage("pretrain", pretrain)
    results = {(c.task.condition, 0.0, c.train.seed): w for c, w in zip(pretrain, weights)}
    if finetune_betas and finetune_steps > 0:
        finetune = [finetune_config(c, beta, i, finetune_steps, None if out is None else str(folder(c)),
                                    warmup_fraction) for i, beta in enumerate(finetune_betas) for c in pretrain]
        start = [reset_log_sigma(results[(c.task.condition, 0.0, c.train.seed)]) for c in finetune]
        tuned = stage("fine-tune", finetune, start)
        results.update({(c.task.condition, c.bound.beta, c.train.seed): w for c, w in zip(finetune, tuned)})
    return results


def train_cells(backend: str, configs: list[RunConfig], start: list | None, label: str, progress: bool) -> list:
    """One stage's ``configs`` (one objective; members differing in condition, seed, beta and stream) trained by
    ``backend``'s engine, from ``start`` weights if given: ``[MemberRun]`` in the order of ``configs``. Module-level
    so that a worker process (``cogmeta.cpu_workers.run_pinned``) can run a shard of them."""
    from cogmeta.backends import load_module
    from cogmeta.tasks.paired_comparison import CONDITIONS

    bounded, engine = load_module(backend, "bounded_gru"), load_module(backend, "engine")
    objective = bounded.make_objective(configs[0])
    members = [objective.member(c.train.seed, condition=CONDITIONS.index(c.task.condition), beta=c.bound.beta,
                                stream=c.bound.stream) for c in configs]
    return engine.Engine(objective, bounded.STRATEGY).train(
        [c.train.seed for c in configs], members=members, progress=progress, label=label,
        **({} if start is None else bounded.engine_start(objective, start)))


def _stored_weights(folder: Path | None, config: RunConfig):
    """The weights of a finished run of ``config`` in ``folder``; None when there is none yet (a folder holding
    another config, or a config without weights, is an error: it would be overwritten or mixed)."""
    from cogmeta.runs import RunDir
    from cogmeta.weights import load_weights

    if folder is None:
        return None
    run = RunDir.at(folder)
    if not run.config.is_file():
        return None
    if RunConfig.load(run.config) != config:
        raise FileExistsError(f"{run.root} holds another run than this grid's cell (its config.json differs); "
                              f"choose a new output folder")
    if not run.weights.is_file():
        raise FileExistsError(f"{run.root} holds an unfinished run of this cell (no weights.safetensors); delete "
                              f"the folder to train it again")
    return load_weights(run.weights, config)


# ---------------------------------------------------------------------------------------- driver
def run_experiment(
    conditions,
    backend: str,
    base: RunConfig | None = None,
    seeds=(0,),
    out=None,
    *,
    betas=BETAS,
    finetune_steps: int = FINETUNE_STEPS,
    eval_tasks: int = 1000,
    figures: bool = True,
    echo=print,
    progress: bool = True,
    exact_samples: int = EXACT_SAMPLES,
    workers: int | str = "auto",
) -> list[dict]:
    """Train the grid in ``backend`` ("torch"/"jax"; :func:`train_grid`, stage 1 = ``base``, default
    :func:`base_config`), evaluate every cell (:func:`evaluate_grid`) and write tables and figure.

    Writes into ``out`` (default ``runs/heuristics-<backend>``): ``runs/<cell>/`` (one run folder per
    condition x beta x seed), ``heuristics.csv`` (one row per cell, plus the baselines and the exact
    reference), ``heuristics-summary.csv`` (mean, sem, min, max and n over seeds per condition x beta x
    metric), ``summary.md`` (mean +- sem next to the paper's numbers, the baselines, the bars decided on the
    seed means) and ``heuristics-gini.png``. ``exact_samples``: M of the exact reference (0: leave it out).
    ``progress``: the engine's progress bars (stderr). Returns the rows.
    """
    import time

    from cogmeta.backends import load_module
    from cogmeta.tasks.paired_comparison import CONDITIONS

    for condition in conditions:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)} or 'all'")
    exact_samples = require_int("heuristics", "exact_samples", exact_samples, 0)
    base = base_config() if base is None else base
    if base.model.family != "bounded_gru":
        raise ValueError(f"the heuristics study trains the bounded_gru family, got a {base.model.family!r} config")
    betas = check_betas(betas)
    out = Path(out) if out is not None else Path("runs") / f"heuristics-{backend}"
    load_module(backend, "numerics").configure(threads=1 if backend == "torch" else 0)  # torch: 1 thread, TF32 off; JAX: its own threads, 32-bit

    started = time.time()
    echo(f"heuristics: training {len(conditions)} condition(s) x {1 + sum(b > 0 for b in betas)} beta(s) "
         f"x {len(seeds)} seed(s) with {backend}")
    weights = train_grid(base, list(conditions), list(seeds), backend, betas=betas, finetune_steps=finetune_steps,
                         out=out / "runs", progress=progress, echo=echo, workers=workers)
    train_seconds = time.time() - started
    rows = evaluate_grid(weights, base.task, conditions, backend, base.model.hidden_size, eval_tasks, exact_samples,
                         echo=echo)
    write_outputs(rows, describe_recipe(base, betas, finetune_steps), backend, train_seconds, out, figures, echo,
                  exact_samples)
    return rows


def evaluate_grid(weights, task, conditions, backend: str, hidden_size: int, eval_tasks: int = 1000,
                  exact_samples: int = EXACT_SAMPLES, echo=print, seed: int = EVAL_SEED) -> list[dict]:
    """Rows of :func:`cell_metrics` (+ :func:`exact_metrics` when ``exact_samples`` > 0) for every trained
    cell ``weights[(condition, beta, seed)]`` (``backend``'s ``predict`` of GRU-``hidden_size``, pruned
    weights), then for the baselines of :data:`HEURISTICS` and the exact reference (``backend`` "baseline",
    ``seed`` = the name), all on the same :func:`eval_batch` tasks (drawn from ``seed``)."""
    import time

    from cogmeta.backends import load_module
    from cogmeta.baselines import BASELINES

    bounded = load_module(backend, "bounded_gru")
    rows, baseline_rows = [], []
    for condition in conditions:
        batch = eval_batch(task, condition, eval_tasks, seed)
        references = heuristic_probabilities(batch, task.noise_std)
        exact = None
        if exact_samples:
            started = time.time()
            exact = exact_reference(task, condition, batch, exact_samples)
            echo(f"  exact reference, {condition}: M = {exact_samples}, {eval_tasks} tasks, mean MC standard error "
                 f"{float(exact.std_error.mean()):.1e} ({time.time() - started:.0f} s)")

        def versus_exact(prob):
            return exact_metrics(prob, exact) if exact is not None else {}

        for (cond, beta, seed), tensors in sorted(weights.items()):
            if cond != condition:
                continue
            mean, prob = bounded.predict(tensors, batch.cues, batch.targets, hidden_size, "pruned")
            rows.append({"backend": backend, "condition": cond, "beta": beta, "seed": seed,
                         "kept_weights": kept_fraction(tensors), **cell_metrics(mean, prob, batch, references),
                         **versus_exact(prob)})
        baselines = {name: BASELINES[name](batch.cues, batch.targets, task.noise_std) for name in HEURISTICS}
        if exact is not None:
            baselines["exact_bayes"] = exact
        for name, outputs in baselines.items():
            row = {"backend": "baseline", "condition": condition, "beta": float("nan"), "seed": name,
                   "kept_weights": float("nan"), **cell_metrics(outputs.mean, outputs.prob, batch, {}),
                   **versus_exact(outputs.prob)}
            if name == "exact_bayes" and condition != "direction":
                # before any data the posterior mean is the prior mean, exactly 0 under the sign-symmetric
                # priors: the Gini of the estimate's MC noise would mean nothing (the probit learners give NaN)
                row["gini_1"] = float("nan")
            baseline_rows.append(row)
    return rows + baseline_rows


def write_outputs(rows: list[dict], recipe: str, backend: str, seconds: float, out, figures: bool = True,
                  echo=print, exact_samples: int = EXACT_SAMPLES) -> str:
    """Write ``heuristics.csv``, ``heuristics-summary.csv``, ``summary.md`` (echoed) and, if ``figures``,
    ``heuristics-gini.png`` into ``out``; returns the summary."""
    from pathlib import Path

    from cogmeta.io import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "heuristics.csv")
    write_summary_csv(rows, out / "heuristics-summary.csv")
    summary = format_summary(rows, recipe, backend, seconds, exact_samples)
    atomic_write_text(out / "summary.md", summary)
    echo(summary)
    if figures:
        from cogmeta.figures import save_figure

        save_figure(plot_gini(rows), out / "heuristics-gini.png")
        echo(f"figure: {out / 'heuristics-gini.png'}")
    echo(f"tables: {out / 'heuristics.csv'}, {out / 'heuristics-summary.csv'}, summary: {out / 'summary.md'}")
    return summary


def format_cells(rows: list[dict]) -> str:
    """A plain-text table of :func:`evaluate_grid`'s rows, one line per model cell or baseline: Gini of |m_t| at
    :data:`GINI_TRIALS`, accuracy (mean probability of the right choice), KL(heuristic || model) summed over
    trials for each of :data:`HEURISTICS`, the share of weights kept after pruning."""
    import math

    def number(value, digits):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    header = (f"{'model':<24} {'Gini ' + ' / '.join(map(str, GINI_TRIALS)):<26} {'accuracy':>8}  "
              + "  ".join(f"{'KL ' + LABELS[h].split()[0]:>9}" for h in HEURISTICS) + f"  {'kept':>6}")
    lines = [header, "-" * len(header)]
    for row in rows:
        label = (f"{row['backend']} beta {row['beta']:g} seed {row['seed']}" if row["backend"] in BACKENDS
                 else LABELS.get(row["seed"], str(row["seed"])))
        gini = " / ".join(number(row.get(f"gini_{t}"), 2) for t in GINI_TRIALS)
        kls = "  ".join(f"{number(row.get(f'kl_{h}'), 2):>9}" for h in HEURISTICS)
        lines.append(f"{label:<24} {gini:<26} {number(row['accuracy'], 3):>8}  {kls}  "
                     f"{number(row.get('kept_weights'), 3):>6}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path) -> None:
    import csv
    import io

    from cogmeta.io import atomic_write_text

    columns = list(dict.fromkeys(key for row in rows for key in row))  # the union, in first-seen order
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _metric_keys(rows: list[dict]) -> list[str]:
    keys = dict.fromkeys(k for row in rows for k in row if k.startswith(("gini", "accuracy", "kl_", "kept")))
    return list(keys)


def aggregate(rows: list[dict]):
    """:class:`~cogmeta.experiments.seeds.Spread` over seeds (mean, sem, min, max, n) of every metric, per
    (condition, beta) of the model rows: ``{(condition, beta): {metric: Spread}}``."""
    from cogmeta.experiments.seeds import spread

    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        if row["backend"] in BACKENDS:
            groups.setdefault((row["condition"], row["beta"]), []).append(row)
    keys = _metric_keys([row for group in groups.values() for row in group])
    return {key: {k: spread(r.get(k, float("nan")) for r in group) for k in keys} for key, group in groups.items()}


def summarize(rows: list[dict]) -> dict[tuple[str, float], dict[str, float]]:
    """Seed means per (condition, beta) of the model rows (the ``mean`` of :func:`aggregate`)."""
    return {key: {k: value.mean for k, value in metrics.items()} for key, metrics in aggregate(rows).items()}


def write_summary_csv(rows: list[dict], path) -> None:
    """Long format: backend, condition, beta, metric, mean, sem, min, max, n (over seeds)."""
    from cogmeta.io import atomic_write_text

    backend = next((r["backend"] for r in rows if r["backend"] in BACKENDS), "")
    lines = ["backend,condition,beta,metric,mean,sem,min,max,n"]
    for (condition, beta), metrics in sorted(aggregate(rows).items(), key=lambda item: (item[0][0], -item[0][1])):
        for metric, v in metrics.items():
            lines.append(f"{backend},{condition},{beta:g},{metric},{v.mean:.6g},{v.sem:.6g},{v.low:.6g},{v.high:.6g},{v.n}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def bar_cells(rows: list[dict]) -> list[tuple[str, str, float, str, float, float]]:
    """The reproduction bars present in ``rows``: (description, condition, beta, metric, low, high)."""
    cells = {(r["condition"], r["beta"]) for r in rows if r["backend"] in BACKENDS}
    bars = []
    for condition, (low, high) in BARS.items():
        betas = [beta for (cond, beta) in cells if cond == condition and beta > 0]
        if betas:
            beta = BAR_BETAS[condition] if BAR_BETAS[condition] in betas else max(betas)
            bars.append((f"{condition}: Gini at trial 8, beta = {beta:g}", condition, beta, "gini_8", low, high))
    if ("ranking", 0.0) in cells:
        bars.append(("ranking: accuracy at beta = 0", "ranking", 0.0, "accuracy", RANKING_MI_ACCURACY, float("inf")))
    return bars


def check_bars(rows: list[dict]) -> list[tuple[str, float, str, bool]]:
    """The reproduction bars: (description, seed mean, target, met) per condition present; a bar is met
    when the MEAN over seeds lies in its band."""
    spreads = aggregate(rows)
    results = []
    for text, condition, beta, metric, low, high in bar_cells(rows):
        value = spreads[(condition, beta)][metric].mean
        target = f">= {low}" if high == float("inf") else f"[{low}, {high}]"
        results.append((text, value, target, low <= value <= high))
    return results


def exact_checks(rows: list[dict]) -> list[tuple[str, bool]]:
    """Per condition with an exact reference: is its accuracy the highest of all models (every cell's seed
    mean and every baseline)?"""
    spreads = aggregate(rows)
    checks = []
    for condition in dict.fromkeys(r["condition"] for r in rows):
        exact = [r for r in rows if r["condition"] == condition and r["seed"] == "exact_bayes"]
        if not exact:
            continue
        others = {f"{LABELS.get(r['seed'], r['seed'])}": r["accuracy"] for r in rows
                  if r["condition"] == condition and r["backend"] == "baseline" and r["seed"] != "exact_bayes"}
        others.update({f"beta = {beta:g}": m["accuracy"].mean for (cond, beta), m in spreads.items() if cond == condition})
        best = max(others, key=others.get)
        value = exact[0]["accuracy"]
        checks.append((f"{condition}: exact reference accuracy {value:.3f} vs the best other model "
                       f"({best}) {others[best]:.3f}", value > others[best]))
    return checks


def format_summary(rows: list[dict], recipe: str, backend: str, seconds: float,
                   exact_samples: int = EXACT_SAMPLES) -> str:
    """Markdown: library numbers (mean +- sem over seeds) next to the paper's, the baselines and the exact
    reference, and the bars decided on the seed means with their spread."""
    import math

    from cogmeta.experiments.seeds import spread

    spreads = aggregate(rows)
    missing = spread([])  # formats as "-"
    seeds = sorted({r["seed"] for r in rows if r["backend"] in BACKENDS})
    has_exact = any(r["seed"] == "exact_bayes" for r in rows)
    heuristics = " / ".join(LABELS[h] for h in HEURISTICS)
    lines = [f"# Heuristics from bounded meta-learned inference ({backend})", "",
             f"Recipe: {recipe}; {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); training took "
             f"{seconds:.0f} s. Evaluation: pruned weights (log alpha < 3). Each entry: mean ± standard error over "
             "the seeds (just the mean for one seed).", "",
             f"| condition | beta | Gini 1 / 2 / 4 / 8 | accuracy | KL to {heuristics} (sum over trials) "
             + ("| KL(exact ‖ model) per trial " if has_exact else "") + "| kept | paper Gini 1 / 2 / 4 / 8 | paper acc. |",
             "|---|---|---|---|---|" + ("---|" if has_exact else "") + "---|---|---|"]
    for (condition, beta), m in sorted(spreads.items(), key=lambda item: (item[0][0], -item[0][1])):
        paper = PAPER.get((condition, beta))
        paper_gini = " / ".join(f"{g:.2f}" for g in paper[0]) if paper else "-"
        paper_acc = f"{paper[1]:.3f}" if paper else "-"
        gini = " / ".join(m.get(f"gini_{t}", missing).format(2) for t in GINI_TRIALS)
        kls = " / ".join(m.get(f"kl_{h}", missing).format(1) for h in HEURISTICS)
        exact = f" {m.get('kl_exact', missing).format(4)} |" if has_exact else ""
        lines.append(f"| {condition} | {beta:g} | {gini} | {m['accuracy'].format(3)} | {kls} |{exact} "
                     f"{m.get('kept_weights', missing).format(3)} | {paper_gini} | {paper_acc} |")
    lines += ["", "Baselines and the exact Bayes reference (same held-out tasks):", "",
              "| condition | model | Gini 1 / 2 / 4 / 8 | accuracy |" + (" KL(exact ‖ model) per trial |" if has_exact else ""),
              "|---|---|---|---|" + ("---|" if has_exact else "")]
    for row in rows:
        if row["backend"] == "baseline":
            gini = " / ".join("-" if math.isnan(row[f"gini_{t}"]) else f"{row[f'gini_{t}']:.2f}" for t in GINI_TRIALS)
            kl = f" {row['kl_exact']:.4f} |" if has_exact else ""
            lines.append(f"| {row['condition']} | {LABELS.get(row['seed'], row['seed'])} | {gini} | {row['accuracy']:.3f} |{kl}")
    if has_exact:
        mc = [r["kl_exact_mc"] for r in rows if r["backend"] in BACKENDS and r["beta"] == 0.0]
        lines += ["", f"Exact reference: the task's Bayes predictive under each condition's own prior, importance sampling "
                  f"with M = {exact_samples} prior samples (cogmeta/baselines/exact_bayes.py). Its Monte-Carlo error "
                  f"moves an accuracy by at most the mean standard error per prediction (fully correlated), and "
                  f"KL(exact ‖ model) by at most mean |logit p* - logit q| SE"
                  + (f" (beta = 0 cells: <= {max(mc):.1e} nats per trial)" if mc else "") + "."]
    bars = check_bars(rows)
    if bars or has_exact:
        lines += ["", "Reproduction bars (met when the mean over seeds lies in the band; ± sem, [min, max] over seeds):", ""]
        for (text, condition, beta, metric, _, _), (_, value, target, met) in zip(bar_cells(rows), bars):
            v = spreads[(condition, beta)][metric]
            spread = f" ± {v.sem:.3f}, seeds [{v.low:.3f}, {v.high:.3f}], n = {v.n}" if v.n > 1 else ", one seed"
            lines.append(f"- {text}: {value:.3f}{spread} (target {target}) {'MET' if met else 'NOT MET'}")
        lines += [f"- {text}: {'MET' if met else 'NOT MET'}" for text, met in exact_checks(rows)]
    return "\n".join(lines) + "\n"


def plot_gini(rows: list[dict]):
    """The paper's figure: Gini of |m_t| per trial for each beta (seed means, dots = seeds), one panel
    per condition, with the equal-weighting (0) and single-cue (0.75) reference lines."""
    import numpy as np

    from cogmeta.figures import _pyplot

    plt = _pyplot()
    model_rows = [r for r in rows if r["backend"] in BACKENDS]
    conditions = sorted({r["condition"] for r in model_rows}, key=["ranking", "direction", "none"].index)
    fig, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 3.6), squeeze=False, sharey=True)
    betas = sorted({r["beta"] for r in model_rows}, reverse=True)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(betas), 1)))
    for ax, condition in zip(axes[0], conditions):
        for colour, beta in zip(colours, betas):
            cell = [r for r in model_rows if r["condition"] == condition and r["beta"] == beta]
            if not cell:
                continue
            values = np.array([[r[f"gini_{t}"] for t in GINI_TRIALS] for r in cell])
            x = np.arange(len(GINI_TRIALS))
            ax.plot(x, values.mean(0), "o-", color=colour, label="MI (beta = 0)" if beta == 0 else f"beta = {beta:g}")
            for v in values:
                ax.plot(x, v, ".", color=colour, alpha=0.4)
        ax.axhline(0.0, color="grey", ls="--", lw=1)
        ax.axhline(0.75, color="grey", ls=":", lw=1)
        ax.text(0, 0.02, "equal weighting", color="grey", fontsize=8)
        ax.text(0, 0.77, "single cue", color="grey", fontsize=8)
        ax.set_xticks(np.arange(len(GINI_TRIALS)), [str(t) for t in GINI_TRIALS])
        ax.set_xlabel("trial")
        ax.set_title(condition)
        ax.set_ylim(-0.05, 0.85)
    axes[0][0].set_ylabel("Gini of |weight means|")
    axes[0][-1].legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig
