"""Train and evaluate meta sequence-to-sequence learners (Lake 2019) with either backend.

    train_run(config, out, backend)   episode-wise training; writes RUN/config.json, metrics.csv,
                                      checkpoint.safetensors (every checkpoint interval and at the end),
                                      weights.safetensors (canonical names + both vocabularies)
    train_run(config, RUN, backend, resume=True)
                                      continues RUN from its checkpoint (same config but for
                                      train.steps); ends bit-identical to an uninterrupted run
    evaluate_run(run, backend)        greedy decoding, exact-match accuracy of whole output sequences,
                                      split into retrieval (support items) and generalization (novel
                                      queries); ME: held-out episodes, SCAN: the split's full test set

Training is the one trainer's (``<backend>_impl.trainer.Trainer`` on ``Seq2SeqObjective``): this module
draws the episodes on the host and hands them over with ``Trainer.run_on``. Framework-free: the backend
module (``torch_impl.seq2seq`` / ``jax_impl.seq2seq``, :func:`backend_module`) is imported only when used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cogmeta.checkpoint import load_checkpoint, save_checkpoint
from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint, TrainResult
from cogmeta.experiments.meta_seq2seq_shapes import parameter_shapes
from cogmeta.io import atomic_save_safetensors, atomic_write_text
from cogmeta.metrics_log import MetricsLog
from cogmeta.progress import close, progress_bar
from cogmeta.runs import HOLDER_NAME, LOCK_NAME, RunDir
from cogmeta.tasks.scan_episodes import Episode, EpisodeStream, MutualExclusivityTask
from cogmeta.vocabulary import VocabularyError
from cogmeta.weights import WeightsError, check_tensors, read_safetensors, trained_with

FORMAT = "cogmeta-seq2seq-weights-1"
#: evaluation episodes of ME are drawn from this seed, never used for training streams
HELD_OUT_SEED = 2019
#: queries decoded per call on the SCAN test sets
EVAL_CHUNK = 1024


def backend_module(backend: str):
    """``torch_impl.seq2seq`` or ``jax_impl.seq2seq``: ``make_trainer``, ``episode_batches``, ``load_model``,
    ``decode`` (the one place this study picks a framework)."""
    from cogmeta.backends import load_module

    return load_module(backend, "seq2seq")


class Decoder:
    """Greedy decoding with the weights of a run in one backend: ``decoder(arrays, steps) -> numpy dict``
    (``tokens [steps, Q]``, ``decoder_attention [steps, Q, Tq]``, ``memory_attention [Tq, Q, S]`` or None)."""

    def __init__(self, config: RunConfig, weights: dict, backend: str):
        self.module = backend_module(backend)
        self.model = self.module.load_model(config, weights)

    def __call__(self, arrays: dict, steps: int) -> dict:
        return self.module.decode(self.model, arrays, steps)


# ----------------------------------------------------------------------------------------- weights
def save_weights(path: Path, tensors: dict, config: RunConfig, framework: str) -> None:
    """Validate (names, shapes, finite values, ``config.train.dtype``) and write atomically with the SHA-256."""
    validate_weights(tensors, config, dtype=config.train.dtype)
    metadata = {"format": FORMAT, "framework": framework,
                "command_vocabulary": json.dumps(list(config.task.commands.tokens)),
                "action_vocabulary": json.dumps(list(config.task.actions.tokens))}
    atomic_save_safetensors(path, {k: np.asarray(v) for k, v in tensors.items()}, metadata)


def describe_model(config: RunConfig) -> str:
    """The model of ``config`` in words (error messages)."""
    m = config.model
    return (f"the meta-seq2seq model (hidden_size={m.hidden_size}, num_layers={m.num_layers}, memory={m.memory}, "
            f"task {config.task.name!r})")


def validate_weights(tensors: dict, config: RunConfig, dtype: str | None = None) -> None:
    """``cogmeta.weights.check_tensors`` for the model of ``config``: names, shapes, finite values, ``dtype`` if given."""
    check_tensors(tensors, parameter_shapes(config), describe_model(config), dtype)


def save_run_checkpoint(path: Path, checkpoint: Checkpoint, config: RunConfig) -> None:
    """``cogmeta.checkpoint.save_checkpoint`` for the meta-seq2seq model of ``config`` (atomic; dtype
    ``config.train.dtype``, step at most ``config.train.steps``)."""
    save_checkpoint(path, checkpoint, shapes=parameter_shapes(config), model=describe_model(config),
                    dtype=config.train.dtype, max_step=config.train.steps)


def load_run_checkpoint(path: Path, config: RunConfig) -> Checkpoint:
    """A checkpoint (either framework's) checked against the meta-seq2seq model of ``config``: its SHA-256,
    names, shapes, finite values, dtype ``config.train.dtype`` and a step of at most ``config.train.steps``."""
    return load_checkpoint(path, shapes=parameter_shapes(config), model=describe_model(config),
                           dtype=config.train.dtype, max_step=config.train.steps)


def load_weights(path: Path, config: RunConfig) -> dict[str, np.ndarray]:
    """Read weights (checking their SHA-256: ``cogmeta.weights.read_safetensors``), check both vocabularies
    against the task spec, then names, shapes, finite values and the dtype ``config.train.dtype``."""
    tensors, metadata = read_safetensors(path)
    for key, vocab in (("command_vocabulary", config.task.commands), ("action_vocabulary", config.task.actions)):
        if key not in metadata:
            raise VocabularyError(f"{path} stores no {key}; it was not written by a seq2seq run (`cogmeta train --family seq2seq`)")
        vocab.check_matches(json.loads(metadata[key]), str(path))
    try:
        validate_weights(tensors, config, dtype=config.train.dtype)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    return tensors


# ---------------------------------------------------------------------------------------- training
def train_run(config: RunConfig, out: str | Path, backend: str, *, progress: bool = True,
              resume: bool = False, figures: bool = True, devices: int | None = None) -> TrainResult:
    """Meta-train ``config`` with ``backend``; writes the run folder ``out`` (which must not hold a run).

    The folder is locked while it is written (``RunDir.writing``), and the step-0 checkpoint is written
    before ``config.json``, so a run killed at any moment can be resumed (docs/run-folder.md).

    ``resume``: continue the run in ``out`` from its ``checkpoint.safetensors`` (written by either backend);
    ``config`` must equal the stored one except ``train.steps``, which must exceed the episodes done.
    The episode stream, learning rate and dropout noise continue where the checkpoint stopped, so the run
    ends with the weights and metrics rows of an uninterrupted one (same backend; the other backend
    continues to within float rounding). The ``seconds`` rows are wall-clock times of each segment.

    ``figures`` is accepted for the one ``cogmeta.training.train`` signature (attention maps are drawn on
    request: ``cogmeta seq2seq figure RUN``); ``devices`` must be ``None`` (one episode per update has no
    batch to split over devices).
    """
    del figures
    if devices not in (None, 1):
        raise ValueError(f"--devices {devices}: the seq2seq family trains one episode per update, which cannot be "
                         f"split over devices; leave --devices out")
    run = RunDir.at(out)
    checkpoint = None
    if resume:
        from cogmeta.training import resumable_config  # the one resume rule of every family

        config = resumable_config(run, config)
        if run.checkpoint.is_file():
            checkpoint = load_run_checkpoint(run.checkpoint, config)
            if checkpoint.step >= config.train.steps:
                raise ValueError(f"cannot resume {run.root}: its checkpoint has {checkpoint.step} episodes done, as many "
                                 f"as train.steps={config.train.steps}; give more episodes (--steps N)")
        elif run.weights.is_file():  # a finished run whose checkpoint is gone: do not retrain it from scratch
            raise FileNotFoundError(f"cannot resume: {run.checkpoint} does not exist (the run's final weights do)")
        # else: the run stopped before its first checkpoint was written; it starts again from episode 0
    else:
        _require_new_run_folder(run)
    module = backend_module(backend)
    trainer = module.make_trainer(config, checkpoint)
    start = checkpoint.step if checkpoint is not None else 0
    with run.writing():
        if not resume:
            _require_new_run_folder(run)  # another process may have started a run here since the check above
        if checkpoint is None:  # before config.json: a folder with a config can always be resumed
            save_run_checkpoint(run.checkpoint, trainer.checkpoint(), config)
        config.save(run.config)
        log = MetricsLog(run.metrics)
        if start:
            log.truncate_after(start)  # rows after the checkpoint belong to episodes trained again now
        else:
            log.reset()  # a fresh start, or a resume of a run killed before its first checkpoint
        stream = EpisodeStream(config.task, config.train.seed)
        stream.skip(start)
        train = config.train
        chunk = config.jax.steps_per_call if backend == "jax" else min(train.log_every, 50)
        began = time.perf_counter()
        bar = progress_bar(progress, train.steps, f"meta-seq2seq {config.task.name} ({backend})", unit="episode")
        if bar is not None and start:
            bar.update(start)
        try:
            final_loss = _train_episodes(trainer, module.episode_batches, stream, config, chunk, log, bar, run, start)
        finally:
            close(bar)
        seconds = time.perf_counter() - began
        log.append([(train.steps, "seconds", seconds)])
        save_weights(run.weights, trainer.weights(), config, backend)
    return TrainResult(run.root, steps=train.steps, final_loss=final_loss, seconds=seconds)  # one episode a step


#: What a run folder holds before its config.json is written (a run killed then may be started again in it).
_PRE_CONFIG_FILES = {LOCK_NAME, HOLDER_NAME, "checkpoint.safetensors", "metrics.csv"}


def _require_new_run_folder(run: RunDir) -> None:
    """Refuse a folder that holds a run (its config.json) or anything that a run folder would not hold."""
    if run.config.exists():
        raise FileExistsError(f"{run.root} already holds a run; continue it with --resume or choose another --out")
    if run.root.exists():
        foreign = sorted(p.name for p in run.root.iterdir()
                         if p.name not in _PRE_CONFIG_FILES and not p.name.endswith(".tmp"))
        if foreign:
            raise FileExistsError(f"run folder {run.root} is not empty (it holds {', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); choose another --out")


def _train_episodes(trainer, episode_batches, stream, config: RunConfig, chunk: int, log: MetricsLog, bar,
                    run: RunDir, start: int) -> float:
    """Feed the stream to the trainer from episode ``start``, up to ``chunk`` episodes per ``Trainer.run_on``
    call (``episode_batches`` turns them into the backend's batches).

    Calls stop at every multiple of ``log_every`` (a row: the window mean loss) and of the checkpoint
    interval (RUN/checkpoint.safetensors, also written at the end), so that a run resumed from a
    checkpoint makes the same calls, and logs the same rows, as the uninterrupted run. A non-finite loss
    or gradient norm stops the run with a RuntimeError (the trainer has not applied that update), leaving
    the last checkpoint written. Returns the last episode's loss.
    """
    train, done, window = config.train, start, []
    every, interval = train.log_every, train.checkpoint_every
    while done < train.steps:
        next_log, next_checkpoint = (done // every + 1) * every, (done // interval + 1) * interval
        count = min(chunk, train.steps - done, next_log - done, next_checkpoint - done)
        episodes = [config.task.encode(stream.next()) for _ in range(count)]
        metrics = trainer.run_on(episode_batches(episodes))
        losses = np.asarray(metrics.loss, dtype=np.float64)
        norms = np.asarray(metrics.grad_norm, dtype=np.float64)
        if len(losses) < count or not (np.all(np.isfinite(losses)) and np.all(np.isfinite(norms))):
            raise RuntimeError(
                f"non-finite loss or gradient at episode {trainer.step} (loss {losses[-1]}, gradient norm "
                f"{norms[-1]}); that update was not applied, {run.checkpoint} holds the last checkpoint written; "
                f"try a lower --learning-rate or --clip-norm, or --dtype float64")
        window.extend(losses.tolist())
        done += count
        if done % every == 0 or done == train.steps:
            log.append([(done, "loss", float(np.mean(window)))])
            window = []
        if done % interval == 0 or done == train.steps:
            log.sync()  # the rows that this checkpoint vouches for reach the disk first
            save_run_checkpoint(run.checkpoint, trainer.checkpoint(), config)
        if bar is not None:
            bar.update(count)
            bar.set_postfix(loss=f"{float(losses[-1]):.4f}", refresh=False)
    return float(losses[-1])


# -------------------------------------------------------------------------------------- evaluation
@dataclass
class Accuracy:
    """Exact-match counts of whole output sequences."""

    generalization_correct: int = 0
    generalization_total: int = 0
    retrieval_correct: int = 0
    retrieval_total: int = 0

    @property
    def generalization(self) -> float:
        return 100.0 * self.generalization_correct / max(self.generalization_total, 1)

    @property
    def retrieval(self) -> float:
        return 100.0 * self.retrieval_correct / max(self.retrieval_total, 1)

    def add(self, correct: np.ndarray, in_support: np.ndarray) -> None:
        self.generalization_correct += int(np.sum(correct & ~in_support))
        self.generalization_total += int(np.sum(~in_support))
        self.retrieval_correct += int(np.sum(correct & in_support))
        self.retrieval_total += int(np.sum(in_support))

    def table(self) -> str:
        lines = [f"{'queries':<16}{'correct':>9}{'total':>8}{'accuracy %':>12}"]
        for label, c, t in (("generalization", self.generalization_correct, self.generalization_total),
                            ("retrieval", self.retrieval_correct, self.retrieval_total)):
            acc = f"{100.0 * c / t:.2f}" if t else "-"
            lines.append(f"{label:<16}{c:>9}{t:>8}{acc:>12}")
        return "\n".join(lines)


def decode_episode(decoder: Decoder, task, episode: Episode) -> tuple[list[tuple[str, ...]], dict]:
    """Greedy outputs (as action words) for every query of ``episode``, decoded in chunks."""
    arrays = task.encode(episode).as_dict()
    predictions, first = [], None
    count = len(episode.query)
    for lo in range(0, count, EVAL_CHUNK):
        part = dict(arrays)
        for name in ("query_in", "target_in", "target_out"):
            part[name] = arrays[name][:, lo : lo + EVAL_CHUNK]
        for name in ("query_in_len", "in_support"):
            part[name] = arrays[name][lo : lo + EVAL_CHUNK]
        out = decoder(part, task.output_length)
        first = first or out
        predictions += [task.actions.decode(out["tokens"][:, q]) for q in range(out["tokens"].shape[1])]
    return predictions, first


def score(task, episodes: list[Episode], decoder: Decoder) -> Accuracy:
    accuracy = Accuracy()
    for episode in episodes:
        predictions, _ = decode_episode(decoder, task, episode)
        correct = np.array([p == tuple(a) for p, (_, a) in zip(predictions, episode.query)])
        accuracy.add(correct, np.asarray(episode.query_in_support, dtype=bool))
    return accuracy


def evaluation_episodes(config: RunConfig, num_episodes: int) -> list[Episode]:
    """ME: ``num_episodes`` fresh episodes from :data:`HELD_OUT_SEED`; SCAN: the split's test episode."""
    task = config.task
    if isinstance(task, MutualExclusivityTask):
        rng = np.random.default_rng(HELD_OUT_SEED)
        return [task.sample(rng) for _ in range(num_episodes)]
    return [task.test_episode()]


def evaluate_run(run_path: str | Path, backend: str | None = None, *, num_episodes: int = 200) -> tuple[Accuracy, str]:
    """Accuracy of the run's weights; writes RUN/evaluation-<backend>.txt. Returns (accuracy, backend)."""
    run = RunDir.at(run_path)
    run.require_run()
    config = RunConfig.load(run.config)
    weights = load_weights(run.weights, config)
    backend = backend or trained_with(run.weights) or "torch"
    accuracy = score(config.task, evaluation_episodes(config, num_episodes), Decoder(config, weights, backend))
    atomic_write_text(run.root / f"evaluation-{backend}.txt", accuracy.table() + "\n")
    return accuracy, backend



# ------------------------------------------------------------------------------------------ figure
def write_attention_figure(path: str | Path, task, episode: Episode, decoder: Decoder, query: int | None = None) -> Path:
    """Memory attention (query step x support item) and decoder attention (output step x query step).

    ``query`` defaults to the longest novel query whose greedy output is correct.
    """
    from cogmeta.figures import _pyplot, save_figure

    predictions, _ = decode_episode(decoder, task, episode)
    arrays = task.encode(episode).as_dict()
    if query is None:
        novel = [i for i, s in enumerate(episode.query_in_support) if not s]
        correct = [i for i in novel if predictions[i] == tuple(episode.query[i][1])] or novel
        query = max(correct[:200], key=lambda i: len(episode.query[i][0]))
    part = dict(arrays)
    for name in ("query_in", "target_in", "target_out"):
        part[name] = arrays[name][:, query : query + 1]
    for name in ("query_in_len", "in_support"):
        part[name] = arrays[name][query : query + 1]
    out = decoder(part, task.output_length)
    words = list(episode.query[query][0]) + ["<eos>"]
    outputs = list(predictions[query]) + ["<eos>"]
    plt = _pyplot()
    has_memory = out["memory_attention"] is not None and out["memory_attention"].shape[-1] > 0
    fig, axes = plt.subplots(1, 2 if has_memory else 1, figsize=(11 if has_memory else 6, 4.5), squeeze=False)
    axes = axes[0]
    if has_memory:
        memory = out["memory_attention"][: len(words), 0, :]  # [Tq, S]
        labels = [" ".join(c) + " -> " + " ".join(a) for c, a in episode.support]
        image = axes[0].imshow(memory.T, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes[0].set_xticks(range(len(words)), words, rotation=45, ha="right")
        axes[0].set_yticks(range(len(labels)), labels, fontsize=7)
        axes[0].set_title("memory attention over the support set")
        fig.colorbar(image, ax=axes[0])
    decoder = out["decoder_attention"][: len(outputs), 0, : len(words)]  # [Tout, Tq]
    image = axes[-1].imshow(decoder, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes[-1].set_xticks(range(len(words)), words, rotation=45, ha="right")
    axes[-1].set_yticks(range(len(outputs)), outputs, fontsize=7 if len(outputs) > 12 else 9)
    axes[-1].set_title("decoder attention over the query")
    fig.colorbar(image, ax=axes[-1])
    fig.suptitle(f"{' '.join(episode.query[query][0])}  ->  {' '.join(predictions[query])}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def score_run(run_dir: str | Path, backend: str, count: int) -> dict[str, float]:
    """Exact-match accuracies (%) of the run on ``count`` held-out ME episodes (SCAN: its test set):
    ``{"generalization": ..., "retrieval": ...}`` (``cogmeta train --seeds`` reports them per seed)."""
    accuracy, _ = evaluate_run(run_dir, backend, num_episodes=max(count, 1))
    scores = {}
    if accuracy.generalization_total:
        scores["generalization"] = accuracy.generalization
    if accuracy.retrieval_total:
        scores["retrieval"] = accuracy.retrieval
    return scores
