"""The amortized posterior of "learning to infer": a small network maps a query to q(h | d) over two urns.

    x [B, 6] --input: Linear(6 -> H)--> a [B, H]
             --rbf: phi_j = exp(-beta_j (a_j - c_j)^2)--> phi [B, H]     (beta init 0.1, c init 0)
             --output: Linear(H -> 2)--> logits [B, 2]  (hypotheses A, B)

q = softmax(logits); the model's posterior log-odds of B is logits[:, 1] - logits[:, 0]. With H = 1 the
network can only represent a bump of one linear projection of the query: its limited capacity is the
source of the biases the experiments reproduce.

Loss: the exact reverse KL to the true posterior p(h | d), averaged over the batch,

    KL(q || p) = sum_h q_h (log q_h - log p_h),
    log q = z - logsumexp(z),   logsumexp(z) = m + log(exp(z_0 - m) + exp(z_1 - m)),  m = max(z_0, z_1),
    log p = (log sigmoid(-L), log sigmoid(L)),   log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)),

with L the exact log-odds of the query. The paper estimates the gradient of the same objective with a
score-function estimator over 50 samples; with two hypotheses the exact value is cheap. Both frameworks
write these formulas with the same elementary operations (``jax_impl/amortized.py``).

Canonical parameters (torch ``state_dict`` names, shared with JAX): ``input.weight (H, 6)``,
``input.bias (H,)``, ``rbf.beta (H,)``, ``rbf.centre (H,)``, ``output.weight (2, H)``, ``output.bias (2,)``.

Training is the one trainer's (``torch_impl.trainer``): :class:`AmortizedObjective` says what a simulated
participant trains (member = participant: its seed, initial weights and stream of K queries; step k is
query k, loss KL(q || p), plain SGD p + (-lr) g or Adam, no clipping). :func:`train_population` trains S
participants as ONE trainer run of a population model whose parameters carry the participant axis
``[S, ...]`` (batched matmuls, one backward pass per step): the loss is the sum of the participants'
losses and no loss depends on another participant's weights, so each gets exactly its own gradient and
SGD and Adam, elementwise, update each as its own run would. The JAX twin (``jax_impl/amortized.py``)
trains them with ``jax_impl.engine`` (``vmap`` of the member's ``lax.scan``); docs/framework-differences.md#populations
gives the measurements behind each choice.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from cogmeta.config import RunConfig
from cogmeta.contract import Checkpoint
from cogmeta.experiments.amortized_spec import (
    BETA_INIT,
    CENTRE_INIT,
    PARAMETER_NAMES,
    QUERY_FEATURES,
    PopulationRun,
    check_hidden,
    check_queries,
    train_config,
    validate_weights,
)
from cogmeta.tasks.urn import UrnQueries, UrnQueryDistribution
from torch_impl.numerics import configure, resolve_dtype
from torch_impl.trainer import Trainer, default_member
from torch_impl.urn_samplers import sample_queries, seed_generator


class RBF(nn.Module):
    """``[B, H]`` -> ``[B, H]``: exp(-beta (a - centre)^2), one learned width and centre per unit."""

    def __init__(self, hidden: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.beta = nn.Parameter(torch.full((hidden,), BETA_INIT, dtype=dtype))
        self.centre = nn.Parameter(torch.full((hidden,), CENTRE_INIT, dtype=dtype))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.beta * (a - self.centre) ** 2)


class AmortizedPosterior(nn.Module):
    """``[B, 6]`` queries -> ``[B, 2]`` logits of (A, B). Linear weights use torch's default init."""

    def __init__(self, hidden: int = 1, dtype: torch.dtype = torch.float32):
        super().__init__()
        hidden = check_hidden(hidden)
        self.input = nn.Linear(QUERY_FEATURES, hidden, dtype=dtype)
        self.rbf = RBF(hidden, dtype=dtype)
        self.output = nn.Linear(hidden, 2, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != QUERY_FEATURES:
            raise ValueError(f"queries must have shape [..., {QUERY_FEATURES}], got {tuple(x.shape)}")
        return self.output(self.rbf(self.input(x)))


def model_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` logits -> ``[...]`` log q(B) - log q(A)."""
    return logits[..., 1] - logits[..., 0]


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|)), stable for any x."""
    return torch.minimum(x, torch.zeros_like(x)) - torch.log1p(torch.exp(-torch.abs(x)))


def kl_divergence(logits: torch.Tensor, target_log_odds: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per query: ``logits [B, 2]``, ``target_log_odds [B]`` -> ``[B]`` nats."""
    if logits.shape[-1] != 2 or logits.shape[:-1] != target_log_odds.shape:
        raise ValueError(f"logits [B, 2] and target_log_odds [B] do not match: {tuple(logits.shape)}, "
                         f"{tuple(target_log_odds.shape)}")
    m = torch.maximum(logits[..., 0], logits[..., 1])
    lse = m + torch.log(torch.exp(logits[..., 0] - m) + torch.exp(logits[..., 1] - m))
    log_q = logits - lse[..., None]
    log_p = torch.stack([log_sigmoid(-target_log_odds), log_sigmoid(target_log_odds)], dim=-1)
    return torch.sum(torch.exp(log_q) * (log_q - log_p), dim=-1)


def kl_loss(logits: torch.Tensor, target_log_odds: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(q || p): ``logits [B, 2]``, ``target_log_odds [B]`` -> scalar."""
    return torch.mean(kl_divergence(logits, target_log_odds))


def get_weights(model: AmortizedPosterior) -> dict[str, np.ndarray]:
    """Canonical weights (copies) as numpy arrays."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def set_weights(model: AmortizedPosterior, weights: Mapping[str, np.ndarray]) -> AmortizedPosterior:
    """Copy canonical weights into ``model`` (validated: names, shapes, finiteness); returns the model."""
    hidden = model.rbf.beta.shape[0]
    validate_weights(weights, hidden)
    dtype = model.rbf.beta.dtype
    model.load_state_dict({name: torch.as_tensor(np.asarray(value)).to(dtype) for name, value in weights.items()})
    return model



class AmortizedObjective:
    """Simulated participants learning to infer (``torch_impl.trainer.Objective``), one per seed.

    Participant ``seeds[s]`` starts from ``weights[s]`` (default: an :class:`AmortizedPosterior` built after
    ``torch.manual_seed(seed)``) and its step k trains on query k of its own stream, ``inputs[s, k]`` with
    exact log-odds ``log_odds[s, k]``: loss = KL(q || p) of that one query (:func:`kl_loss`).

    Args:
        inputs: training queries ``[S, K, 6]`` (numpy; cast to ``dtype``); K is the number of steps.
        log_odds: their exact posterior log-odds ``[S, K]``.
        hidden: H, the RBF units.
        learning_rate: SGD's (or Adam's) constant learning rate.
        optimizer: "sgd" (the paper's) or "adam" (torch's defaults).
        dtype: "float32" or "float64".
        seeds: the S participants' seeds (default 0 .. S-1).
        weights: initial canonical weights ``[S, ...]`` instead of fresh ones (e.g. the same in both frameworks).
    """

    def __init__(self, inputs: np.ndarray, log_odds: np.ndarray, *, hidden: int, learning_rate: float,
                 optimizer: str = "sgd", dtype: str = "float32", seeds: Sequence[int] | None = None,
                 weights: Mapping[str, np.ndarray] | None = None):
        self.seeds = check_queries(inputs, log_odds, seeds)
        self.hidden = check_hidden(hidden)
        self.train = train_config(np.shape(inputs)[1], learning_rate, optimizer, dtype)
        self.dtype = resolve_dtype(dtype)
        if weights is not None:
            validate_weights(weights, self.hidden, population=True)
            if np.shape(weights["input.bias"])[0] != len(self.seeds):
                raise ValueError(f"initial weights hold {np.shape(weights['input.bias'])[0]} participants, the training "
                                 f"queries {len(self.seeds)}")
        self.weights = weights
        self.inputs = torch.as_tensor(np.asarray(inputs)).to(self.dtype)
        self.log_odds = torch.as_tensor(np.asarray(log_odds)).to(self.dtype)
        self._index = {seed: s for s, seed in enumerate(self.seeds)}

    def index(self, seed: int) -> int:
        """Participant ``seed``'s row in the queries and weights."""
        if int(seed) not in self._index:
            raise ValueError(f"seed {seed} is not one of this objective's participants {list(self.seeds)}")
        return self._index[int(seed)]

    def init(self, seed: int) -> AmortizedPosterior:
        """Participant ``seed``'s model with its initial weights."""
        s = self.index(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = AmortizedPosterior(self.hidden, dtype=self.dtype)
        return model if self.weights is None else set_weights(model, {n: w[s] for n, w in self.weights.items()})

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        """``{seed, learning_rate, inputs [K, 6], log_odds [K]}``: the participant and its query stream."""
        s = self.index(seed)
        return default_member(self.train, seed, learning_rate, inputs=self.inputs[s], log_odds=self.log_odds[s])

    def sample(self, step: int, member: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Query ``step`` of the participant: ``(inputs [1, 6], log_odds [1])``."""
        return member["inputs"][step : step + 1], member["log_odds"][step : step + 1]

    def loss(self, model: AmortizedPosterior, batch, step: int, member: dict) -> tuple[torch.Tensor, dict]:
        x, target = batch
        return kl_loss(model(x), target), {}


def sample_training_queries(distributions: Sequence[UrnQueryDistribution], seeds: Sequence[int], steps: int,
                            dtype: str = "float32") -> UrnQueries:
    """Training queries ``[S, steps, ...]`` (numpy): query k of a participant comes from distribution k mod D.

    Participant ``seed`` draws distribution j's queries from ``seed_generator`` of ``(seed, j)``.
    """
    per_part = math.ceil(steps / len(distributions))
    rows = []
    for seed in seeds:
        parts = [sample_queries(spec, seed_generator(int(seed), j), per_part, resolve_dtype(dtype))
                 for j, spec in enumerate(distributions)]
        rows.append([np.stack([q[f].numpy() for q in parts], axis=1).reshape((-1,) + tuple(parts[0][f].shape[1:]))[:steps]
                     for f in range(len(UrnQueries._fields))])
    return UrnQueries(*(np.stack([row[f] for row in rows]) for f in range(len(UrnQueries._fields))))


def training_queries(config: RunConfig) -> UrnQueries:
    """A run's whole query stream ``[1, train.steps, ...]`` (numpy): ``urn_queries`` draws it with
    :func:`sample_training_queries` for the run's seed, ``urn_study`` takes its participant's block (numpy)."""
    task, train = config.task, config.train
    if task.name == "urn_study":
        queries, _ = task.queries(train.seed)
        return UrnQueries(*(np.asarray(value)[None] for value in queries))
    return sample_training_queries([task.distribution()], [train.seed], train.steps, train.dtype)


def make_trainer(config: RunConfig, checkpoint: Checkpoint | None = None) -> Trainer:
    """The one trainer on one participant of ``config`` (an ``amortized`` run: :func:`training_queries`, its
    initial weights from ``task.participant_seed``) at ``config.torch.threads`` threads, ``train.log_every``
    queries per call, resumed from ``checkpoint`` (either framework's) if given."""
    configure(config.torch.threads)
    train, seed = config.train, config.task.participant_seed(config.train.seed)
    queries = training_queries(config)
    objective = AmortizedObjective(queries.inputs, queries.log_odds, hidden=config.model.hidden_size,
                                   learning_rate=train.learning_rate, optimizer=train.optimizer, dtype=train.dtype,
                                   seeds=[seed])
    return Trainer(objective, checkpoint, seed=seed, steps_per_call=train.log_every)


def train_population(objective: AmortizedObjective) -> PopulationRun:
    """Train every participant of ``objective`` for ``train.steps`` steps, as ONE run of the one trainer.

    The run's model holds the S participants' parameters stacked ``[S, ...]``; its loss at step k is the sum
    of the participants' KLs on their own query k (each participant's gradient is its own, see the module
    docstring). A participant whose loss or gradient becomes non-finite stops there, as a run of its own
    would: the trainer applies no update at that step; the participant keeps its weights of then (the last
    good ones) and the others resume the run without it, from the trainer's checkpoint (parameters and
    optimizer moments sliced to them; resuming is bit-exact).
    """
    total, count = objective.train.steps, len(objective.seeds)
    rows = np.arange(count)  # the participants still training, in the order of the stacked model
    initial = [get_weights(objective.init(seed)) for seed in objective.seeds]
    weights = {name: np.stack([w[name] for w in initial]) for name in PARAMETER_NAMES}
    final, steps, stopped, checkpoint = {n: w.copy() for n, w in weights.items()}, np.zeros(count, int), np.zeros(count, bool), None
    while len(rows):
        population = _PopulationObjective(objective, rows, weights)
        trainer = Trainer(population, checkpoint)
        trainer.run(total - trainer.step)
        steps[rows] = trainer.step
        saved = trainer.checkpoint()
        bad = np.zeros(len(rows), bool) if trainer.step == total else population.non_finite(trainer.model, trainer.step)
        for name in PARAMETER_NAMES:
            final[name][rows] = saved.params[name]
        if not bad.any():
            break
        stopped[rows[bad]], keep, rows = True, ~bad, rows[~bad]
        weights = {name: value[keep] for name, value in saved.params.items()}
        checkpoint = Checkpoint(saved.step, weights, {n: m[keep] for n, m in saved.exp_avg.items()},
                                {n: v[keep] for n, v in saved.exp_avg_sq.items()}, saved.framework)
    return PopulationRun(final, steps, stopped)


def predict_log_odds(weights: Mapping[str, np.ndarray], inputs: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Model log-odds ``[S, Q]`` (float64) of ``weights [S, ...]`` on ``inputs [S, Q, 6]`` (or shared ``[Q, 6]``)."""
    model = _Population(weights, resolve_dtype(dtype))
    x = torch.as_tensor(np.asarray(inputs)).to(resolve_dtype(dtype))
    if x.ndim == 2:
        x = x.expand(model.input.bias.shape[0], *x.shape)
    with torch.no_grad():
        return model_log_odds(model(x)).numpy().astype(np.float64)


class _Population(nn.Module):
    """S participants' :class:`AmortizedPosterior` as one module: canonical names, parameters ``[S, ...]``.

    ``forward(x [S, B, 6]) -> [S, B, 2]``, written with batched matmuls: ``torch.func.vmap`` over
    ``functional_call`` (the engine's ``vmap`` strategy) costs ~4 ms per step at S = 20 against ~0.3 ms
    here, its per-call overhead dominating for a model this small.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], dtype: torch.dtype):
        super().__init__()
        validate_weights(weights, int(np.shape(weights["rbf.beta"])[1]), population=True)
        for layer in ("input", "rbf", "output"):
            self.add_module(layer, nn.Module())
        for name in PARAMETER_NAMES:
            layer, tensor = name.split(".")
            value = torch.as_tensor(np.array(weights[name])).to(dtype)
            getattr(self, layer).register_parameter(tensor, nn.Parameter(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.matmul(x, self.input.weight.transpose(1, 2)) + self.input.bias[:, None, :]
        phi = torch.exp(-self.rbf.beta[:, None, :] * (a - self.rbf.centre[:, None, :]) ** 2)
        return torch.matmul(phi, self.output.weight.transpose(1, 2)) + self.output.bias[:, None, :]


class _PopulationObjective:
    """Participants ``rows`` of an :class:`AmortizedObjective` as one objective: model :class:`_Population`
    from ``weights [S', ...]``, batch k = their queries k ``([S', 1, 6], [S', 1])``, loss = the sum of their KLs."""

    def __init__(self, objective: AmortizedObjective, rows: np.ndarray, weights: Mapping[str, np.ndarray]):
        self.train, self.dtype, self.weights = objective.train, objective.dtype, weights
        index = torch.as_tensor(rows)
        self.inputs, self.log_odds = objective.inputs[index], objective.log_odds[index]

    def init(self, seed: int) -> _Population:
        del seed  # every participant has its own seed (AmortizedObjective.init made ``weights``)
        return _Population(self.weights, self.dtype)

    def member(self, seed: int, learning_rate: float | None = None) -> dict:
        return default_member(self.train, seed, learning_rate)

    def sample(self, step: int, member: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[:, step : step + 1], self.log_odds[:, step : step + 1]

    def loss(self, model: _Population, batch, step: int, member: dict) -> tuple[torch.Tensor, dict]:
        x, target = batch
        return kl_divergence(model(x)[:, 0], target[:, 0]).sum(), {}

    def non_finite(self, model: _Population, step: int) -> np.ndarray:
        """``[S']`` bool: the participants whose loss or gradient norm at ``step`` is non-finite.

        If each is finite but the population's norm overflowed, the one with the largest norm (the one a
        run of its own would stop soon after).
        """
        x, target = self.sample(step, {})
        with torch.enable_grad():
            losses = kl_divergence(model(x)[:, 0], target[:, 0])
            grads = torch.autograd.grad(losses.sum(), list(model.parameters()))
        norms = torch.sqrt(sum(torch.sum(g.reshape(len(losses), -1) ** 2, dim=1) for g in grads))
        bad = ~(torch.isfinite(losses.detach()) & torch.isfinite(norms)).numpy()
        return bad if bad.any() else np.arange(len(bad)) == int(torch.argmax(norms))
