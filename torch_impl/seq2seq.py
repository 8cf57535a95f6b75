"""Meta sequence-to-sequence learner (Lake 2019) in PyTorch; ``jax_impl.seq2seq`` is its twin.

One episode at a time, time-major (T = padded length, Q queries, S support items, H hidden units):

    encode(x)  = embedding + dropout + bidirectional LSTM, directions summed:
                 steps [T, B, H] (zero at padding), final [B, H] (last layer, forward + reverse)
    keys K = final(support commands) [S, H]        (shares the query encoder: tied)
    values V = final(support actions) [S, H]       (its own embedding and encoder)
    memory:  a_t = softmax_S(q_t K^T / sqrt(H)),  v_t = a_t V,  C_t = tanh(W_m [q_t; v_t])   [Tq, Q, H]
    decoder: LSTM, (h_0, c_0) = C at each query's last step, copied to every layer;
             inputs = embedding(SOS, y_1, ..) + dropout (teacher forcing);
             b_t = softmax over the query's valid steps of d_t C^T / sqrt(H);  o_t = tanh(W_a [d_t; b_t C])
             logits_t = W_o o_t + b_o                                               [Tout, Q, V_out]
    no memory (ablation): C = query encoder steps, decoder state from the query's final encoding.

Dropout (p) multiplies the embedded inputs by a mask of 0 and 1/(1-p); ``masks`` injects the masks
(keys "query", "support_in", "support_out", "decoder", each shaped like its embedded input) so that
both frameworks can be fed the same noise. Inter-layer LSTM dropout is not used (see
docs/framework-differences.md#injected-noise). Attention masks: torch ``masked_fill`` takes True = *hide*.

Training (:class:`Seq2SeqObjective`, an objective of the one trainer, ``torch_impl.trainer``): one episode
per step, the teacher-forced masked cross-entropy (:func:`sequence_loss`), global-norm clipping and Adam at
lr * decay_factor ** floor(k / decay_every) (Lake 2019). Episodes are drawn on the host
(``cogmeta.tasks.scan_episodes.EpisodeStream``) and given to ``Trainer.run_on`` (:func:`episode_batches`:
one trimmed episode per step). The dropout noise of episode k is a function of (seed, k) only: torch's
global generator is re-seeded from both before the step, so a run resumed at episode k from a
checkpoint draws the noise of the uninterrupted run.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cogmeta.contract import Checkpoint
from cogmeta.tasks.scan_episodes import EpisodeArrays
from cogmeta.vocabulary import EOS_ID, PAD_ID, SOS_ID
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.recurrent import LSTM
from torch_impl.trainer import Trainer, default_member
from torch_impl.weights import load_canonical

MASK_KEYS = ("query", "support_in", "support_out", "decoder")


class BiLSTM(nn.LSTM):
    """``nn.LSTM(bidirectional=True)`` over padded ``[T, B, I]`` with lengths ``[B]`` (packed sequences)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, *, dtype: torch.dtype | None = None):
        super().__init__(input_size, hidden_size, num_layers, bidirectional=True, dtype=dtype)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(steps [T, B, H], final [B, H])``, both directions summed; steps are 0 after each length."""
        steps, batch = inputs.shape[:2]
        hidden = self.hidden_size
        packed = pack_padded_sequence(inputs, lengths.cpu().long(), enforce_sorted=False)
        outputs, (h_n, _) = self.forward(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=steps)  # [T, B, 2H], [fwd; rev]
        final = h_n.view(self.num_layers, 2, batch, hidden)[-1].sum(0)  # unsorted back to batch order
        return outputs[..., :hidden] + outputs[..., hidden:], final


def attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hide: torch.Tensor | None = None):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V over the last axis of the scores.

    ``queries`` [..., n, d], ``keys`` [..., m, d], ``values`` [..., m, e]; ``hide`` (broadcast to
    [..., n, m]) is True where a key must get zero weight. With m = 0 the result is 0 (empty sum).
    Returns ``(retrieved [..., n, e], weights [..., n, m])``.
    """
    scores = torch.matmul(queries, keys.transpose(-1, -2)) / math.sqrt(queries.shape[-1])
    if hide is not None:
        scores = scores.masked_fill(hide, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, values), weights


class MetaSeq2Seq(nn.Module):
    """The memory-based meta seq2seq model; ``memory=False`` gives the plain seq2seq ablation."""

    def __init__(self, input_vocab: int, output_vocab: int, hidden_size: int = 200, num_layers: int = 2,
                 dropout: float = 0.5, memory: bool = True, *, dtype: torch.dtype | None = None):
        super().__init__()
        h = hidden_size
        self.hidden_size, self.num_layers, self.dropout, self.memory = h, num_layers, dropout, memory
        self.input_embedding = nn.Embedding(input_vocab, h, dtype=dtype)
        self.input_encoder = BiLSTM(h, h, num_layers, dtype=dtype)
        if memory:
            self.output_embedding = nn.Embedding(output_vocab, h, dtype=dtype)
            self.output_encoder = BiLSTM(h, h, num_layers, dtype=dtype)
            self.memory_combine = nn.Linear(2 * h, h, dtype=dtype)
        self.decoder_embedding = nn.Embedding(output_vocab, h, dtype=dtype)
        self.decoder = LSTM(h, h, num_layers, dtype=dtype)
        self.attention_combine = nn.Linear(2 * h, h, dtype=dtype)
        self.readout = nn.Linear(h, output_vocab, dtype=dtype)

    def _embed(self, embedding: nn.Embedding, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = embedding(tokens)
        if mask is not None:
            return x * mask
        return F.dropout(x, self.dropout, self.training)

    def encode_episode(self, batch: dict, masks: dict | None = None) -> dict:
        """Context ``[Tq, Q, H]``, decoder start state ``[Q, H]`` and memory attention ``[Tq, Q, S]``."""
        masks = masks or {}
        q_len = batch["query_in_len"]
        steps, final = self.input_encoder.encode(
            self._embed(self.input_embedding, batch["query_in"], masks.get("query")), q_len)
        if not self.memory:
            return {"context": steps, "start": final, "memory_attention": None}
        h = self.hidden_size
        if batch["support_in"].shape[1] == 0:  # empty support: nothing to pack; the retrieval is an empty sum
            keys = steps.new_zeros((0, h))
            values = steps.new_zeros((0, h))
        else:
            _, keys = self.input_encoder.encode(
                self._embed(self.input_embedding, batch["support_in"], masks.get("support_in")), batch["support_in_len"])
            _, values = self.output_encoder.encode(
                self._embed(self.output_embedding, batch["support_out"], masks.get("support_out")),
                batch["support_out_len"])
        retrieved, weights = attend(steps, keys, values)  # [Tq, Q, H] against [S, H]
        context = torch.tanh(self.memory_combine(torch.cat([steps, retrieved], dim=-1)))
        last = (q_len.long() - 1).to(context.device)
        start = context[last, torch.arange(context.shape[1], device=context.device)]
        return {"context": context, "start": start, "memory_attention": weights}

    def _readout(self, decoded: torch.Tensor, context: torch.Tensor, hide: torch.Tensor):
        """decoded [T, Q, H], context [Tq, Q, H] -> (logits [T, Q, V], attention [T, Q, Tq])."""
        attended, weights = attend(decoded.transpose(0, 1), context.transpose(0, 1), context.transpose(0, 1), hide)
        attended, weights = attended.transpose(0, 1), weights.transpose(0, 1)
        combined = torch.tanh(self.attention_combine(torch.cat([decoded, attended], dim=-1)))
        return self.readout(combined), weights

    def _hide(self, batch: dict, steps: int) -> torch.Tensor:
        """[Q, 1, Tq], True at each query's padding (torch's masked_fill convention: True = hidden)."""
        positions = torch.arange(steps, device=batch["query_in_len"].device)
        return (positions[None, :] >= batch["query_in_len"][:, None].long())[:, None, :]

    def forward(self, batch: dict, masks: dict | None = None) -> dict:
        """Teacher-forced logits ``[Tout, Q, V_out]`` plus both attention maps."""
        encoded = self.encode_episode(batch, masks)
        context, start = encoded["context"], encoded["start"]
        state = (start.expand(self.num_layers, -1, -1).contiguous(),) * 2
        inputs = self._embed(self.decoder_embedding, batch["target_in"], (masks or {}).get("decoder"))
        decoded, _ = self.decoder(inputs, state)
        logits, weights = self._readout(decoded, context, self._hide(batch, context.shape[0]))
        return {"logits": logits, "decoder_attention": weights, "memory_attention": encoded["memory_attention"]}

    @torch.no_grad()
    def greedy(self, batch: dict, steps: int) -> dict:
        """Greedy decoding for ``steps`` steps: tokens ``[steps, Q]`` (int64) and attention ``[steps, Q, Tq]``.

        The decoder runs all ``steps`` (tokens after a query's EOS are ignored by ``Vocabulary.decode``);
        ties in the argmax go to the lowest id in both frameworks.
        """
        encoded = self.encode_episode(batch)
        context, start = encoded["context"], encoded["start"]
        hide = self._hide(batch, context.shape[0])
        state = (start.expand(self.num_layers, -1, -1).contiguous(),) * 2
        token = torch.full((context.shape[1],), SOS_ID, dtype=torch.long, device=context.device)
        tokens, maps = [], []
        for _ in range(steps):
            decoded, state = self.decoder(self.decoder_embedding(token)[None], state)
            logits, weights = self._readout(decoded, context, hide)
            token = logits[0].argmax(-1)
            tokens.append(token), maps.append(weights[0])
        return {"tokens": torch.stack(tokens), "decoder_attention": torch.stack(maps),
                "memory_attention": encoded["memory_attention"]}


def sequence_loss(logits: torch.Tensor, target_out: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-PAD target tokens: logits [T, Q, V], targets [T, Q]."""
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1).long(), reduction="none")
    valid = (target_out.reshape(-1) != PAD_ID).to(per_token.dtype)
    return (per_token * valid).sum() / valid.sum()


def build_model(config, dtype: torch.dtype | None = None) -> MetaSeq2Seq:
    """The model of a seq2seq-family ``RunConfig`` (its weights drawn from torch's global generator)."""
    m, task = config.model, config.task
    return MetaSeq2Seq(len(task.commands), len(task.actions), m.hidden_size, m.num_layers, m.dropout, m.memory,
                       dtype=dtype)


def to_tensors(arrays: dict, device: str | torch.device = "cpu") -> dict:
    """numpy episode arrays -> torch tensors (ids int64, lengths int64, flags bool)."""
    return {name: torch.as_tensor(value).to(device).long() if value.dtype.kind in "iu" else torch.as_tensor(value).to(device)
            for name, value in arrays.items()}


def _episode_seed(seed: int, episode: int) -> int:
    """The seed of torch's generator for the dropout noise of ``episode`` (a 63-bit hash of both)."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Seq2SeqObjective:
    """Meta seq2seq training (``torch_impl.trainer.Objective``): one episode per step, teacher forcing.

    loss(episode k) = masked mean CE of ``model(batch)["logits"]`` against ``target_out`` (:func:`sequence_loss`),
    in training mode, with the dropout noise of torch's generator seeded from (seed, k); a batch that
    holds ``"masks"`` (:data:`MASK_KEYS` -> tensors) uses those instead (parity tests feed both
    frameworks the same noise).

    Args:
        config: a seq2seq-family ``RunConfig``; its ``train`` is the recipe (steps = episodes, the step
            schedule, clipping, Adam).
    """

    def __init__(self, config):
        self.config, self.train = config, config.train
        self.dtype = resolve_dtype(self.train.dtype)

    def init(self, seed: int) -> MetaSeq2Seq:
        """A fresh model, its weights drawn after ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        return build_model(self.config, dtype=self.dtype)

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step: int, member: dict):
        raise NotImplementedError(
            "meta seq2seq draws its episodes on the host (cogmeta.tasks.scan_episodes.EpisodeStream), not in "
            "the trainer: train with Trainer(objective).run_on(episode_batches(episodes)), not Trainer.run")

    def loss(self, model: MetaSeq2Seq, batch: dict, step: int, member: dict) -> tuple[torch.Tensor, dict]:
        """``(masked mean CE, {})`` of episode ``step`` (a :func:`to_tensors` dict, optionally with ``"masks"``)."""
        torch.manual_seed(_episode_seed(member["seed"], step))
        model.train()
        return sequence_loss(model(batch, batch.get("masks"))["logits"], batch["target_out"]), {}


def make_trainer(config, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :class:`Seq2SeqObjective` of ``config`` (at ``config.torch.threads`` threads),
    resumed from ``checkpoint`` (either framework's) if given."""
    configure(config.torch.threads)
    return Trainer(Seq2SeqObjective(config), checkpoint)


def episode_batches(episodes: Sequence[EpisodeArrays]) -> list[dict]:
    """Encoded episodes -> ``Trainer.run_on``'s batches: one :func:`to_tensors` dict per episode, trimmed to
    its longest sequence (packed sequences give the numbers of the padded ones, with less work)."""
    return [to_tensors(episode.trimmed().as_dict()) for episode in episodes]


def load_model(config, weights: Mapping[str, np.ndarray]) -> MetaSeq2Seq:
    """The model of ``config`` holding the canonical ``weights``, in eval mode (no dropout)."""
    configure(config.torch.threads)
    with torch.random.fork_rng(devices=[]):  # the initial draw is overwritten: leave the global generator alone
        model = build_model(config, dtype=resolve_dtype(config.train.dtype))
    load_canonical(model, weights)
    return model.eval()


def decode(model: MetaSeq2Seq, arrays: dict, steps: int) -> dict:
    """Greedy decoding of numpy episode ``arrays`` in eval mode: ``tokens [steps, Q]``, ``decoder_attention
    [steps, Q, Tq]`` and ``memory_attention [Tq, Q, S]`` (None without memory), as numpy."""
    model.eval()
    out = model.greedy(to_tensors(arrays), steps)
    return {name: (None if value is None else value.detach().cpu().numpy()) for name, value in out.items()}


__all__ = ["BiLSTM", "EOS_ID", "MASK_KEYS", "MetaSeq2Seq", "Seq2SeqObjective", "attend", "build_model", "decode",
           "episode_batches", "load_model", "make_trainer", "sequence_loss", "to_tensors"]
