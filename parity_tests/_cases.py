"""The parity cases: one computation run in PyTorch and in JAX on identical numpy data and weights.

Each ``*_case`` function returns ``{group: [(name, jax value, torch value), ...]}`` with numpy arrays,
so that the tests (``test_*.py``) assert on them with :func:`_compare.assert_all` and
``report.py`` prints their worst normalized errors: both run exactly the same comparisons.

Weights always come from a seeded PyTorch model (default init U(-1/sqrt(H), 1/sqrt(H)), well
conditioned) and are copied into the JAX twin through the canonical dict; data come from numpy.
Every JAX computation runs inside ``jax.enable_x64(dtype == "float64")``, which also pins float32
runs to 32-bit types whatever the global flag says.
"""

from __future__ import annotations

import zlib
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import jax_impl.backend as jax_backend
import jax_impl.model as jax_model_module
import jax_impl.optim as jax_optim
import jax_impl.recurrent as jax_recurrent
import jax_impl.trainer as jax_trainer
import jax_impl.weights as jax_weights
import torch_impl.backend as torch_backend
import torch_impl.model as torch_model_module
import torch_impl.optim as torch_optim
import torch_impl.recurrent as torch_recurrent
import torch_impl.trainer as torch_trainer
import torch_impl.weights as torch_weights
from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig
from cogmeta.contract import TASKS as REGISTERED_TASKS
from cogmeta.schedules import learning_rate as python_learning_rate
from cogmeta.tasks import make_task, model_inputs
from torch_impl.samplers import model_inputs as torch_model_inputs

Pairs = list[tuple[str, np.ndarray, np.ndarray]]
#: group name -> pairs; the optional group "info" maps names to plain floats (e.g. how often clipping acted).
Groups = dict[str, Pairs]

CELLS = ("gru", "lstm")
DTYPES = ("float32", "float64")

#: Small, deliberately unequal sizes (a transposed or mis-sliced tensor cannot line up by accident).
HIDDEN, BATCH = 8, 6
CORE_INPUT, CORE_HIDDEN, CORE_STEPS, CORE_BATCH = 3, 6, 9, 5

#: Non-default parameters per task so that every term of its transform is exercised.
TASK_PARAMETERS = {
    "gaussian": dict(prior_mean=0.3, prior_std=1.2, noise_std=0.8, sequence_length=7),
    "coin": dict(alpha=0.8, beta=1.6, sequence_length=10),
    "drift": dict(prior_mean=-0.4, prior_std=1.3, noise_std=0.7, drift_std=0.45, sequence_length=9),
}
#: One instance of every registered task (``cogmeta.contract.TASKS``), so the parity tests that loop over
#: it cover a new task automatically: with its :data:`TASK_PARAMETERS` where given, else its defaults.
TASKS = {name: make_task(name, **TASK_PARAMETERS.get(name, {})) for name in sorted(REGISTERED_TASKS)}

#: Training recipe of the end-to-end cases: lr 1e-2 with a cosine schedule; clip_norm 0.5 is below the
#: typical gradient norm early in training, so both the clipped and the unclipped branch are taken.
TRAIN_DEFAULTS = dict(batch_size=BATCH, learning_rate=1e-2, schedule="cosine", final_lr_fraction=0.1, clip_norm=0.5)


def x64(dtype: str):
    """Context manager: 64-bit JAX types iff ``dtype == "float64"``."""
    return jax.enable_x64(dtype == "float64")


def torch_dtype(dtype: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def jax_dtype(dtype: str):
    return {"float32": jnp.float32, "float64": jnp.float64}[dtype]


def make_config(
    cell: str, dtype: str, task: str = "gaussian", num_layers: int = 1, hidden_size: int = HIDDEN, **train
) -> RunConfig:
    """A small run config; ``train`` overrides :data:`TRAIN_DEFAULTS` (``steps`` defaults to 1000)."""
    values = {"steps": 1000, **TRAIN_DEFAULTS, **train, "dtype": dtype}
    return RunConfig(
        task=TASKS[task],
        model=ModelConfig(cell=cell, hidden_size=hidden_size, num_layers=num_layers),
        train=TrainConfig(**values),
        jax=JaxOptions(steps_per_call=20),
    )


def torch_model(config: RunConfig, seed: int) -> torch_model_module.MetaLearner:
    """A freshly initialised torch model (torch's default init), seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch_model_module.MetaLearner(config, torch_dtype(config.train.dtype))


def jax_model(config: RunConfig, weights: Mapping[str, np.ndarray]) -> jax_model_module.MetaLearner:
    """The JAX twin holding ``weights`` (call inside :func:`x64`), loaded with ``load_canonical``.

    The module is built abstractly (``nnx.eval_shape``) and filled with zeros before loading: its random
    init would be overwritten anyway, and compiling the PRNG for every new shape costs ~0.5 s a test.
    """
    dtype = jax_dtype(config.train.dtype)
    abstract = nnx.eval_shape(lambda: jax_model_module.MetaLearner(config, dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    model = nnx.merge(graphdef, jax.tree.map(lambda leaf: jnp.asarray(np.zeros(leaf.shape, leaf.dtype)), state))
    jax_weights.load_canonical(model, weights)
    return model


def sample_observations(config: RunConfig, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """Observations ``[T, B, 1]`` (or ``[count, T, B, 1]``) from the numpy reference sampler."""
    dtype = np.dtype(config.train.dtype)
    if count is None:
        return config.task.sample(rng, config.train.batch_size, dtype).observations
    return np.stack([config.task.sample(rng, config.train.batch_size, dtype).observations for _ in range(count)])


def _np(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    return np.array(value)


def _named(prefix: str, jax_dict: Mapping[str, np.ndarray], torch_dict: Mapping[str, np.ndarray]) -> Pairs:
    if set(jax_dict) != set(torch_dict):
        raise AssertionError(
            f"{prefix}: names differ: only JAX {sorted(set(jax_dict) - set(torch_dict))}, "
            f"only torch {sorted(set(torch_dict) - set(jax_dict))}"
        )
    return [(f"{prefix} {name}", _np(jax_dict[name]), _np(torch_dict[name])) for name in torch_dict]


def _torch_adam_state(state: torch_optim.AdamState, key: str) -> dict[str, np.ndarray]:
    """``exp_avg`` or ``exp_avg_sq`` of a torch ``AdamState``, by canonical name, as numpy."""
    return {name: _np(tensor) for name, tensor in getattr(state, key).items()}


def _jax_adam_state(opt_state: jax_optim.AdamState) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """(exp_avg, exp_avg_sq, count) of a JAX ``AdamState``, by canonical name."""
    return (jax_weights.state_to_canonical(opt_state.exp_avg), jax_weights.state_to_canonical(opt_state.exp_avg_sq),
            int(opt_state.count))


_COMPILED: dict[tuple, Callable] = {}


def compiled(key, build: Callable[[], Callable]) -> Callable:
    """``jax.jit(build())``, built once per hashable ``key`` and shared by every test and seed that needs it.

    XLA compilation dominates the suite's run time (0.2-2 s per program on 2 cores, far more than the
    computations), so programs are keyed by what determines them (kind of computation and run config,
    which fixes the graphdef: models of one config have equal graphdefs) and reused across tests.
    Call the result inside the same :func:`x64` context every time (jit's own cache is keyed on it).
    """
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(build())
    return _COMPILED[key]


# ---------------------------------------------------------------------------- layer: recurrent core
def core_weights(cell: str, dtype: str, num_layers: int, seed: int) -> tuple[torch.nn.Module, dict[str, np.ndarray]]:
    """A seeded torch core (input size 3, hidden 6) and its tensors by ``state_dict`` name."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        core = torch_recurrent.CORES[cell](CORE_INPUT, CORE_HIDDEN, num_layers, dtype=torch_dtype(dtype))
    return core, {name: _np(value) for name, value in core.state_dict().items()}


def core_case(
    cell: str,
    dtype: str,
    num_layers: int,
    with_state: bool,
    seed: int,
    mutate: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> Groups:
    """The recurrent core alone: outputs ``[T, B, H]`` and final state(s) ``[L, B, H]``.

    The JAX core is called under ``jax.jit`` (one compilation instead of one per eager op; the
    samplers are where eager execution is compared). ``mutate`` edits the weights given to JAX only
    (for tests that the comparison catches a bug).
    """
    core, weights = core_weights(cell, dtype, num_layers, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((CORE_STEPS, CORE_BATCH, CORE_INPUT)).astype(dtype)
    shape = (num_layers, CORE_BATCH, CORE_HIDDEN)
    state = None
    if with_state:
        h0 = (0.5 * rng.standard_normal(shape)).astype(dtype)
        state = h0 if cell == "gru" else (h0, (0.5 * rng.standard_normal(shape)).astype(dtype))
    with torch.no_grad():
        torch_state = None if state is None else jax.tree.map(torch.from_numpy, state)
        out_t, final_t = core(torch.from_numpy(x), torch_state)
    with x64(dtype):
        factory = lambda: jax_recurrent.CORES[cell](  # noqa: E731
            CORE_INPUT, CORE_HIDDEN, num_layers, rngs=nnx.Rngs(0), dtype=jax_dtype(dtype)
        )
        graphdef, template = nnx.split(nnx.eval_shape(factory))
        jcore = nnx.merge(graphdef, jax.tree.map(lambda leaf: jnp.asarray(np.zeros(leaf.shape, leaf.dtype)), template))
        jax_weights.load_canonical(jcore, weights if mutate is None else mutate(dict(weights)))

        def build():
            return lambda params, x, state: nnx.merge(graphdef, params)(x, state)

        run = compiled(("core", cell, dtype, num_layers, with_state), build)
        jax_state = None if state is None else jax.tree.map(jnp.asarray, state)
        out_j, final_j = run(nnx.state(jcore), jnp.asarray(x), jax_state)
        out_j, final_j = _np(out_j), jax.tree.map(_np, final_j)
    pairs = [("core outputs", out_j, _np(out_t))]
    if cell == "gru":
        pairs.append(("core h_n", final_j, _np(final_t)))
    else:
        pairs += [("core h_n", final_j[0], _np(final_t[0])), ("core c_n", final_j[1], _np(final_t[1]))]
    return {"cell": pairs}


# ---------------------------------------------------------------------------- layers: model forward, gradients
def jax_forward(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray) -> dict[str, np.ndarray]:
    """``raw`` = model(inputs), ``nll`` (``heads.nll``) and ``loss`` (``model.sequence_nll``) from one jitted
    program per config (call inside :func:`x64`)."""
    from jax_impl.heads import nll as jax_nll

    graphdef, params = nnx.split(jax_model(config, weights))

    def build():
        def forward(params, inputs, observations):
            model = nnx.merge(graphdef, params)
            raw = model(inputs)
            loss = jax_model_module.sequence_nll(model, inputs, observations)
            return {"raw": raw, "nll": jax_nll(config.task.family, raw, observations), "loss": loss}

        return forward

    result = compiled(("forward", config), build)(params, jnp.asarray(model_inputs(observations)), jnp.asarray(observations))
    return {name: _np(value) for name, value in result.items()}


def torch_train_step(tmodel, config: RunConfig):
    """The one trainer's step on the tutorial objective: ``step(state, observations, index) -> StepOutputs``."""
    objective = torch_backend.MetaLearnerObjective(config)
    step = torch_trainer.make_train_step(objective, tmodel)
    member = objective.member(config.train.seed)
    return lambda state, observations, index: step(state, observations, index, member)


def torch_train_on_batches(tmodel, config: RunConfig):
    """``run(state, batches, start) -> StepOutputs [K]``: the one trainer on given numpy batches."""
    objective = torch_backend.MetaLearnerObjective(config)
    run = torch_trainer.make_train_on_batches(objective, tmodel)
    member = objective.member(config.train.seed)
    return lambda state, batches, start: run(state, [torch.from_numpy(np.asarray(b)) for b in batches], start, member)


def jax_objective(config: RunConfig):
    """The tutorial objective (``jax_impl.backend.MetaLearnerObjective``) and its member of seed ``config.train.seed``."""
    objective = jax_backend.MetaLearnerObjective(config)
    return objective, objective.member(config.train.seed)


def jax_loss(config: RunConfig):
    """``loss(params, observations)``: the function the one trainer differentiates for the tutorial objective."""
    objective, member = jax_objective(config)
    return lambda params, observations: objective.loss(params, observations, 0, member)[0]


def jax_train_step(config: RunConfig):
    """Jitted ``step(params, opt_state, observations, index) -> (params, opt_state, StepOutputs)``."""
    objective, member = jax_objective(config)
    step = jax_trainer.make_train_step(objective)
    return jax.jit(lambda params, opt_state, observations, index: step(params, opt_state, observations, index, member))


def jax_train_on_batches(config: RunConfig):
    """Jitted ``run(params, opt_state, batches [K, ...], start) -> (params, opt_state, StepOutputs [K])``."""
    objective, member = jax_objective(config)
    run = jax_trainer.make_train_on_batches(objective)
    return lambda params, opt_state, batches, start: run(params, opt_state, batches, start, member)


def jax_loss_and_grads(config: RunConfig, weights: Mapping[str, np.ndarray], observations: np.ndarray):
    """``jax.value_and_grad`` of :func:`jax_loss` (the function training differentiates), jitted once
    per config; gradients by canonical name (call inside :func:`x64`)."""
    graphdef, params = nnx.split(jax_model(config, weights))
    loss_and_grad = compiled(("loss_and_grad", config), lambda: jax.value_and_grad(jax_loss(config)))
    loss, grads = loss_and_grad(params, jnp.asarray(observations))
    return _np(loss), jax_weights.state_to_canonical(grads)


def forward_case(config: RunConfig, seed: int) -> Groups:
    """Raw head outputs ``[T, B, O]``, elementwise NLL ``[T, B]`` and the mean loss."""
    from torch_impl.heads import nll as torch_nll

    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)
    observations = sample_observations(config, np.random.default_rng(seed))
    inputs = model_inputs(observations)
    with torch.no_grad():
        raw_t = tmodel(torch.from_numpy(inputs))
        nll_t = torch_nll(config.task.family, raw_t, torch.from_numpy(observations))
        loss_t = torch_model_module.sequence_nll(tmodel, torch.from_numpy(inputs), torch.from_numpy(observations))
    with x64(config.train.dtype):
        jax_out = jax_forward(config, weights, observations)
    return {
        "model": [("raw outputs", jax_out["raw"], _np(raw_t))],
        "loss": [("elementwise nll", jax_out["nll"], _np(nll_t)), ("mean loss", jax_out["loss"], _np(loss_t))],
    }


def grad_case(config: RunConfig, seed: int) -> Groups:
    """Gradients of the mean loss wrt every parameter, by canonical name."""
    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)
    observations = sample_observations(config, np.random.default_rng(seed))
    obs_t = torch.from_numpy(observations)
    tmodel.zero_grad(set_to_none=True)
    loss_t = torch_model_module.sequence_nll(tmodel, torch_model_inputs(obs_t), obs_t)
    loss_t.backward()
    grads_t = {name: param.grad for name, param in tmodel.named_parameters()}
    with x64(config.train.dtype):
        loss_j, grads_j = jax_loss_and_grads(config, weights, observations)
    return {"loss": [("training loss", loss_j, _np(loss_t))], "grad": _named("grad", grads_j, grads_t)}


# ---------------------------------------------------------------------------- layer: optimizer alone
def synthetic_gradients(config: RunConfig, steps: int, seed: int, shapes: Mapping[str, tuple[int, ...]]):
    """``steps`` dicts of numpy gradients: per-tensor scales over three decades, ~5 % exact zeros."""
    rng = np.random.default_rng(seed + 1)
    dtype = np.dtype(config.train.dtype)
    scales = {name: 10.0 ** rng.uniform(-3, 0) for name in shapes}
    out = []
    for _ in range(steps):
        grads = {}
        for name, shape in shapes.items():
            values = rng.standard_normal(shape) * scales[name]
            values[rng.random(shape) < 0.05] = 0.0
            grads[name] = values.astype(dtype)
        out.append(grads)
    return out


def optim_case(config: RunConfig, seed: int, steps: int) -> Groups:
    """Clip + Adam + schedule on identical numpy gradients: params and Adam moments after ``steps``.

    Both frameworks through the mirrored names of ``torch_impl.optim`` / ``jax_impl.optim``:
    ``clip_by_global_norm``, then ``adam_step`` at ``learning_rate(k)`` (JAX: one jitted call per step).
    """
    train = config.train
    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)
    grads = synthetic_gradients(config, steps, seed, {name: value.shape for name, value in weights.items()})
    params_t = {name: param.detach().clone() for name, param in tmodel.named_parameters()}
    state_t = torch_optim.init_adam(params_t)
    norms_t = []
    for step, step_grads in enumerate(grads):
        clipped, norm = torch_optim.clip_by_global_norm({n: torch.from_numpy(g.copy()) for n, g in step_grads.items()},
                                                        train.clip_norm)
        params_t, state_t = torch_optim.adam_step(params_t, clipped, state_t, torch_optim.learning_rate(step, train), train)
        norms_t.append(float(norm))
    with x64(train.dtype):
        _, params = nnx.split(jax_model(config, weights))
        opt_state = jax_optim.init_adam(params)
        clip, adam = jax_optim.clip_by_global_norm, jax_optim.adam_step  # looked up here: tests monkeypatch them

        def build():
            def update(params, opt_state, grads, step):
                grads, _ = clip(grads, train.clip_norm)
                return adam(params, grads, opt_state, jax_optim.learning_rate(step, train), train)

            return update

        update = compiled(("optimizer", clip, adam, config), build)
        for step, step_grads in enumerate(grads):
            params, opt_state = update(params, opt_state, jax_weights.canonical_to_state(params, step_grads), step)
        params_j = jax_weights.state_to_canonical(params)
        mu, nu, count = _jax_adam_state(opt_state)
    if count != steps or float(state_t.count) != steps:
        raise AssertionError(f"step counts after {steps} steps: JAX {count}, torch {float(state_t.count)}")
    return {
        "optim": _named("param", params_j, {n: _np(p) for n, p in params_t.items()})
        + _named("exp_avg", mu, _torch_adam_state(state_t, "exp_avg"))
        + _named("exp_avg_sq", nu, _torch_adam_state(state_t, "exp_avg_sq")),
        "info": {"clipped fraction": float(np.mean(np.asarray(norms_t) > train.clip_norm))},
    }


def schedule_case(train: TrainConfig, extra: int = 5) -> Pairs:
    """The learning rate for k = 0 .. steps + extra: jnp (eager and jitted) vs the Python formula."""
    steps = np.arange(train.steps + extra + 1)
    expected = np.asarray(
        [python_learning_rate(int(k), train.learning_rate, train.steps, train.schedule, train.final_lr_fraction) for k in steps]
    )
    with x64(train.dtype):
        eager = np.asarray([_np(jax_optim.learning_rate(jnp.asarray(int(k)), train)) for k in steps[:: max(1, len(steps) // 25)]])
        jitted = _np(jax.jit(jax.vmap(lambda k: jax_optim.learning_rate(k, train)))(jnp.asarray(steps)))
    torch_lr = np.asarray([_np(torch_optim.learning_rate(torch.tensor(int(k)), train)) for k in steps])
    dtype = np.dtype(train.dtype)
    return [
        ("lr (eager jnp)", eager.astype(dtype, copy=False), expected[:: max(1, len(steps) // 25)].astype(dtype)),
        ("lr (jit)", jitted, expected.astype(dtype)),
        ("lr (torch)", torch_lr.astype(dtype), expected.astype(dtype)),
    ]


# ---------------------------------------------------------------------------- end to end
def train_step_case(config: RunConfig, seed: int) -> Groups:
    """One training step from the same weights on the same batch (step 0)."""
    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)
    observations = sample_observations(config, np.random.default_rng(seed))
    state_t = torch_optim.init_adam(tmodel.named_parameters())
    loss_t, norm_t, lr_t, _ = torch_train_step(tmodel, config)(state_t, torch.from_numpy(observations), 0)
    with x64(config.train.dtype):
        graphdef, params = nnx.split(jax_model(config, weights))
        opt_state = jax_optim.init_adam(params)
        step = compiled(("train_step", config), lambda: jax_train_step(config))
        params, opt_state, outputs = step(params, opt_state, jnp.asarray(observations), 0)
        params_j = jax_weights.state_to_canonical(params)
        mu, nu, _ = _jax_adam_state(opt_state)
        loss_j, norm_j, lr_j = (_np(value) for value in outputs[:3])
    dtype = np.dtype(config.train.dtype)
    return {
        "loss": [("loss", loss_j, np.asarray(loss_t, dtype)), ("learning rate", lr_j, np.asarray(lr_t, dtype))],
        "grad": [("pre-clip gradient norm", norm_j, np.asarray(norm_t, dtype))]
        + _named("exp_avg", mu, _torch_adam_state(state_t, "exp_avg"))
        + _named("exp_avg_sq", nu, _torch_adam_state(state_t, "exp_avg_sq")),
        "1-step": _named("param", params_j, torch_weights.model_to_canonical(tmodel)),
    }


def long_run_seed(cell: str, dtype: str) -> int:
    """The seed of the 1000-step comparison (shared by the test and ``report.py``)."""
    return zlib.crc32(f"long-run-{cell}-{dtype}".encode())


def train_run_case(config: RunConfig, seed: int, steps: int) -> Groups:
    """``steps`` training steps on identical pre-sampled numpy batches: the loss curves and final params.

    ``make_train_on_batches``: torch one Python step each, JAX one ``lax.scan``.
    """
    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)
    batches = sample_observations(config, np.random.default_rng(seed), count=steps)
    run_t = torch_train_on_batches(tmodel, config)
    losses_t = run_t(torch_optim.init_adam(tmodel.named_parameters()), batches, 0).loss
    with x64(config.train.dtype):
        graphdef, params = nnx.split(jax_model(config, weights))
        opt_state = jax_optim.init_adam(params)
        run = jax_train_on_batches(config)
        params, opt_state, outputs = run(params, opt_state, jnp.asarray(batches), 0)
        params_j = jax_weights.state_to_canonical(params)
        losses_j, norms_j = _np(outputs.loss), _np(outputs.grad_norm)
    dtype = np.dtype(config.train.dtype)
    return {
        "loss curve": [("loss curve", losses_j, losses_t.astype(dtype))],
        "params": _named("param", params_j, torch_weights.model_to_canonical(tmodel)),
        "info": {"clipped fraction": float(np.mean(norms_j > config.train.clip_norm))},
    }


def jax_train_steps(config: RunConfig, graphdef, params, opt_state, batches: np.ndarray, start: int):
    """``len(batches)`` JAX train steps from step ``start`` with the (shared, jitted) single step.

    Returns ``(params, opt_state, losses)``; call inside :func:`x64`.
    """
    step = compiled(("train_step", config), lambda: jax_train_step(config))
    losses = []
    for index, observations in enumerate(batches):
        params, opt_state, outputs = step(params, opt_state, jnp.asarray(observations), start + index)
        losses.append(_np(outputs.loss))
    return params, opt_state, np.asarray(losses)


# ---------------------------------------------------------------------------- a known trap, on purpose
def merged_bias_case(config: RunConfig, seed: int, steps: int) -> Groups:
    """torch's two biases vs a Flax-style cell with merged biases, trained on identical batches.

    Flax's cells add ``b_hh`` into ``b_ih`` (for the GRU only the r and z blocks: b_hn sits inside
    r * (W_hn h + b_hn) and cannot be merged). The forward passes agree, but torch gives both copies
    the same gradient, so their sum moves twice as far per Adam step. Here the JAX model holds the
    merged bias in ``bias_ih`` and keeps the merged rows of ``bias_hh`` at 0 (zero gradient). Returns
    the forward at init and the effective parameters after ``steps`` (torch's merged rows summed).
    """
    hidden = config.model.hidden_size
    merged_rows = np.zeros(({"gru": 3, "lstm": 4}[config.model.cell] * hidden, 1), bool)
    merged_rows[: (2 if config.model.cell == "gru" else 4) * hidden] = True
    tmodel = torch_model(config, seed)
    weights = torch_weights.model_to_canonical(tmodel)

    def effective(tensors):
        out = dict(tensors)
        for layer in range(config.model.num_layers):
            b_ih, b_hh = tensors[f"core.bias_ih_l{layer}"], tensors[f"core.bias_hh_l{layer}"]
            out[f"core.bias_ih_l{layer}"] = np.where(merged_rows[:, 0], b_ih + b_hh, b_ih)
            out[f"core.bias_hh_l{layer}"] = np.where(merged_rows[:, 0], np.zeros_like(b_hh), b_hh)
        return out

    batches = sample_observations(config, np.random.default_rng(seed), count=steps)
    inputs = model_inputs(batches[0])
    with torch.no_grad():
        raw_t = _np(tmodel(torch.from_numpy(inputs)))
    torch_train_on_batches(tmodel, config)(torch_optim.init_adam(tmodel.named_parameters()), batches, 0)
    effective_t = effective(torch_weights.model_to_canonical(tmodel))
    train = config.train
    with x64(train.dtype):
        graphdef, params = nnx.split(jax_model(config, effective(weights)))
        raw_j = _np(nnx.merge(graphdef, params)(jnp.asarray(inputs)))
        loss_and_grad = jax.value_and_grad(jax_loss(config))
        keep = jnp.asarray(~merged_rows[:, 0])

        def freeze(path, grad):
            return grad * keep.astype(grad.dtype) if "bias_hh" in jax.tree_util.keystr(path) else grad

        @jax.jit
        def step(params, opt_state, observations, index):
            _, grads = loss_and_grad(params, observations)
            grads, _ = jax_optim.clip_by_global_norm(jax.tree_util.tree_map_with_path(freeze, grads), train.clip_norm)
            return jax_optim.adam_step(params, grads, opt_state, jax_optim.learning_rate(index, train), train)

        opt_state = jax_optim.init_adam(params)
        for index, observations in enumerate(batches):
            params, opt_state = step(params, opt_state, jnp.asarray(observations), index)
        effective_j = jax_weights.state_to_canonical(params)
    return {
        "forward": [("raw outputs at init, merged biases", raw_j, raw_t)],
        "trained": _named("effective param", effective_j, effective_t),
    }
