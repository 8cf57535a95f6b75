"""Episode-wise training of ``jax_impl.seq2seq.MetaSeq2Seq``: one episode = one Adam step (Lake 2019).

step:  loss = masked mean CE of the teacher-forced logits;  g = grad(loss)
       g <- g * min(1, c / (||g|| + 1e-6));  Adam at lr_k = lr * decay ** floor(k / decay_every)
Twin of ``torch_impl.seq2seq_training``. The step is a pure function of ``(params, opt_state, episode,
k, key)``; ``make_run_episodes`` scans it over K same-shaped episodes in one compiled call (episodes
are padded to the task's fixed lengths, so a run compiles once).

Dropout noise of episode k is drawn from ``fold_in(key(seed), k)``, so a run restored from a
:class:`~cogmeta.contract.Checkpoint` at episode k continues exactly (``Seq2SeqTrainer(config,
checkpoint=...)``, ``restore``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cogmeta.contract import Checkpoint
from cogmeta.tasks.scan_episodes import EpisodeArrays, stack_episodes
from jax_impl.numerics import configure, resolve_dtype
from jax_impl.optim import adam_step, clip_by_global_norm, init_adam
from jax_impl.seq2seq import build_model, dropout_masks, sequence_loss, to_arrays
from jax_impl.weights import canonical_to_state, model_to_canonical, state_to_canonical

FRAMEWORK = "jax"


def learning_rate(episode: jax.Array, train) -> jax.Array:
    """lr * decay_factor ** floor(episode / decay_every) (the step decay of Lake 2019; episode counted from 0).

    Traceable in ``episode``.
    """
    return train.learning_rate * jnp.power(train.decay_factor, episode // train.decay_every)


def make_train_step(model, config):
    """``step(params, opt_state, batch, episode, key, masks=None) -> (params, opt_state, loss, pre-clip gradient
    norm)``: one teacher-forced step.

    Clipping and Adam are ``jax_impl.optim``'s; ``opt_state`` is its ``AdamState`` (``init_adam``). The step
    is pure (``model`` gives only its structure, ``nnx.graphdef``; an abstract model is enough), at
    ``learning_rate(episode, config.train)``. A non-finite gradient applies no update.
    """
    graphdef = nnx.graphdef(model)
    train, model_config = config.train, config.model

    def loss_fn(params, batch, masks):
        model = nnx.merge(graphdef, params)
        return sequence_loss(model(batch, masks)["logits"], batch["target_out"])

    def step(params, opt_state, batch, episode, key, masks=None):
        if masks is None:
            dtype = jax.tree.leaves(params)[0].dtype
            masks = dropout_masks(key, batch, model_config.hidden_size, model_config.dropout, model_config.memory, dtype)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, masks)
        grads, norm = clip_by_global_norm(grads, train.clip_norm)
        # a non-finite gradient applies no update (as torch_impl.training.clip_and_adam_in_place)
        params, opt_state = adam_step(params, grads, opt_state, learning_rate(episode, train), train,
                                      apply=jnp.isfinite(norm))
        return params, opt_state, loss, norm

    return step


def make_run_episodes(model, config):
    """Jitted ``run(params, opt_state, episodes [K, ...], first_episode, key) -> (params, opt_state, losses [K])``."""
    step = make_train_step(model, config)

    def run(params, opt_state, episodes, first, key):
        def body(carry, inputs):
            params, opt_state = carry
            batch, index = inputs
            params, opt_state, loss, _ = step(params, opt_state, batch, first + index,
                                              jax.random.fold_in(key, first + index))
            return (params, opt_state), loss

        count = jax.tree.leaves(episodes)[0].shape[0]
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (episodes, jnp.arange(count)))
        return params, opt_state, losses

    return jax.jit(run)


class Seq2SeqTrainer:
    """Holds the parameters and Adam state of one run.

    ``checkpoint``: resume from a :class:`~cogmeta.contract.Checkpoint` (either framework's): weights,
    Adam moments and the episode count (which also sets the learning rate and the dropout noise).
    """

    def __init__(self, config, weights: dict | None = None, seed: int | None = None,
                 checkpoint: Checkpoint | None = None):
        self.config = config
        train = config.train
        configure(dtype=train.dtype)
        self.dtype = resolve_dtype(train.dtype)
        self.seed = train.seed if seed is None else seed
        # built abstractly, then filled: an eager random init compiles once per parameter shape
        abstract = nnx.eval_shape(lambda: build_model(config, dtype=self.dtype, seed=self.seed))
        self.graphdef, template = nnx.split(abstract, nnx.Param)
        if weights is not None:
            zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), template)
            self.params = canonical_to_state(zeros, weights)
        else:
            self.params = jax.jit(lambda: nnx.split(build_model(config, dtype=self.dtype, seed=self.seed), nnx.Param)[1])()
        self.opt_state = init_adam(self.params)
        self._run = make_run_episodes(abstract, config)
        self._greedy = jax.jit(self._greedy_fn, static_argnums=(2,))
        self.key = jax.random.key(self.seed)
        self.episode = 0
        if checkpoint is not None:
            self.restore(checkpoint)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: its weights, Adam moments and count, at episode ``checkpoint.step``."""
        self.params = canonical_to_state(self.params, checkpoint.params)
        adam = self.opt_state
        self.opt_state = adam._replace(
            count=jnp.asarray(checkpoint.step, adam.count.dtype),
            exp_avg=canonical_to_state(adam.exp_avg, checkpoint.exp_avg),
            exp_avg_sq=canonical_to_state(adam.exp_avg_sq, checkpoint.exp_avg_sq),
        )
        self.episode = int(checkpoint.step)

    def checkpoint(self) -> Checkpoint:
        """Episodes done, canonical weights and Adam moments by canonical name."""
        adam = self.opt_state
        return Checkpoint(self.episode, self.weights(), state_to_canonical(adam.exp_avg),
                          state_to_canonical(adam.exp_avg_sq), FRAMEWORK)

    def train(self, episodes: Sequence[EpisodeArrays]) -> np.ndarray:
        """Train on ``episodes`` in order (one Adam step each, one compiled call); returns the losses."""
        stacked = to_arrays(stack_episodes(episodes))
        self.params, self.opt_state, losses = self._run(self.params, self.opt_state, stacked,
                                                        jnp.asarray(self.episode), self.key)
        losses = np.asarray(losses, dtype=np.float64)
        if not np.all(np.isfinite(losses)):
            raise RuntimeError(f"non-finite loss within episodes {self.episode}..{self.episode + len(episodes) - 1}")
        self.episode += len(episodes)
        return losses

    def weights(self) -> dict[str, np.ndarray]:
        return model_to_canonical(nnx.merge(self.graphdef, self.params))

    def _greedy_fn(self, params, batch, steps):
        return nnx.merge(self.graphdef, params).greedy(batch, steps)

    def decode(self, arrays: dict, steps: int) -> dict[str, np.ndarray]:
        """Greedy decoding: tokens [steps, Q] and attention maps, as numpy."""
        out = self._greedy(self.params, to_arrays(arrays), steps)
        return {k: (None if v is None else np.asarray(v)) for k, v in out.items()}
