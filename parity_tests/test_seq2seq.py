"""Meta seq2seq (Lake 2019): PyTorch vs JAX from the same weights on the same episodes.

Layers: forward (teacher-forced logits, both attention maps, loss), gradients of the loss (eval mode,
and training mode with the same injected dropout masks), one step of the one trainer on
``Seq2SeqObjective`` (clipping and Adam), and greedy decoding token for token. Edge cases: an empty support set (the retrieval is an empty sum: 0) and
one-token sequences (just EOS: the bidirectional encoder runs one step). Variants cover the memory
model and the ``--no-memory`` ablation, 1 and 2 encoder layers (layer 2 reads [forward; reverse]), both
dtypes. Weights come from a seeded torch model (torch init), copied into the JAX twin by name.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl.seq2seq as jseq
import jax_impl.trainer as jtrainer
import jax_impl.weights as jweights
import torch_impl.seq2seq as tseq
import torch_impl.trainer as ttrainer
import torch_impl.weights as tweights
from cogmeta.config import ModelConfig, RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.experiments.meta_seq2seq_shapes import parameter_shapes
from cogmeta.presets import preset
from cogmeta.tasks.scan_episodes import Episode, MutualExclusivityTask, ScanEpisodeTask
from jax_impl.optim import init_adam as jax_init_adam
from parity_tests._compare import assert_all
from torch_impl.optim import init_adam

pytestmark = [pytest.mark.parity, pytest.mark.torch, pytest.mark.jax]

HIDDEN = 6
#: (task, layers, memory) per (dtype): every variant is compiled once per dtype.
VARIANTS = {
    "me-2layer": (MutualExclusivityTask(num_query=5), 2, True),
    "scan-1layer": (ScanEpisodeTask("add_jump", num_support=3, num_query=4), 1, True),
    "no-memory": (ScanEpisodeTask("add_jump", num_support=3, num_query=4), 2, False),
}


def seq2seq_config(task, layers: int, dropout: float, memory: bool, **train) -> RunConfig:
    """Lake (2019)'s recipe (the ``seq2seq-me-paper`` preset: one episode per Adam step, step decay) on ``task``,
    with an H = ``HIDDEN`` model and the ``train`` fields changed."""
    paper = preset("seq2seq-me-paper")
    return dataclasses.replace(paper, task=task, model=ModelConfig(family="seq2seq", hidden_size=HIDDEN,
                                                                   num_layers=layers, dropout=dropout, memory=memory),
                               train=dataclasses.replace(paper.train, **train))


def make_config(variant: str, dtype: str, dropout: float = 0.5) -> RunConfig:
    task, layers, memory = VARIANTS[variant]
    return seq2seq_config(task, layers, dropout, memory, dtype=dtype, clip_norm=0.5, learning_rate=1e-2)


def episode_arrays(config, seed: int, episode: Episode | None = None) -> dict:
    episode = episode or config.task.sample(np.random.default_rng(seed))
    return config.task.encode(episode).trimmed().as_dict()


def twins(config, seed: int):
    dtype = config.train.dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tm = tseq.build_model(config, dtype=getattr(torch, dtype))
    weights = tweights.model_to_canonical(tm)
    assert list(weights) == list(parameter_shapes(config))
    # built abstractly and filled from the torch weights: an eager random init compiles per shape (~0.5 s each)
    abstract = nnx.eval_shape(lambda: jseq.build_model(config, dtype=getattr(jnp, dtype)))
    graphdef, state = nnx.split(abstract)
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), state)
    filled = jweights.canonical_to_state(zeros, weights)
    return tm, nnx.merge(graphdef, filled)


def numpy_masks(config, arrays: dict, seed: int) -> dict:
    """Dropout masks (0 or 1/(1-p)) for every embedded input, from numpy."""
    rng, p = np.random.default_rng(seed + 1), config.model.dropout
    shapes = {"query": arrays["query_in"].shape, "decoder": arrays["target_in"].shape}
    if config.model.memory:
        shapes.update(support_in=arrays["support_in"].shape, support_out=arrays["support_out"].shape)
    return {k: ((rng.random(s + (HIDDEN,)) >= p) / (1 - p)).astype(config.train.dtype) for k, s in shapes.items()}


def _torch_run(tm, arrays, masks):
    """Outputs, loss and (when the model has a graph) gradients by canonical name."""
    tm.zero_grad()
    batch = tseq.to_tensors(arrays)
    out = tm(batch, None if masks is None else {k: torch.as_tensor(v) for k, v in masks.items()})
    loss = tseq.sequence_loss(out["logits"], batch["target_out"])
    loss.backward()
    # a parameter outside the graph (the support encoders when S = 0) keeps .grad None in torch; JAX gives 0
    return out, loss, {n: (torch.zeros_like(p) if p.grad is None else p.grad).numpy() for n, p in tm.named_parameters()}


def ones_masks(config, arrays: dict) -> dict:
    """All-ones masks: the JAX side always takes masks, so eval and dropout cases share one compilation."""
    shapes = {"query": arrays["query_in"].shape, "decoder": arrays["target_in"].shape}
    if config.model.memory:
        shapes.update(support_in=arrays["support_in"].shape, support_out=arrays["support_out"].shape)
    return {k: np.ones(s + (HIDDEN,), config.train.dtype) for k, s in shapes.items()}


def _jax_loss_and_grads(graphdef, params, batch, masks):
    def loss_fn(params):
        out = nnx.merge(graphdef, params)(batch, masks)
        return jseq.sequence_loss(out["logits"], batch["target_out"]), out

    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return out, loss, grads


#: graphdef is static (hashable), so each (model structure, shapes, dtype) compiles once per session
_jax_loss_and_grads_jit = jax.jit(_jax_loss_and_grads, static_argnums=0)
_jax_greedy_jit = jax.jit(lambda graphdef, params, batch, steps: nnx.merge(graphdef, params).greedy(batch, steps),
                          static_argnums=(0, 3))


def _jax_run(jm, arrays, masks):
    """The same in JAX: one jitted function of (params, batch, masks)."""
    graphdef, params = nnx.split(jm, nnx.Param)
    masks = {k: jnp.asarray(v) for k, v in masks.items()}
    out, loss, grads = _jax_loss_and_grads_jit(graphdef, params, jseq.to_arrays(arrays), masks)
    return out, loss, jweights.state_to_canonical(grads)


def run_both(config, tm, jm, arrays, masks=None) -> dict:
    """{"forward": pairs of outputs and loss, "grad": pairs of gradients} as (name, jax, torch).

    Without ``masks`` torch runs in eval mode (no dropout) and JAX with all-ones masks.
    """
    t_out, t_loss, t_grads = _torch_run(tm, arrays, masks)
    j_out, j_loss, j_grads = _jax_run(jm, arrays, ones_masks(config, arrays) if masks is None else masks)
    names = ["logits", "decoder_attention"] + (["memory_attention"] if tm.memory else [])
    forward = [(n, np.asarray(j_out[n]), t_out[n].detach().numpy()) for n in names]
    forward.append(("loss", np.asarray(j_loss), t_loss.detach().numpy()))
    assert set(j_grads) == set(t_grads) == set(tweights.model_to_canonical(tm))
    return {"forward": forward, "grad": [(f"grad {n}", j_grads[n], t_grads[n]) for n in t_grads]}


def jax_greedy(jm, arrays, steps: int) -> dict:
    graphdef, params = nnx.split(jm, nnx.Param)
    return _jax_greedy_jit(graphdef, params, jseq.to_arrays(arrays), steps)


SLOW = pytest.mark.slow
#: (variant, dtype): two in the default run (~1 compilation each), the rest with --runslow
FORWARD_CASES = [
    pytest.param("me-2layer", "float64"),
    pytest.param("no-memory", "float32"),
    pytest.param("me-2layer", "float32", marks=SLOW),
    pytest.param("no-memory", "float64", marks=SLOW),
    pytest.param("scan-1layer", "float32", marks=SLOW),
    pytest.param("scan-1layer", "float64", marks=SLOW),
]


@pytest.mark.parametrize("variant,dtype", FORWARD_CASES)
def test_forward_and_gradients(variant, dtype, seed, record):
    """Eval mode (no dropout), then training mode with the same injected dropout masks on both sides."""
    config = make_config(variant, dtype)
    with jax.enable_x64(dtype == "float64"):
        tm, jm = twins(config, seed)
        arrays = episode_arrays(config, seed)
        groups = run_both(config, tm.eval(), jm, arrays)
        record("seq2seq forward", variant, dtype, assert_all(groups["forward"], "forward", dtype))
        record("seq2seq grad", variant, dtype, assert_all(groups["grad"], "grad", dtype))

        masks = numpy_masks(config, arrays, seed)
        dropped = run_both(config, tm.train(), jm, arrays, masks)
        assert not np.allclose(dropped["forward"][0][2], groups["forward"][0][2]), "the masks should change the logits"
        record("seq2seq forward (dropout)", variant, dtype, assert_all(dropped["forward"], "forward", dtype))
        record("seq2seq grad (dropout)", variant, dtype, assert_all(dropped["grad"], "grad", dtype))


@SLOW
def test_one_adam_step_with_clipping(dtype, seed, record):
    """The one trainer's step (``trainer.make_train_step``) on each framework's ``Seq2SeqObjective``, with the
    same masks (in the batch), episode 0; clip 0.01 acts; lr 1e-2."""
    config = make_config("me-2layer", dtype)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, clip_norm=0.01))
    with jax.enable_x64(dtype == "float64"):
        tm, jm = twins(config, seed)
        arrays = episode_arrays(config, seed)
        masks = numpy_masks(config, arrays, seed)
        t_objective, j_objective = tseq.Seq2SeqObjective(config), jseq.Seq2SeqObjective(config)
        t_batch = {**tseq.to_tensors(arrays), "masks": {k: torch.as_tensor(v) for k, v in masks.items()}}
        t_out = ttrainer.make_train_step(t_objective, tm)(init_adam(tm.named_parameters()), t_batch, 0,
                                                          t_objective.member(seed))
        t_loss, t_norm = t_out.loss, t_out.grad_norm
        _, params = nnx.split(jm, nnx.Param)
        j_batch = {**jseq.to_arrays(arrays), "masks": {k: jnp.asarray(v) for k, v in masks.items()}}
        params, _, j_out = jax.jit(jtrainer.make_train_step(j_objective))(params, jax_init_adam(params), j_batch, 0,
                                                                          j_objective.member(seed))
        j_loss, j_norm = j_out.loss, j_out.grad_norm
        assert t_norm > config.train.clip_norm, "the clip should act in this case"
        assert_all([("loss", np.asarray(j_loss), np.asarray(t_loss, dtype=dtype)),
                    ("grad norm", np.asarray(j_norm), np.asarray(t_norm, dtype=dtype))], "forward", dtype)
        t_params = tweights.model_to_canonical(tm)
        j_params = jweights.state_to_canonical(params)
        error = assert_all([(f"param {n}", j_params[n], t_params[n]) for n in t_params], "train_step", dtype,
                           lr=config.train.learning_rate)
        record("seq2seq train 1 step", "me-2layer", dtype, error)


@pytest.mark.parametrize("variant,dtype", [
    pytest.param("scan-1layer", "float32"),
    pytest.param("scan-1layer", "float64", marks=SLOW),
    pytest.param("me-2layer", "float32", marks=SLOW),
    pytest.param("me-2layer", "float64", marks=SLOW),
])
def test_greedy_decoding_token_identical(variant, dtype, seed):
    config = make_config(variant, dtype)
    with jax.enable_x64(dtype == "float64"):
        tm, jm = twins(config, seed)
        tm.eval()
        arrays = config.task.encode(config.task.sample(np.random.default_rng(seed))).as_dict()
        steps = config.task.output_length
        t_out = tm.greedy(tseq.to_tensors(arrays), steps)
        j_out = jax_greedy(jm, arrays, steps)
        np.testing.assert_array_equal(np.asarray(j_out["tokens"]), t_out["tokens"].numpy())
        assert_all([("greedy decoder attention", np.asarray(j_out["decoder_attention"]),
                     t_out["decoder_attention"].numpy())], "forward", dtype)


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=SLOW)])
def test_empty_support_behaves_the_same(dtype, seed):
    """S = 0: no keys, the retrieved value is the empty sum 0; logits and gradients agree and are finite."""
    config = make_config("me-2layer", dtype)
    query = ((("dax", "wif"), ("RED", "BLUE")), (("lug",), ("GREEN",)))
    with jax.enable_x64(dtype == "float64"):
        tm, jm = twins(config, seed)
        tm.eval()
        arrays = config.task.encode(Episode((), query, (False, False))).trimmed().as_dict()
        assert arrays["support_in"].shape[1] == 0
        groups = run_both(config, tm, jm, arrays)
        assert groups["forward"][2][2].shape[-1] == 0  # memory attention over zero items
        assert all(np.all(np.isfinite(b)) for _, _, b in groups["forward"] + groups["grad"])
        assert_all(groups["forward"], "forward", dtype)
        assert_all(groups["grad"], "grad", dtype)
        tokens_t = tm.greedy(tseq.to_tensors(arrays), 4)["tokens"].numpy()
        np.testing.assert_array_equal(np.asarray(jax_greedy(jm, arrays, 4)["tokens"]), tokens_t)


@pytest.mark.parametrize("dtype", [pytest.param("float64", marks=SLOW), pytest.param("float32", marks=SLOW)])
def test_single_token_sequences(dtype, seed):
    """One-token sequences everywhere (just EOS, length 1): T = 1 in every encoder and in the decoder."""
    config = make_config("me-2layer", dtype)
    with jax.enable_x64(dtype == "float64"):
        tm, jm = twins(config, seed)
        tm.eval()
        eos = np.full((1, 2), 2, np.int32)
        arrays = {"support_in": eos, "support_in_len": np.ones(2, np.int32), "support_out": eos,
                  "support_out_len": np.ones(2, np.int32), "query_in": eos[:, :1], "query_in_len": np.ones(1, np.int32),
                  "target_in": np.ones((1, 1), np.int32), "target_out": eos[:, :1], "in_support": np.zeros(1, bool)}
        groups = run_both(config, tm, jm, arrays)
        assert_all(groups["forward"], "forward", dtype)
        assert_all(groups["grad"], "grad", dtype)


@SLOW
def test_padding_does_not_change_results(seed):
    """Packed (torch) vs masked (JAX) variable lengths: extra padding leaves every output unchanged."""
    config = make_config("scan-1layer", "float64")
    with jax.enable_x64(True):
        tm, jm = twins(config, seed)
        tm.eval()
        episode = config.task.sample(np.random.default_rng(seed))
        full = config.task.encode(episode).as_dict()
        trimmed = config.task.encode(episode).trimmed().as_dict()
        assert full["target_in"].shape[0] > trimmed["target_in"].shape[0]
        t_trim = tm(tseq.to_tensors(trimmed))["logits"].detach().numpy()
        j_full = np.asarray(_jax_run(jm, full, ones_masks(config, full))[0]["logits"])
        steps = trimmed["target_in"].shape[0]
        valid = trimmed["target_out"] != 0
        np.testing.assert_allclose(j_full[:steps][valid], t_trim[valid], rtol=1e-10, atol=1e-12)


@SLOW
def test_trainers_follow_the_same_loss_curve(seed):
    """The one trainer on ``Seq2SeqObjective`` (torch: a step per episode on trimmed arrays; JAX: one scan
    over padded episodes) from the same weights, dropout 0, float64: the same losses episode by episode,
    through two step decays of the learning rate."""
    task = MutualExclusivityTask()
    config = seq2seq_config(task, 2, 0.0, True, dtype="float64", learning_rate=1e-2, decay_every=3, clip_norm=0.5)
    config = dataclasses.replace(config, jax=dataclasses.replace(config.jax, steps_per_call=6))
    rng = np.random.default_rng(seed)
    episodes = [task.encode(task.sample(rng)) for _ in range(7)]
    with jax.enable_x64(True):
        torch_trainer = ttrainer.Trainer(tseq.Seq2SeqObjective(config), seed=seed)
        weights = torch_trainer.weights()
        zeros = {name: np.zeros_like(value) for name, value in weights.items()}
        jax_trainer = jtrainer.Trainer(jseq.Seq2SeqObjective(config), Checkpoint(0, weights, zeros, zeros, "torch"))
        t_metrics = torch_trainer.run_on(tseq.episode_batches(episodes))
        j_metrics = jax_trainer.run_on(jseq.episode_batches(episodes))
        assert torch_trainer.step == jax_trainer.step == len(episodes)
        np.testing.assert_allclose(t_metrics.learning_rate, 1e-2 * 0.1 ** (np.arange(7) // 3), rtol=1e-15)
        np.testing.assert_allclose(j_metrics.learning_rate, t_metrics.learning_rate, rtol=1e-15)
        losses_t, losses_j = t_metrics.loss, j_metrics.loss
        assert_all([("loss curve", losses_j, losses_t)], "loss_curve", "float64")
        final_t, final_j = torch_trainer.weights(), jax_trainer.weights()
        assert_all([(f"param {n}", final_j[n], final_t[n]) for n in final_t], "train_steps", "float64")
