"""Episode-wise training of ``torch_impl.seq2seq.MetaSeq2Seq``: one episode = one Adam step (Lake 2019).

step:  loss = masked mean CE of the teacher-forced logits;  g = grad(loss)
       g <- g * min(1, c / (||g|| + 1e-6));  Adam at lr_k = lr * decay ** floor(k / decay_every)
Twin of ``jax_impl.seq2seq_training`` (same class and function names). The step updates the model and the
Adam state in place, one Python call per episode on trimmed episodes; the JAX twin scans its pure step
over padded episodes (``make_run_episodes``).

Dropout noise of episode k comes from torch's generator re-seeded with :func:`_episode_seed` (seed, k)
before the step, so a run restored from a :class:`~cogmeta.contract.Checkpoint` at episode k draws the
same noise as the uninterrupted run (``Seq2SeqTrainer(config, checkpoint=...)``, ``restore``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cogmeta.contract import Checkpoint
from cogmeta.tasks.scan_episodes import EpisodeArrays
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.optim import AdamState, init_adam
from torch_impl.seq2seq import build_model, sequence_loss, to_tensors
from torch_impl.training import clip_and_adam_in_place
from torch_impl.weights import load_canonical, model_to_canonical


def learning_rate(episode, train) -> float:
    """lr * decay_factor ** floor(episode / decay_every) (the step decay of Lake 2019; episode counted from 0)."""
    return train.learning_rate * train.decay_factor ** (episode // train.decay_every)


def make_train_step(model, config):
    """``step(state, batch, episode, masks=None) -> (loss, pre-clip gradient norm)``: one teacher-forced step.

    Clipping and Adam are ``torch_impl.optim``'s (through ``clip_and_adam_in_place``); ``state`` is its
    ``AdamState`` (``init_adam``). ``model`` and ``state`` are updated in place, at
    ``learning_rate(episode, config.train)``. A non-finite gradient applies no update.
    """
    train = config.train

    def step(state: AdamState, batch: dict, episode: int, masks: dict | None = None) -> tuple[float, float]:
        model.train()
        for param in model.parameters():
            param.grad = None
        loss = sequence_loss(model(batch, masks)["logits"], batch["target_out"])
        loss.backward()
        norm = clip_and_adam_in_place(dict(model.named_parameters()), state, learning_rate(episode, train), train)
        return float(loss.detach()), norm

    return step


FRAMEWORK = "torch"


def _episode_seed(seed: int, episode: int) -> int:
    """The seed of torch's generator for the dropout noise of ``episode`` (a 63-bit hash of both)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Seq2SeqTrainer:
    """Holds the model and Adam state of one run.

    ``checkpoint``: resume from a :class:`~cogmeta.contract.Checkpoint` (either framework's): weights,
    Adam moments and the episode count (which also sets the learning rate and the dropout noise).
    """

    def __init__(self, config, weights: dict | None = None, seed: int | None = None,
                 checkpoint: Checkpoint | None = None):
        self.config = config
        train = config.train
        configure(train.threads)
        self.seed = train.seed if seed is None else seed
        torch.manual_seed(self.seed)
        self.model = build_model(config, dtype=resolve_dtype(train.dtype))
        if weights is not None:
            load_canonical(self.model, weights)
        self.opt_state = init_adam(self.model.named_parameters())
        self._step = make_train_step(self.model, config)
        self.episode = 0
        if checkpoint is not None:
            self.restore(checkpoint)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: its weights, Adam moments and count, at episode ``checkpoint.step``."""
        load_canonical(self.model, checkpoint.params)
        params = dict(self.model.named_parameters())

        def moments(saved):
            return {n: torch.as_tensor(np.asarray(saved[n])).to(p.dtype).clone().contiguous() for n, p in params.items()}

        count = torch.tensor(float(checkpoint.step), dtype=torch.float64)
        self.opt_state = AdamState(count, moments(checkpoint.exp_avg), moments(checkpoint.exp_avg_sq))
        self.episode = int(checkpoint.step)

    def checkpoint(self) -> Checkpoint:
        """Episodes done, canonical weights and Adam moments by canonical name."""
        numpy = lambda tensors: {n: t.detach().cpu().numpy().copy() for n, t in tensors.items()}  # noqa: E731
        return Checkpoint(self.episode, self.weights(), numpy(self.opt_state.exp_avg), numpy(self.opt_state.exp_avg_sq),
                          FRAMEWORK)

    def train(self, episodes: Sequence[EpisodeArrays]) -> np.ndarray:
        """Train on ``episodes`` in order (one Adam step each); returns the losses before each step."""
        losses = []
        for arrays in episodes:
            batch = to_tensors(arrays.trimmed().as_dict())
            torch.manual_seed(_episode_seed(self.seed, self.episode))
            loss, _ = self._step(self.opt_state, batch, self.episode)
            if not np.isfinite(loss):
                raise RuntimeError(f"non-finite loss {loss} at episode {self.episode}")
            losses.append(loss)
            self.episode += 1
        return np.asarray(losses)

    def weights(self) -> dict[str, np.ndarray]:
        return model_to_canonical(self.model)

    def decode(self, arrays: dict, steps: int) -> dict[str, np.ndarray]:
        """Greedy decoding (eval mode): tokens [steps, Q] and attention maps, as numpy."""
        self.model.eval()
        out = self.model.greedy(to_tensors(arrays), steps)
        return {k: (None if v is None else v.detach().cpu().numpy()) for k, v in out.items()}
