"""RL² (``torch_impl.rl2`` / ``jax_impl.rl2``) within each framework: bad input, the returns and the entropy
anneal against direct numpy formulas, the policy gradient against finite differences (it must be the
REINFORCE estimator), and a few updates of each backend's trainer.

The twins are compared with each other in ``parity_tests/test_rl2.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cogmeta.config import JaxOptions, ModelConfig, RLConfig, RunConfig, TrainConfig
from cogmeta.tasks.bandit import BernoulliBanditTask, DependentBanditTask

ARMS, HORIZON, BATCH, HIDDEN = 3, 8, 5, 6


def make_config(cell: str = "gru", dtype: str = "float64", task=None, rl: RLConfig | None = None, **train) -> RunConfig:
    task = BernoulliBanditTask(arms=ARMS, horizon=HORIZON) if task is None else task
    return RunConfig(task=task, model=ModelConfig(family="rl2", cell=cell, hidden_size=HIDDEN),
                     train=TrainConfig(dtype=dtype, batch_size=BATCH, **{"steps": 10, **train}),
                     jax=JaxOptions(steps_per_call=5), rl=RLConfig() if rl is None else rl)


def _torch():
    torch = pytest.importorskip("torch")
    import torch_impl.bandit as bandit
    import torch_impl.rl2 as rl2

    return torch, bandit, rl2


def _jax():
    jax = pytest.importorskip("jax")
    pytest.importorskip("flax")
    import jax_impl.bandit as bandit
    import jax_impl.rl2 as rl2

    return jax, bandit, rl2


def reference_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """``G_t = sum_{s >= t} discount^(s - t) r_s`` by a direct double loop."""
    horizon = rewards.shape[0]
    returns = np.zeros_like(rewards)
    for t in range(horizon):
        for s in range(t, horizon):
            returns[t] += discount ** (s - t) * rewards[s]
    return returns


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("discount", [0.0, -0.1, 1.5])
def test_discount_outside_0_1_is_refused(discount):
    with pytest.raises(ValueError, match="discount"):
        RLConfig(discount=discount)


def test_discount_1_is_accepted():
    assert RLConfig(discount=1.0).discount == 1.0


def _bad_steps():
    """(actions, trial, message) triples that step must refuse, for a batch of BATCH episodes and ARMS arms."""
    good = np.zeros(BATCH, np.int64)
    return [
        (np.asarray([0, 1, 2, 3, 0]), 0, r"actions must lie in \[0, 2\] \(arms=3\), got \[3\]"),
        (np.asarray([0, -1, 2, 1, 0]), 0, r"actions must lie in \[0, 2\] \(arms=3\), got \[-1\]"),
        (good.astype(np.float64), 0, "integer"),
        (good[:3], 0, r"shape \[B\]"),
        (good, HORIZON, r"trial must be an integer in \[0, 7\]"),
    ]


@pytest.mark.torch
def test_torch_step_refuses_bad_input():
    torch, bandit, _ = _torch()
    batch = bandit.from_numpy(BernoulliBanditTask(arms=ARMS, horizon=HORIZON).sample(np.random.default_rng(0), BATCH),
                              torch.float64)
    for actions, trial, message in _bad_steps():
        with pytest.raises(ValueError, match=message):
            bandit.step(batch, trial, torch.from_numpy(actions))
    assert bandit.step(batch, HORIZON - 1, torch.tensor([0, 1, 2, 2, 1])).shape == (BATCH,)


@pytest.mark.jax
def test_jax_step_refuses_bad_input_when_not_traced():
    jax, bandit, _ = _jax()
    with jax.enable_x64(True):
        batch = bandit.from_numpy(BernoulliBanditTask(arms=ARMS, horizon=HORIZON).sample(np.random.default_rng(0), BATCH),
                                  np.float64)
        for actions, trial, message in _bad_steps():
            with pytest.raises(ValueError, match=message):
                bandit.step(batch, trial, jax.numpy.asarray(actions))
        assert bandit.step(batch, HORIZON - 1, jax.numpy.asarray([0, 1, 2, 2, 1])).shape == (BATCH,)


# ------------------------------------------------------------------------------------------ formulas
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("discount", [0.9, 1.0])
def test_discounted_returns_match_a_double_loop(discount):
    torch, _, trl2 = _torch()
    jax, _, jrl2 = _jax()
    rewards = (np.random.default_rng(1).random((HORIZON, BATCH)) < 0.4).astype(np.float64)
    expected = reference_returns(rewards, discount)
    np.testing.assert_allclose(trl2.discounted_returns(torch.from_numpy(rewards), discount).numpy(), expected,
                               rtol=1e-13, atol=1e-13)
    with jax.enable_x64(True):
        got = jax.jit(lambda r: jrl2.discounted_returns(r, discount))(jax.numpy.asarray(rewards))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("final", [None, 0.0, 0.2])
def test_entropy_anneal_matches_rl_config(final):
    """The traced jnp anneal (JAX) and torch's call of ``RLConfig.entropy_at`` give ``entropy_at`` for every
    update, also past the last one (the weight stays at the final value)."""
    _, _, trl2 = _torch()
    jax, _, jrl2 = _jax()
    config = make_config(rl=RLConfig(entropy_weight=0.05, entropy_final=final), steps=11)
    steps = np.arange(15)
    expected = np.asarray([config.rl.entropy_at(int(k), config.train.steps) for k in steps])
    assert [trl2.entropy_weight(config, int(k)) for k in steps] == expected.tolist()
    with jax.enable_x64(True):
        got = jax.jit(jax.vmap(lambda k: jax.numpy.asarray(jrl2.entropy_weight(config, k))))(jax.numpy.asarray(steps))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-15, atol=0)
    assert expected[0] == 0.05 and expected[-1] == (0.05 if final is None else final)


# ------------------------------------------------------------------------------------------ REINFORCE
#: (canonical name, index) of the parameters checked by finite differences: core, policy head.
PROBES = [("policy.weight", (1, 2)), ("policy.bias", (0,)), ("core.weight_hh_l0", (4, 1)), ("core.bias_ih_l0", (7,)),
          ("core.weight_ih_l0", (2, 3))]
EPS = 1e-6


def _assert_reinforce(weights, gradient, surrogate):
    """``gradient`` (canonical dict, of a2c_loss with c_v = c_e = 0) equals the central difference of
    ``surrogate(weights)`` = mean[-log pi_w(a_t) (G_t - V0_t)] with actions, returns and the baseline V0
    held at their values for the unperturbed weights: the REINFORCE estimator with a baseline."""
    for name, index in PROBES:
        plus, minus = dict(weights), dict(weights)
        plus[name], minus[name] = weights[name].copy(), weights[name].copy()
        plus[name][index] += EPS
        minus[name][index] -= EPS
        difference = (surrogate(plus) - surrogate(minus)) / (2 * EPS)
        assert abs(difference - gradient[name][index]) <= 1e-8 + 1e-6 * abs(difference), (name, index)
    assert max(abs(gradient[name][index]) for name, index in PROBES) > 1e-4, "the probes should carry gradient"
    # A_t = G_t - sg(V_t): with c_v = 0 nothing trains the critic
    assert not np.any(gradient["value.weight"]) and not np.any(gradient["value.bias"])


@pytest.mark.torch
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_torch_policy_gradient_is_reinforce(cell):
    torch, bandit, rl2 = _torch()
    from torch_impl.weights import load_canonical

    config = make_config(cell, rl=RLConfig(discount=0.9, value_weight=0.0, entropy_weight=0.0))
    batch = bandit.from_numpy(config.task.sample(np.random.default_rng(2), BATCH), torch.float64)
    model = rl2.build_model(config, seed=3)
    weights = rl2.init_weights(config, seed=3)
    played = rl2.rollout(model, batch)
    loss, _ = rl2.a2c_loss(played, 0.9, 0.0, 0.0)
    loss.backward()
    gradient = {name: p.grad.numpy() for name, p in model.named_parameters()}
    actions, baseline = played.actions, played.values.detach()
    returns = rl2.discounted_returns(played.rewards, 0.9)

    def surrogate(perturbed):
        load_canonical(model, perturbed)
        with torch.no_grad():
            again = rl2.rollout(model, batch)
        assert torch.equal(again.actions, actions), "a perturbation this small should not change an action"
        chosen = torch.gather(torch.log_softmax(again.logits, -1), -1, actions[..., None])[..., 0]
        return float(torch.mean(-chosen * (returns - baseline)))

    _assert_reinforce(weights, gradient, surrogate)


@pytest.mark.jax
@pytest.mark.parametrize("cell", ["lstm"])  # the GRU's JAX gradients are pinned to torch's by the parity suite
def test_jax_policy_gradient_is_reinforce(cell):
    jax, bandit, rl2 = _jax()
    jnp = jax.numpy
    from flax import nnx

    from jax_impl.weights import canonical_to_state, state_to_canonical

    config = make_config(cell, rl=RLConfig(discount=0.9, value_weight=0.0, entropy_weight=0.0))
    with jax.enable_x64(True):
        batch = bandit.from_numpy(config.task.sample(np.random.default_rng(2), BATCH), np.float64)
        graphdef, params = nnx.split(rl2.build_model(config, seed=3))
        weights = state_to_canonical(params)

        @jax.jit
        def loss_and_rollout(params):
            played = rl2.rollout(nnx.merge(graphdef, params), batch)
            return rl2.a2c_loss(played, 0.9, 0.0, 0.0)[0], played

        (_, played), grads = jax.value_and_grad(loss_and_rollout, has_aux=True)(params)
        gradient = state_to_canonical(grads)
        returns = rl2.discounted_returns(played.rewards, 0.9)

        def surrogate(perturbed):
            again = loss_and_rollout(canonical_to_state(params, perturbed))[1]
            assert np.array_equal(np.asarray(again.actions), np.asarray(played.actions))
            chosen = jnp.take_along_axis(jax.nn.log_softmax(again.logits, -1), played.actions[..., None], -1)[..., 0]
            return float(jnp.mean(-chosen * (returns - played.values)))

        _assert_reinforce(weights, gradient, surrogate)


@pytest.mark.jax
@pytest.mark.parametrize("replay", [True, False])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_jax_rollout_gradient_equals_autodiff_of_the_trial_loop(cell, replay):
    """``jax_impl.rl2.rollout`` either way (``replay``: the trials played without gradients, the core's replay
    differentiated; not: the trial scan taped): its rollout, loss and every gradient equal autodiff of the plain
    trial loop written out in Python (the agent called on each trial, the draw from sg(pi_t)), two layers, float64
    to 1e-12."""
    jax, bandit, rl2 = _jax()
    jnp, lax = jax.numpy, jax.lax
    from flax import nnx

    from cogmeta.config import ModelConfig

    base = make_config(cell)
    config = RunConfig(task=base.task, model=ModelConfig(family="rl2", cell=cell, hidden_size=HIDDEN, num_layers=2),
                       train=base.train, rl=base.rl)

    def trial_loop(agent, batch):
        times = rl2.trial_times(HORIZON, jnp.float64)
        inputs = jnp.zeros((BATCH, ARMS + 2), jnp.float64)
        state, played = agent.initial_state(BATCH, jnp.float64), []
        for t in range(HORIZON):
            logits, values, state = agent(inputs, state)
            actions = bandit.sample_action(jax.nn.softmax(lax.stop_gradient(logits), -1), batch.action_uniform[t])
            rewards = bandit.step(batch, t, actions, validate=False)
            following = times[t + 1] if t + 1 < HORIZON else 0.0
            inputs = jnp.concatenate([jax.nn.one_hot(actions, ARMS, dtype=jnp.float64), rewards[:, None],
                                      jnp.full((BATCH, 1), following)], -1)
            played.append((actions, rewards, logits, values))
        return rl2.Rollout(*(jnp.stack(column) for column in zip(*played)))

    with jax.enable_x64(True):
        batch = bandit.from_numpy(config.task.sample(np.random.default_rng(5), BATCH), np.float64)
        graphdef, params = nnx.split(rl2.build_model(config, seed=6))

        def loss(play):
            def of(params):
                played = play(nnx.merge(graphdef, params), batch)
                return rl2.a2c_loss(played, 0.9, 0.05, 0.05)[0], played
            return jax.jit(jax.value_and_grad(of, has_aux=True))(params)

        (want_loss, want), want_grads = loss(trial_loop)
        (got_loss, got), got_grads = loss(lambda agent, batch: rl2.rollout(agent, batch, replay=replay))
        assert np.array_equal(np.asarray(got.actions), np.asarray(want.actions))
        assert len(np.unique(np.asarray(got.actions))) > 1
        assert abs(float(got_loss - want_loss)) < 1e-12
        for a, b in zip(jax.tree.leaves((got, got_grads)), jax.tree.leaves((want, want_grads)), strict=True):
            assert float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float64) - jnp.asarray(b, jnp.float64)))) < 1e-12
        assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(want_grads)) > 1e-3


# ------------------------------------------------------------------------------------------ greedy, trainers
@pytest.mark.torch
@pytest.mark.jax
def test_greedy_play_takes_the_first_arm_on_ties():
    _, _, trl2 = _torch()
    jax, _, jrl2 = _jax()
    config = make_config()
    weights = trl2.init_weights(config, seed=0)
    weights["policy.weight"][:] = 0  # equal logits at every trial
    weights["policy.bias"][:] = 0
    batch = config.task.sample(np.random.default_rng(0), BATCH)
    with jax.enable_x64(True):
        for module in (trl2, jrl2):
            played = module.play(config, weights, batch, greedy=True)
            assert not np.any(played["actions"]) and played["actions"].dtype == np.int64
            np.testing.assert_allclose(played["probabilities"], 1 / ARMS, rtol=1e-15)


@pytest.mark.jax
def test_jax_play_of_every_batch_size_shares_one_program_and_matches_one_call():
    """JAX only (PyTorch compiles nothing): 3, 1,000 and 2,500 episodes are played in padded pieces of 1,000 by one
    compiled rollout, and give what one call on all of them gives (float64: the same to rounding)."""
    jax, bandit, rl2 = _jax()
    config = make_config()
    weights = rl2.init_weights(config, seed=1)
    with jax.enable_x64(True):
        params = rl2.canonical_to_state(rl2._abstract_split(config)[1], weights)
        program = rl2._compiled_play(config, False)
        batches = {size: config.task.sample(np.random.default_rng(size), size) for size in (3, 1_000, 2_500)}
        whole = {size: rl2._as_numpy(program(params, bandit.from_numpy(batch, np.float64)))
                 for size, batch in batches.items()}
        program.clear_cache()  # the references compiled a program per size
        for size, batch in batches.items():
            played = rl2.play(config, weights, batch)
            for name, value in whole[size].items():
                assert played[name].shape == value.shape, name
                np.testing.assert_allclose(played[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
            np.testing.assert_array_equal(played["actions"], whole[size]["actions"])
        assert program._cache_size() == 1, "a batch size compiled a rollout besides the shared one"
        empty = config.task.sample(np.random.default_rng(0), 2)
        empty = type(empty)(empty.probabilities[:0], empty.reward_uniform[:, :0], empty.action_uniform[:, :0])
        with pytest.raises(ValueError, match="no episodes"):
            rl2.play(config, weights, empty)


@pytest.mark.torch
@pytest.mark.parametrize("task", [BernoulliBanditTask(arms=ARMS, horizon=HORIZON), DependentBanditTask(horizon=HORIZON)],
                         ids=["bandit", "dependent_bandit"])
def test_torch_trainer_runs(task):
    _, _, rl2 = _torch()
    trainer = rl2.make_trainer(make_config("lstm", "float32", task=task))
    metrics = trainer.run(5)
    _check_metrics(metrics, trainer, task.arms)


@pytest.mark.jax
def test_jax_trainer_runs():
    """One compiled call of 5 updates, the batches drawn inside it (gamma draws of the independent bandit)."""
    jax, _, rl2 = _jax()
    with jax.enable_x64(False):
        trainer = rl2.make_trainer(make_config("gru", "float32"))
        metrics = trainer.run(5)
    _check_metrics(metrics, trainer, ARMS)


def _check_metrics(metrics, trainer, arms: int) -> None:
    assert trainer.step == 5
    assert metrics.loss.shape == (5,) and np.all(np.isfinite(metrics.loss)) and np.all(np.isfinite(metrics.grad_norm))
    assert sorted(metrics.aux) == ["entropy", "reward", "value_loss"]
    for name, values in metrics.aux.items():
        assert values.shape == (5,) and np.all(np.isfinite(values)), name
    assert np.all((metrics.aux["reward"] >= 0) & (metrics.aux["reward"] <= HORIZON))
    assert np.all((metrics.aux["entropy"] > 0) & (metrics.aux["entropy"] <= np.log(arms) + 1e-6))
    weights = trainer.weights()
    assert weights["policy.weight"].shape == (arms, HIDDEN) and weights["value.weight"].shape == (1, HIDDEN)


@pytest.mark.torch
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_trial_of_the_cell_equals_the_sequence_core(cell, dtype):
    """``RL2Agent.forward`` steps its core with the cell functions; the result is the core's own on a length-1
    sequence (two layers, so the layer loop and its state stacking are exercised): the GRU bit for bit, values
    and gradients; the LSTM within rounding (``nn.LSTM`` may take oneDNN's kernel on the CPU)."""
    torch, _, rl2 = _torch()
    from cogmeta.config import ModelConfig

    config = make_config(cell, dtype)
    config = RunConfig(task=config.task, model=ModelConfig(family="rl2", cell=cell, hidden_size=HIDDEN, num_layers=2),
                       train=config.train, rl=config.rl)
    agent = rl2.build_model(config, seed=4)
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(BATCH, ARMS + 2, generator=generator, dtype=torch_dtype)
    state = tuple(torch.randn(2, BATCH, HIDDEN, generator=generator, dtype=torch_dtype) for _ in range(2))
    state = state[0] if cell == "gru" else state

    def through(step):
        agent.zero_grad()
        logits, values, new_state = step()
        hidden = new_state if cell == "gru" else torch.cat(new_state)
        (logits.square().sum() + values.sum() + hidden.sin().sum()).backward()
        return [logits, values, hidden] + [p.grad.clone() for p in agent.parameters()]

    def sequence_core():
        hidden, new_state = agent.core(inputs[None], state)
        return agent.policy(hidden[0]), agent.value(hidden[0])[..., 0], new_state

    cell_results, core_results = through(lambda: agent(inputs, state)), through(sequence_core)
    tolerance = {"float32": 1e-5, "float64": 1e-12}[dtype]
    for ours, theirs in zip(cell_results, core_results):
        if cell == "gru":
            assert torch.equal(ours, theirs)
        else:
            torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance)
