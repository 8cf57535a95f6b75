"""Meta sequence-to-sequence learner (Lake 2019) in Flax NNX; twin of ``torch_impl.seq2seq``.

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
(keys "query", "support_in", "support_out", "decoder", each shaped like its embedded input); in
training without injected masks they are drawn from ``key``. Variable lengths: torch packs the
sequences; here every sequence runs the full padded length and a length mask freezes the LSTM state
after the end (forward) or before the start (reverse), which gives the same numbers.
Attention masks: ``jnp.where`` takes True = *keep* (the opposite of torch's ``masked_fill``).

Training (:class:`Seq2SeqObjective`, an objective of the one trainer, ``jax_impl.trainer``): one episode
per step, the teacher-forced masked cross-entropy (:func:`sequence_loss`), global-norm clipping and Adam at
lr * decay_factor ** floor(k / decay_every) (Lake 2019). Episodes are drawn on the host
(``cogmeta.tasks.scan_episodes.EpisodeStream``) and given to ``Trainer.run_on`` (:func:`episode_batches`:
K episodes padded to the task's fixed lengths and stacked, one compiled scan). The dropout noise of
episode k is drawn from ``fold_in(key(seed), k)``, so a run resumed at episode k from a checkpoint draws
the noise of the uninterrupted run.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from cogmeta.contract import Checkpoint
from cogmeta.tasks.scan_episodes import EpisodeArrays, stack_episodes
from cogmeta.vocabulary import EOS_ID, PAD_ID, SOS_ID
from jax_impl.linear import Linear, uniform_init
from jax_impl.numerics import HIGHEST, configure, matmul, resolve_dtype
from jax_impl.recurrent import LSTM
from jax_impl.recurrent_layers import masked_lstm_layer
from jax_impl.trainer import Trainer, default_member
from jax_impl.weights import abstract_split, canonical_to_state

MASK_KEYS = ("query", "support_in", "support_out", "decoder")


class Embedding(nnx.Module):
    """``torch.nn.Embedding``'s twin: ``weight`` (V, H) ~ N(0, 1); ids ``[...]`` -> ``[..., H]``."""

    def __init__(self, num_embeddings: int, features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (num_embeddings, features), dtype))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.weight[...], ids, axis=0)


def _lstm_direction(x, valid, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    """One LSTM direction over ``[T, B, I]``; state frozen where ``valid`` [T, B] is False.

    Returns (outputs [T, B, H] with zeros where not valid, final h [B, H]): the custom-VJP masked layer
    (``jax_impl.recurrent_layers.masked_lstm_layer``) on the input projection hoisted out of the loop.
    """
    return masked_lstm_layer(matmul(x, w_ih) + b_ih, valid, w_hh, b_hh, reverse)


class BiLSTM(nnx.Module):
    """Bidirectional LSTM holding ``nn.LSTM(bidirectional=True)``'s tensors (``*_l{k}`` and ``*_l{k}_reverse``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.hidden_size, self.num_layers = hidden_size, num_layers
        bound = 1.0 / math.sqrt(hidden_size)
        rows = 4 * hidden_size
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else 2 * hidden_size
            for suffix in ("", "_reverse"):
                for name, shape in (
                    (f"weight_ih_l{layer}{suffix}", (rows, inputs)),
                    (f"weight_hh_l{layer}{suffix}", (rows, hidden_size)),
                    (f"bias_ih_l{layer}{suffix}", (rows,)),
                    (f"bias_hh_l{layer}{suffix}", (rows,)),
                ):
                    setattr(self, name, nnx.Param(uniform_init(rngs.params(), shape, dtype, bound)))

    def _weights(self, layer: int, suffix: str):
        return tuple(getattr(self, f"{kind}_l{layer}{suffix}")[...]
                     for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def encode(self, inputs: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(steps [T, B, H], final [B, H])``, both directions summed; steps are 0 after each length."""
        valid = jnp.arange(inputs.shape[0])[:, None] < lengths[None, :]  # [T, B]
        x = inputs
        for layer in range(self.num_layers):
            forward, h_fwd = _lstm_direction(x, valid, *self._weights(layer, ""), reverse=False)
            backward, h_rev = _lstm_direction(x, valid, *self._weights(layer, "_reverse"), reverse=True)
            x = jnp.concatenate([forward, backward], axis=-1)
        return forward + backward, h_fwd + h_rev


def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, hide: jax.Array | None = None):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V over the last axis of the scores.

    ``queries`` [..., n, d], ``keys`` [..., m, d], ``values`` [..., m, e]; ``keep`` (broadcast to
    [..., n, m]) is True where a key may get weight. With m = 0 the result is 0 (empty sum).
    Returns ``(retrieved [..., n, e], weights [..., n, m])``.
    """
    scores = jnp.matmul(queries, jnp.swapaxes(keys, -1, -2), precision=HIGHEST) / math.sqrt(queries.shape[-1])
    if hide is not None:
        scores = jnp.where(hide, -jnp.inf, scores)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.matmul(weights, values, precision=HIGHEST), weights


class MetaSeq2Seq(nnx.Module):
    """The memory-based meta seq2seq model; ``memory=False`` gives the plain seq2seq ablation."""

    def __init__(self, input_vocab: int, output_vocab: int, hidden_size: int = 200, num_layers: int = 2,
                 dropout: float = 0.5, memory: bool = True, *, rngs: nnx.Rngs, dtype=jnp.float32):
        h = hidden_size
        self.hidden_size, self.num_layers, self.dropout, self.memory = h, num_layers, dropout, memory
        self.input_embedding = Embedding(input_vocab, h, rngs=rngs, dtype=dtype)
        self.input_encoder = BiLSTM(h, h, num_layers, rngs=rngs, dtype=dtype)
        if memory:
            self.output_embedding = Embedding(output_vocab, h, rngs=rngs, dtype=dtype)
            self.output_encoder = BiLSTM(h, h, num_layers, rngs=rngs, dtype=dtype)
            self.memory_combine = Linear(2 * h, h, rngs=rngs, dtype=dtype)
        self.decoder_embedding = Embedding(output_vocab, h, rngs=rngs, dtype=dtype)
        self.decoder = LSTM(h, h, num_layers, rngs=rngs, dtype=dtype)
        self.attention_combine = Linear(2 * h, h, rngs=rngs, dtype=dtype)
        self.readout = Linear(h, output_vocab, rngs=rngs, dtype=dtype)

    def _embed(self, embedding: Embedding, tokens: jax.Array, mask: jax.Array | None) -> jax.Array:
        x = embedding(tokens)
        return x if mask is None else x * mask.astype(x.dtype)

    def encode_episode(self, batch: dict, masks: dict | None = None) -> dict:
        """Context ``[Tq, Q, H]``, decoder start state ``[Q, H]`` and memory attention ``[Tq, Q, S]``."""
        masks = masks or {}
        q_len = batch["query_in_len"]
        steps, final = self.input_encoder.encode(
            self._embed(self.input_embedding, batch["query_in"], masks.get("query")), q_len)
        if not self.memory:
            return {"context": steps, "start": final, "memory_attention": None}
        # an empty support (S = 0) needs no special case: the scans run over a zero-sized batch
        _, keys = self.input_encoder.encode(
            self._embed(self.input_embedding, batch["support_in"], masks.get("support_in")), batch["support_in_len"])
        _, values = self.output_encoder.encode(
            self._embed(self.output_embedding, batch["support_out"], masks.get("support_out")), batch["support_out_len"])
        retrieved, weights = attend(steps, keys, values)
        context = jnp.tanh(self.memory_combine(jnp.concatenate([steps, retrieved], axis=-1)))
        start = context[q_len - 1, jnp.arange(context.shape[1])]
        return {"context": context, "start": start, "memory_attention": weights}

    def _readout(self, decoded: jax.Array, context: jax.Array, keep: jax.Array):
        """decoded [T, Q, H], context [Tq, Q, H] -> (logits [T, Q, V], attention [T, Q, Tq])."""
        ctx = jnp.swapaxes(context, 0, 1)
        attended, weights = attend(jnp.swapaxes(decoded, 0, 1), ctx, ctx, ~keep)
        attended, weights = jnp.swapaxes(attended, 0, 1), jnp.swapaxes(weights, 0, 1)
        combined = jnp.tanh(self.attention_combine(jnp.concatenate([decoded, attended], axis=-1)))
        return self.readout(combined), weights

    def _keep(self, batch: dict, steps: int) -> jax.Array:
        """[Q, 1, Tq], True at each query's valid steps (``jnp.where``'s convention: True = kept)."""
        return (jnp.arange(steps)[None, :] < batch["query_in_len"][:, None])[:, None, :]

    def __call__(self, batch: dict, masks: dict | None = None) -> dict:
        """Teacher-forced logits ``[Tout, Q, V_out]`` plus both attention maps."""
        encoded = self.encode_episode(batch, masks)
        context, start = encoded["context"], encoded["start"]
        state = (jnp.broadcast_to(start, (self.num_layers,) + start.shape),) * 2
        inputs = self._embed(self.decoder_embedding, batch["target_in"], (masks or {}).get("decoder"))
        decoded, _ = self.decoder(inputs, state)
        logits, weights = self._readout(decoded, context, self._keep(batch, context.shape[0]))
        return {"logits": logits, "decoder_attention": weights, "memory_attention": encoded["memory_attention"]}

    def greedy(self, batch: dict, steps: int) -> dict:
        """Greedy decoding for ``steps`` steps: tokens ``[steps, Q]`` (int32) and attention ``[steps, Q, Tq]``.

        The decoder runs all ``steps`` (tokens after a query's EOS are ignored by ``Vocabulary.decode``);
        ties in the argmax go to the lowest id in both frameworks.
        """
        encoded = self.encode_episode(batch)
        context, start = encoded["context"], encoded["start"]
        keep = self._keep(batch, context.shape[0])
        state = (jnp.broadcast_to(start, (self.num_layers,) + start.shape),) * 2
        token = jnp.full((context.shape[1],), SOS_ID, dtype=jnp.int32)

        def step(carry, _):
            token, state = carry
            decoded, state = self.decoder(self.decoder_embedding(token)[None], state)
            logits, weights = self._readout(decoded, context, keep)
            token = jnp.argmax(logits[0], axis=-1).astype(jnp.int32)
            return (token, state), (token, weights[0])

        _, (tokens, maps) = lax.scan(step, (token, state), None, length=steps)
        return {"tokens": tokens, "decoder_attention": maps, "memory_attention": encoded["memory_attention"]}


def sequence_loss(logits: jax.Array, target_out: jax.Array) -> jax.Array:
    """Mean cross-entropy over the non-PAD target tokens: logits [T, Q, V], targets [T, Q]."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    per_token = -jnp.take_along_axis(log_probs, target_out[..., None].astype(jnp.int32), axis=-1)[..., 0]
    valid = (target_out != PAD_ID).astype(per_token.dtype)
    return (per_token * valid).sum() / valid.sum()


def dropout_masks(key: jax.Array, batch: dict, hidden: int, rate: float, memory: bool, dtype) -> dict:
    """Masks of 0 and 1/(1-rate) for every embedded input of ``batch`` (all ones when rate = 0)."""
    shapes = {"query": batch["query_in"].shape, "decoder": batch["target_in"].shape}
    if memory:
        shapes.update(support_in=batch["support_in"].shape, support_out=batch["support_out"].shape)
    keys = jax.random.split(key, len(shapes))
    if rate == 0.0:
        return {name: jnp.ones(shape + (hidden,), dtype) for name, shape in shapes.items()}
    return {name: jax.random.bernoulli(k, 1.0 - rate, shape + (hidden,)).astype(dtype) / (1.0 - rate)
            for k, (name, shape) in zip(keys, shapes.items())}


def build_model(config, dtype=jnp.float32, seed: int = 0) -> MetaSeq2Seq:
    """The model of a seq2seq-family ``RunConfig`` (its weights drawn from ``nnx.Rngs(seed)``)."""
    m, task = config.model, config.task
    return MetaSeq2Seq(len(task.commands), len(task.actions), m.hidden_size, m.num_layers, m.dropout, m.memory,
                       rngs=nnx.Rngs(seed), dtype=dtype)


def to_arrays(arrays: dict) -> dict:
    """numpy episode arrays -> jax arrays (ids and lengths int32)."""
    return {name: jnp.asarray(value, jnp.int32) if value.dtype.kind in "iu" else jnp.asarray(value)
            for name, value in arrays.items()}


class Seq2SeqObjective:
    """Meta seq2seq training (``jax_impl.trainer.Objective``): one episode per step, teacher forcing.

    loss(episode k) = masked mean CE of ``model(batch, masks)["logits"]`` against ``target_out``
    (:func:`sequence_loss`), with the dropout masks of ``fold_in(key(seed), k)`` (:func:`dropout_masks`); a
    batch that holds ``"masks"`` (:data:`MASK_KEYS` -> arrays) uses those instead (parity tests feed both
    frameworks the same noise).

    Args:
        config: a seq2seq-family ``RunConfig``; its ``train`` is the recipe (steps = episodes, the step
            schedule, clipping, Adam).
    """

    def __init__(self, config):
        self.config, self.train = config, config.train
        self.dtype = resolve_dtype(self.train.dtype)
        # the structure only (nnx.eval_shape: no weights drawn); ``loss`` merges it with the parameters
        self.graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(config, dtype=self.dtype)), nnx.Param)

    def init(self, seed: int):
        """The parameters (an ``nnx.State``) of a fresh model from ``nnx.Rngs(seed)``, drawn in one compiled
        call (an eager init compiles once per parameter shape)."""
        return jax.jit(lambda: nnx.split(build_model(self.config, dtype=self.dtype, seed=seed), nnx.Param)[1])()

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step, member: dict):
        raise NotImplementedError(
            "meta seq2seq draws its episodes on the host (cogmeta.tasks.scan_episodes.EpisodeStream), not in "
            "the trainer: train with Trainer(objective).run_on(episode_batches(episodes)), not Trainer.run")

    def loss(self, params, batch: dict, step, member: dict) -> tuple[jax.Array, dict]:
        """``(masked mean CE, {})`` of episode ``step`` (a :func:`to_arrays` dict, optionally with ``"masks"``)."""
        masks = batch.get("masks")
        if masks is None:
            m = self.config.model
            key = jax.random.fold_in(jax.random.key(member["seed"]), step)
            masks = dropout_masks(key, batch, m.hidden_size, m.dropout, m.memory, jax.tree.leaves(params)[0].dtype)
        model = nnx.merge(self.graphdef, params)
        return sequence_loss(model(batch, masks)["logits"], batch["target_out"]), {}


def make_trainer(config, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on :class:`Seq2SeqObjective` of ``config`` (64-bit types switched on for a float64
    run), resumed from ``checkpoint`` (either framework's) if given."""
    configure(dtype=config.train.dtype)
    return Trainer(Seq2SeqObjective(config), checkpoint)


def episode_batches(episodes: Sequence[EpisodeArrays]) -> dict:
    """Encoded episodes -> ``Trainer.run_on``'s batches: ``{field: [K, ...]}``, every episode padded to the
    task's fixed lengths, so that one compiled scan serves every call with K episodes."""
    return to_arrays(stack_episodes(episodes))


def load_model(config, weights: Mapping[str, np.ndarray]) -> MetaSeq2Seq:
    """The model of ``config`` holding the canonical ``weights`` (built abstractly and filled: no random init)."""
    configure(dtype=config.train.dtype)
    graphdef, template = abstract_split(lambda: build_model(config, dtype=resolve_dtype(config.train.dtype)), nnx.Param)
    return nnx.merge(graphdef, canonical_to_state(template, weights))


def decode(model: MetaSeq2Seq, arrays: dict, steps: int) -> dict:
    """Greedy decoding of numpy episode ``arrays``: ``tokens [steps, Q]``, ``decoder_attention [steps, Q, Tq]``
    and ``memory_attention [Tq, Q, S]`` (None without memory), as numpy. One compilation per model
    structure, ``steps`` and episode shape."""
    graphdef, params = nnx.split(model, nnx.Param)
    out = _greedy(graphdef, params, to_arrays(arrays), steps)
    return {name: (None if value is None else np.asarray(value)) for name, value in out.items()}


@jax.jit(static_argnums=(0, 3))
def _greedy(graphdef, params, batch: dict, steps: int) -> dict:
    return nnx.merge(graphdef, params).greedy(batch, steps)


__all__ = ["BiLSTM", "EOS_ID", "Embedding", "MASK_KEYS", "MetaSeq2Seq", "Seq2SeqObjective", "attend", "build_model",
           "decode", "dropout_masks", "episode_batches", "load_model", "make_trainer", "sequence_loss", "to_arrays"]
