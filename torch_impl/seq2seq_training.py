"""Episode-wise training of ``torch_impl.seq2seq.MetaSeq2Seq``: one episode = one Adam step (Lake 2019).

step:  loss = masked mean CE of the teacher-forced logits;  g = grad(loss)
       g <- g * min(1, c / (||g|| + 1e-6));  Adam at lr_k = lr * decay ** floor(k / decay_every)
Twin of ``jax_impl.seq2seq_training`` (same class and function names).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cogmeta.tasks.scan_episodes import EpisodeArrays
from torch_impl.numerics import configure, torch_dtype
from torch_impl.optim import AdamState, init_adam
from torch_impl.seq2seq import build_model, sequence_loss, to_tensors
from torch_impl.training import clip_and_adam_in_place
from torch_impl.weights import load_canonical, model_to_canonical


def train_step(model, state: AdamState, batch: dict, learning_rate: float, train,
               masks: dict | None = None) -> tuple[float, float]:
    """One teacher-forced step on one episode; returns ``(loss, pre-clip gradient norm)``.

    Clipping at ``train.clip_norm`` and Adam with ``train``'s constants (``torch_impl.optim``); ``state``
    (``init_adam``) and the parameters are updated in place. A non-finite gradient applies no update.
    """
    model.train()
    for param in model.parameters():
        param.grad = None
    loss = sequence_loss(model(batch, masks)["logits"], batch["target_out"])
    loss.backward()
    norm = clip_and_adam_in_place(dict(model.named_parameters()), state, learning_rate, train)
    return float(loss.detach()), norm


class Seq2SeqTrainer:
    """Holds the model and Adam state of one run."""

    def __init__(self, config, weights: dict | None = None, seed: int | None = None):
        self.config = config
        train = config.train
        configure(train.threads)
        torch.manual_seed(train.seed if seed is None else seed)
        self.model = build_model(config, dtype=torch_dtype(train.dtype))
        if weights is not None:
            load_canonical(self.model, weights)
        self.opt_state = init_adam(self.model.named_parameters())
        self.episode = 0

    def train(self, episodes: Sequence[EpisodeArrays]) -> np.ndarray:
        """Train on ``episodes`` in order (one Adam step each); returns the losses before each step."""
        train, losses = self.config.train, []
        for arrays in episodes:
            batch = to_tensors(arrays.trimmed().as_dict())
            loss, _ = train_step(self.model, self.opt_state, batch, train.learning_rate_at(self.episode), train)
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
