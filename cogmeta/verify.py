"""``cogmeta verify``: train one config in PyTorch and in JAX from identical inputs and say whether they agree.

Both frameworks get the same inputs, drawn once in numpy (never by a framework's RNG):

- canonical initial weights theta_0 (every tensor U(-1/sqrt(H), 1/sqrt(H)), torch's default init of the GRU/LSTM
  and of the H -> O head, from ``np.random.default_rng((seed, VERIFY_STREAM))``), cast to each dtype;
- N training batches of observations ``[T, B, 1]`` from the task's numpy reference sampler;
- K = N synthetic gradients for the optimizer rung (global norm 2c and c/2 alternately when clipping at c);
- held-out observations ``[T, M, 1]`` (``cogmeta.evaluation.held_out_observations``).

The config is trained for N steps with its schedule compressed to N steps (``train.steps = N``, so cosine
decays to its final fraction within the check), in float64 and in the config's dtype, on each device kind
present in both frameworks (cpu; gpu when both have one). The twins' measurements (``<backend>_impl/verify.py``)
are compared under the parity suite's rule and tolerances (``cogmeta.tolerances``), per rung of the ladder

    cell -> model forward -> loss -> gradients -> optimizer update -> one step -> N steps -> held-out forward

(the rungs below "one step" only with ``layers=True``); with a run folder's weights also their predictions
and the evaluation figures (``cogmeta.evaluation.evaluate``) in both frameworks. The normalized error of a
tensor is max|jax - torch| / max(max|torch|, 1e-3); per step t of the trajectory the report keeps it for the
parameters (max over tensors), the loss and the gradient norm.

Covered model families: the tutorial meta-learners (GRU and LSTM, any depth and width, every registered task), the
RL² agents and the meta seq2seq learners (run configs of the ``rl2`` and ``seq2seq`` families, wrapped by
``cogmeta.verify_registered``: identical bandit uniforms and action draws, identical dropout masks), the bounded
GRU of the heuristics study and the amortized posterior of learning-to-infer (``cogmeta.verify_families``: their
configs draw their own identical inputs, e.g. the bounded GRU's injected weight noise). The twins' ladder
values are nested ``{rung: {quantity: {tensor: array}}}``, so each family names its own quantities per rung.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cogmeta.config import RunConfig
from cogmeta.tolerances import FLOOR, compare, normalized_error, tolerance
from cogmeta.verify_families import AmortizedVerify, BoundedGRUVerify, scaled_gradients, uniform_weights
from cogmeta.verify_registered import RL2Verify, Seq2SeqVerify, registered_verify

#: The rungs of the ladder, lowest first; a failing check is reported at the first rung where it occurs.
LADDER = ("cell", "model forward", "loss", "gradients", "optimizer update", "one step", "N steps", "held-out forward",
          "run weights")
#: The parity suite's tolerances hold for runs of at most this many steps (``cogmeta.tolerances``).
MAX_STEPS = 1000
DEFAULT_STEPS = 20
DEFAULT_HELDOUT_TASKS = 256
DEFAULT_EVAL_TASKS = 2000
#: Second entry of the seed sequence of verify's numpy streams (weights, batches, gradients).
VERIFY_STREAM = 0x5E1F
DEVICE_CHOICES = ("all", "cpu", "gpu")
#: Model families verify covers; anything else is refused with this list.
COVERED = ("the tutorial meta-learners (GRU and LSTM, any depth and width, on every registered task), the RL² agents "
           "(rl2 runs and presets), the meta seq2seq learners (seq2seq runs and presets), the bounded GRU of the "
           "heuristics study (--family bounded-gru) and the amortized posterior of learning-to-infer (--family amortized)")
#: A config verify can check: a tutorial run config or a family config of ``cogmeta.verify_families``.
VerifyConfig = RunConfig | RL2Verify | Seq2SeqVerify | BoundedGRUVerify | AmortizedVerify


@dataclass(frozen=True)
class Check:
    """One comparison: ``quantity`` at rung ``layer`` on ``device`` in ``dtype`` under tolerance ``kind``.

    ``error`` is the worst normalized error over the tensors (and steps) of the quantity; ``detail`` names
    the first tensor that fails, with its worst entry.
    """

    layer: str
    quantity: str
    device: str
    dtype: str
    kind: str
    error: float
    passed: bool
    detail: str = ""


@dataclass
class Report:
    """Everything ``verify`` measured: the checks, the per-step curves and where they were run.

    ``curves`` rows are ``(device, dtype, step, quantity, normalized error)`` with step = 1..N and quantity
    one of ``params``, ``loss``, ``grad_norm``.
    """

    config: VerifyConfig
    steps: int
    devices: list[str]
    dtypes: list[str]
    versions: dict[str, str]
    device_names: dict[str, dict[str, str]]
    skipped_devices: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    curves: list[tuple[str, str, int, str, float]] = field(default_factory=list)
    layers: bool = False
    run: str | None = None
    heldout_tasks: int = DEFAULT_HELDOUT_TASKS

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def first_failure(self) -> Check | None:
        """The failing check on the lowest rung (ties: the first device and dtype checked)."""
        failed = [check for check in self.checks if not check.passed]
        return min(failed, key=lambda c: LADDER.index(c.layer)) if failed else None

    def max_error(self, layer: str | None = None, dtype: str | None = None) -> float:
        """The worst normalized error over the checks of ``layer`` and ``dtype`` (all if None)."""
        errors = [c.error for c in self.checks if (layer is None or c.layer == layer) and (dtype is None or c.dtype == dtype)]
        return max(errors, default=0.0)

    def verdict(self) -> str:
        """One line: PASS, or FAIL with the first disagreeing rung and what disagrees there."""
        where = ", ".join(f"{d} {t}" for d in self.devices for t in self.dtypes)
        if self.passed:
            worst = ", ".join(f"{dtype} {self.max_error(dtype=dtype):.2e}" for dtype in self.dtypes)
            return (f"verdict: PASS - PyTorch and JAX agree within the parity suite's tolerances on {where} "
                    f"(worst normalized error: {worst})")
        first = self.first_failure()
        hint = "" if self.layers else "; run with --layers to find the lowest rung that disagrees"
        return (f"verdict: FAIL - first disagreeing layer: {_layer_label(first.layer, self.steps)} "
                f"({first.quantity}, {first.device} {first.dtype}: normalized error {first.error:.2e} over the "
                f"{first.kind} tolerance; {first.detail}){hint}")

    def format(self) -> str:
        """The printed report: config, versions, devices, one row per check, the ladder and the verdict."""
        config = self.config
        train = config.train
        if isinstance(config, RunConfig):
            model = config.model
            task = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config.task).items())
            clip = "no clipping" if train.clip_norm is None else f"clip {train.clip_norm:g}"
            described = [
                f"task {config.task.name} ({task})",
                f"model: {model.cell.upper()}, hidden_size {model.hidden_size}, {model.num_layers} layer(s); training: "
                f"{train.optimizer} lr {train.learning_rate:g}, {train.schedule} schedule over {self.steps} steps, "
                f"{clip}, batch {train.batch_size}, seed {train.seed}"]
            data = (f"{self.steps} batches of {train.batch_size} tasks and {self.heldout_tasks} held-out tasks from the "
                    f"numpy reference sampler")
        else:
            described = config.header(self.steps)
            data = (f"{self.steps} batches of {train.batch_size} and {self.heldout_tasks} held-out "
                    f"{getattr(config, 'units', 'tasks')} from the numpy reference sampler")
        lines = [
            f"cogmeta verify{' ' + self.run if self.run else ''}: {described[0]}",
            *described[1:],
            "versions: " + ", ".join(f"{name} {version}" for name, version in self.versions.items()),
            "devices: " + "; ".join(f"{kind}: torch {names['torch']}, jax {names['jax']}"
                                    for kind, names in self.device_names.items())
            + "".join(f"; {kind}: not checked ({why})" for kind, why in self.skipped_devices.items()),
            f"identical inputs: canonical weights drawn once in numpy (seed {train.seed}), {data}",
            "normalized error = max|jax - torch| / max(max|torch|, 1e-3); tolerances: cogmeta.tolerances "
            "(the parity suite's)",
            "",
        ]
        columns = [(d, t) for d in self.devices for t in self.dtypes]
        header = f"{'layer':<17}{'quantity':<28}{'tolerance':<12}" + "".join(f"{d + ' ' + t:>18}" for d, t in columns)
        lines += [header, "-" * len(header)]
        rows: dict[tuple[str, str, str], dict[tuple[str, str], Check]] = {}
        for check in self.checks:
            rows.setdefault((check.layer, check.quantity, check.kind), {})[(check.device, check.dtype)] = check
        for (layer, quantity, kind), cells in sorted(rows.items(), key=lambda item: LADDER.index(item[0][0])):
            text = f"{_layer_label(layer, self.steps):<17}{quantity:<28}{kind:<12}"
            for column in columns:
                check = cells.get(column)
                text += f"{'-':>18}" if check is None else f"{check.error:>13.2e} {'ok' if check.passed else 'FAIL':>4}"
            lines.append(text)
        if self.layers:
            lines += ["", "ladder: " + " -> ".join(
                f"{_layer_label(layer, self.steps)} {'ok' if self._layer_passed(layer) else 'FAIL'}"
                for layer in LADDER if any(c.layer == layer for c in self.checks))]
        lines += ["", self.verdict()]
        return "\n".join(lines)

    def _layer_passed(self, layer: str) -> bool:
        return all(c.passed for c in self.checks if c.layer == layer)

    def checks_csv(self) -> str:
        """CSV of every check: layer, quantity, device, dtype, kind, rtol, atol_scale, normalized_error, passed, detail."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(("layer", "quantity", "device", "dtype", "kind", "rtol", "atol_scale", "normalized_error",
                         "passed", "detail"))
        for c in self.checks:
            rtol, atol_scale = tolerance(c.kind, c.dtype)
            writer.writerow((_layer_label(c.layer, self.steps), c.quantity, c.device, c.dtype, c.kind, rtol, atol_scale,
                             repr(c.error), c.passed, c.detail))
        return buffer.getvalue()

    def curves_csv(self) -> str:
        """Long-format CSV of the per-step normalized differences: device, dtype, step, quantity, normalized_error."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(("device", "dtype", "step", "quantity", "normalized_error"))
        for device, dtype, step, quantity, error in self.curves:
            writer.writerow((device, dtype, step, quantity, repr(float(error))))
        return buffer.getvalue()

    def summary(self) -> dict:
        """The JSON summary written next to the CSVs."""
        first = self.first_failure()
        return {"passed": self.passed, "first_failing_layer": None if first is None else _layer_label(first.layer, self.steps),
                "family": _family(self.config), "steps": self.steps, "devices": self.devices, "skipped_devices": self.skipped_devices,
                "dtypes": self.dtypes, "versions": self.versions, "device_names": self.device_names, "run": self.run,
                "config": self.config.to_dict(), "max_normalized_error": {
                    dtype: self.max_error(dtype=dtype) for dtype in self.dtypes}}


# ------------------------------------------------------------------------------------------ identical inputs
def initial_weights(config: VerifyConfig) -> dict[str, np.ndarray]:
    """Canonical float64 weights drawn once in numpy: every tensor U(-1/sqrt(H), 1/sqrt(H)) (torch's default
    init of ``nn.GRU``/``nn.LSTM`` and, as fan_in = H, of the head ``nn.Linear(H, O)``), shapes from
    ``cogmeta.weights.parameter_shapes``; a family config draws its own (``cogmeta.verify_families``)."""
    if not isinstance(config, RunConfig):
        return config.initial_weights()
    return uniform_weights(config, np.random.default_rng((config.train.seed, VERIFY_STREAM, 0)))


def training_batches(config: VerifyConfig, steps: int) -> list:
    """``steps`` float64 observation batches ``[T, B, 1]`` from the task's numpy reference sampler (a family
    config: its own batches, dicts of arrays)."""
    if not isinstance(config, RunConfig):
        return config.training_batches(steps)
    rng = np.random.default_rng((config.train.seed, VERIFY_STREAM, 1))
    return [config.task.sample(rng, config.train.batch_size, np.float64).observations for _ in range(steps)]


def synthetic_gradients(config: VerifyConfig, steps: int) -> list[dict[str, np.ndarray]]:
    """``steps`` float64 gradients by canonical name, g ~ N(0, 1) rescaled to global norm 2c on even and c/2 on
    odd steps when clipping at c (so both branches of the clip run), else to norm 1."""
    from cogmeta.weights import parameter_shapes

    if not isinstance(config, RunConfig):
        return config.synthetic_gradients(steps)

    rng = np.random.default_rng((config.train.seed, VERIFY_STREAM, 2))
    return scaled_gradients(parameter_shapes(config), config.train, rng, steps)


# ------------------------------------------------------------------------------------------ the check
def verify(config: VerifyConfig, steps: int = DEFAULT_STEPS, device: str = "all", *, layers: bool = False,
           heldout_tasks: int = DEFAULT_HELDOUT_TASKS, run_weights: Mapping[str, np.ndarray] | None = None,
           eval_tasks: int = DEFAULT_EVAL_TASKS, run: str | None = None) -> Report:
    """Train ``config`` for ``steps`` steps in both frameworks from identical inputs and compare every rung.

    Args:
        config: a tutorial run config, or a family config (``cogmeta.verify_families``: the bounded GRU, the
            amortized posterior); its ``train.steps`` is replaced by ``steps``.
        steps: N, in [1, MAX_STEPS] (the bounded GRU with beta > 0: [1, MAX_KL_STEPS]).
        device: "all" (every device kind both frameworks have), "cpu" or "gpu".
        layers: also run the rungs below training (cell, model forward, loss, gradients, optimizer update).
        heldout_tasks: M, the held-out tasks of the forward comparison.
        run_weights: a run's own weights (in ``config.train.dtype``): also compare their predictions and the
            evaluation figures on ``eval_tasks`` held-out tasks (runs of registered families: a ``RunConfig``).
        run: the run folder, for the report.

    Raises:
        ValueError: N out of range, a device that is absent, a model one framework lacks.
        ImportError: a framework is not installed (the message names the extra).
    """
    from cogmeta import __version__
    from cogmeta.backends import load_module
    from cogmeta.evaluation import held_out_observations

    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps (N) must be a whole number in [1, {MAX_STEPS}] (the parity suite's tolerances hold "
                         f"for at most {MAX_STEPS} steps), got {steps!r}; pass e.g. --steps {DEFAULT_STEPS}")
    limit = None if isinstance(config, RunConfig) else config.max_steps()
    if limit is not None and steps > limit:
        raise ValueError(f"steps (N) must be at most {limit} for the bounded GRU with beta > 0 (got {steps}): its KL "
                         f"amplifies rounding once weights get pruned, so trajectories agree to the parity suite's "
                         f"tolerances only that long (docs/framework-differences.md#kl-amplifies-rounding); lower "
                         f"--steps or check beta 0")
    config = registered_verify(config)
    if run_weights is not None and not (isinstance(config, RunConfig) or hasattr(config, "evaluation_figures")):
        raise ValueError(f"the held-out evaluation of a run's weights is implemented for the meta_learner, rl2 and "
                         f"seq2seq families, not for runs of family {config.family!r}; check the run's config with --config "
                         f"RUN/config.json")
    if isinstance(heldout_tasks, bool) or not isinstance(heldout_tasks, int) or heldout_tasks < 1:
        raise ValueError(f"heldout_tasks must be a whole number >= 1, got {heldout_tasks!r}")
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    twins = {name: load_module(name, "verify") for name in ("torch", "jax")}
    for twin in twins.values():
        twin.check_supported(config)
    devices, skipped = _devices(twins, device)
    config = _with_train(config, steps=steps)
    dtypes = ["float64"] + ([config.train.dtype] if config.train.dtype != "float64" else [])
    versions = {"cogmeta": __version__, "numpy": np.__version__, "python": platform.python_version(),
                **twins["torch"].library_versions(), **twins["jax"].library_versions()}
    report = Report(config, steps, devices, dtypes, versions,
                    {d: {name: twin.device_name(d) for name, twin in twins.items()} for d in devices},
                    skipped, layers=layers, run=run, heldout_tasks=heldout_tasks)
    weights64 = initial_weights(config)
    batches64 = training_batches(config, steps)
    gradients64 = synthetic_gradients(config, steps) if layers else []
    heldout64 = (held_out_observations(config.task, heldout_tasks) if isinstance(config, RunConfig)
                 else config.held_out(heldout_tasks))
    for device_kind in devices:
        for dtype in dtypes:
            variant = _with_train(config, dtype=dtype)
            weights, batches = _cast(weights64, dtype), [_cast(b, dtype) for b in batches64]
            scope = _Scope(report, device_kind, dtype)
            if layers:
                first = batches[0] if isinstance(config, RunConfig) or config.family != "amortized" else _cast(
                    _concatenate(batches64), dtype)  # the amortized rungs see every training query at once
                _ladder(scope, twins, variant, weights, first, [_cast(g, dtype) for g in gradients64])
            _training(scope, twins, variant, weights, batches, _cast(heldout64, dtype))
    if run_weights is not None:
        _run_weights(report, twins, config, run_weights, heldout64, eval_tasks)
    return report


def _with_train(config: VerifyConfig, **changes) -> VerifyConfig:
    if isinstance(config, RunConfig):
        return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
    return config.with_train(**changes)


def _family(config: VerifyConfig) -> str:
    return "tutorial" if isinstance(config, RunConfig) else config.family


def _cast(tree, dtype: str):
    """Every floating array of a (nested dict of) array(s) in ``dtype``; integer and boolean arrays (token ids,
    lengths, flags) as they are."""
    if isinstance(tree, Mapping):
        return {name: _cast(value, dtype) for name, value in tree.items()}
    array = np.asarray(tree)
    return array.astype(dtype) if array.dtype.kind == "f" else array


def _concatenate(batches: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches of one query each -> one batch of all of them (along the leading axis)."""
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


class _Scope:
    """Appends checks of one (device, dtype) to a report."""

    def __init__(self, report: Report, device: str, dtype: str):
        self.report, self.device, self.dtype = report, device, dtype

    def check(self, layer: str, quantity: str, pairs: Sequence[tuple[str, object, object]], kind: str,
              lr: float | None = None) -> None:
        """Compare ``(name, jax, torch)`` pairs under ``kind``; one check with the worst error."""
        worst, failures = 0.0, []
        for name, jax_value, torch_value in pairs:
            outcome = compare(jax_value, torch_value, kind, self.dtype, lr=lr)
            worst = max(worst, outcome.error)
            if not outcome.passed:
                failures.append(f"{name}: {outcome.detail}")
        detail = "" if not failures else failures[0] + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
        self.report.checks.append(Check(layer, quantity, self.device, self.dtype, kind, worst, not failures, detail))


def _devices(twins: Mapping, requested: str) -> tuple[list[str], dict[str, str]]:
    """The device kinds to check and the ones skipped (with why); an absent requested kind is a ValueError."""
    kinds = {name: twin.device_kinds() for name, twin in twins.items()}
    skipped, devices = {}, []
    for kind in ("cpu", "gpu"):
        missing = [name for name, have in kinds.items() if kind not in have]
        if requested in ("all", kind) and not missing:
            devices.append(kind)
        elif requested == kind:
            raise ValueError(f"--device {kind}: {' and '.join(missing)} see(s) no {kind} here (torch: "
                             f"{', '.join(kinds['torch'])}; jax: {', '.join(kinds['jax'])}); use --device cpu or all")
        elif requested == "all" and kind == "gpu":
            skipped[kind] = ("neither framework sees one" if len(missing) == 2 else f"{missing[0]} sees none")
    return devices, skipped


def _pairs(prefix: str, jax_values: Mapping[str, np.ndarray], torch_values: Mapping[str, np.ndarray]):
    if set(jax_values) != set(torch_values):
        raise RuntimeError(f"{prefix}: the frameworks return different tensors: only jax "
                           f"{sorted(set(jax_values) - set(torch_values))}, only torch "
                           f"{sorted(set(torch_values) - set(jax_values))}")
    return [(f"{prefix}{name}", jax_values[name], torch_values[name]) for name in torch_values]


def _select(values: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix):]: value for name, value in values.items() if name.startswith(prefix)}


def _ladder(scope: _Scope, twins: Mapping, config: VerifyConfig, weights, observations, gradients) -> None:
    """The rungs below training: cell, model forward, loss, gradients (batch 1), optimizer update (K = N).

    The twins return ``{rung: {quantity: {tensor: array}}}`` for the rungs cell, model forward, loss and
    gradients (each family names its quantities); gradients are compared under ``grad``, the rest under ``forward``.
    """
    values = {name: twin.ladder_values(config, weights, observations, scope.device) for name, twin in twins.items()}
    jax_v, torch_v = values["jax"], values["torch"]
    for layer in ("cell", "model forward", "loss", "gradients"):
        for quantity, tensors in torch_v[layer].items():
            scope.check(layer, quantity, _pairs("", jax_v[layer].get(quantity, {}), tensors),
                        "grad" if layer == "gradients" else "forward")
    opt = {name: twin.optimizer_values(config, weights, gradients, scope.device) for name, twin in twins.items()}
    jax_o, torch_o = opt["jax"], opt["torch"]
    k = len(gradients)
    scope.check("optimizer update", "learning rates", [("learning_rate", jax_o["learning_rate"],
                                                        torch_o["learning_rate"])], "forward")
    scope.check("optimizer update", "gradient norms", [("grad_norm", jax_o["grad_norm"], torch_o["grad_norm"])], "grad")
    scope.check("optimizer update", f"params after {k} update(s)",
                _pairs("param ", _select(jax_o, "param "), _select(torch_o, "param ")), "optim_steps")
    moments = _pairs("exp_avg ", _select(jax_o, "exp_avg "), _select(torch_o, "exp_avg "))
    moments += _pairs("exp_avg_sq ", _select(jax_o, "exp_avg_sq "), _select(torch_o, "exp_avg_sq "))
    scope.check("optimizer update", "Adam moments", moments, "optim_steps")


def _training(scope: _Scope, twins: Mapping, config: RunConfig, weights, batches, heldout) -> None:
    """One step and N steps of the one trainer from ``weights`` on ``batches``; held-out forward after them."""
    runs = {name: twin.train_trajectory(config, weights, batches, scope.device) for name, twin in twins.items()}
    jax_r, torch_r = runs["jax"], runs["torch"]
    steps = min(len(jax_r["loss"]), len(torch_r["loss"]))
    if len(jax_r["loss"]) != len(torch_r["loss"]):
        scope.report.checks.append(Check("N steps", "steps trained", scope.device, scope.dtype, "train_steps",
                                         math.inf, False, f"jax trained {len(jax_r['loss'])} steps, torch "
                                         f"{len(torch_r['loss'])} (a non-finite loss or gradient stopped one)"))
    if steps == 0:
        return
    peak = config.train.learning_rate
    floor = getattr(config, "loss_floor", None)  # the amortized KL: relative only above it (verify_families)
    jax_loss, torch_loss = jax_r["loss"][:steps], torch_r["loss"][:steps]
    if floor is None or abs(torch_loss[0]) >= floor:
        scope.check("one step", "loss", [("loss", jax_loss[0], torch_loss[0])], "forward")
    scope.check("one step", "gradient norm", [("grad_norm", jax_r["grad_norm"][0], torch_r["grad_norm"][0])], "grad")
    scope.check("one step", "params", _pairs("param ", jax_r["params"][0], torch_r["params"][0]), "train_step", lr=peak)
    if floor is None:
        scope.check("N steps", "loss curve", [("loss", jax_loss, torch_loss)], "loss_curve")
    else:
        keep = np.abs(torch_loss) >= floor
        scope.check("N steps", f"loss curve where >= {floor:g}", [("loss", jax_loss[keep], torch_loss[keep])],
                    "loss_curve")
        scope.check("N steps", "whole loss curve", [("loss", jax_loss, torch_loss)], "optim_steps")
    scope.check("N steps", "gradient norms", [("grad_norm", jax_r["grad_norm"][:steps], torch_r["grad_norm"][:steps])],
                "grad")
    scope.check("N steps", "learning rates", [("learning_rate", jax_r["learning_rate"][:steps],
                                               torch_r["learning_rate"][:steps])], "forward")
    aux = _pairs("", jax_r.get("aux", {}), torch_r.get("aux", {}))  # the objective's extra metrics (NLL, KL)
    for name, jax_curve, torch_curve in aux:
        scope.check("one step", f"{name} (loss term)", [(name, jax_curve[0], torch_curve[0])], "forward")
        scope.check("N steps", f"{name} curve", [(name, jax_curve[:steps], torch_curve[:steps])], "loss_curve")
    per_step = [_pairs(f"step {t + 1} param ", jax_r["params"][t], torch_r["params"][t]) for t in range(steps)]
    scope.check("N steps", "params, every step", [pair for pairs in per_step for pair in pairs], "train_steps")
    for t in range(steps):
        for quantity, error in (("params", max(normalized_error(a, b) for _, a, b in per_step[t])),
                                ("loss", normalized_error(jax_r["loss"][t], torch_r["loss"][t])),
                                ("grad_norm", normalized_error(jax_r["grad_norm"][t], torch_r["grad_norm"][t]))):
            scope.report.curves.append((scope.device, scope.dtype, t + 1, quantity, error))
    same = torch_r["params"][steps - 1]
    outputs = {name: twin.predictive(config, same, heldout, scope.device) for name, twin in twins.items()}
    scope.check("held-out forward", "same weights", _pairs("", outputs["jax"], outputs["torch"]), "forward")
    own = {name: twins[name].predictive(config, runs[name]["params"][steps - 1], heldout, scope.device)
           for name in twins}
    scope.check("held-out forward", "each its trained weights", _pairs("", own["jax"], own["torch"]), "train_steps")


def _run_weights(report: Report, twins: Mapping, config: VerifyConfig, weights, heldout64, eval_tasks: int) -> None:
    """A run's own weights: predictions on every device and the evaluation figures, in the run's dtype."""
    from cogmeta.evaluation import evaluate

    dtype = config.train.dtype
    for device_kind in report.devices:
        scope = _Scope(report, device_kind, dtype)
        outputs = {name: twin.predictive(config, weights, _cast(heldout64, dtype), device_kind)
                   for name, twin in twins.items()}
        scope.check("run weights", "predictions", _pairs("", outputs["jax"], outputs["torch"]), "forward")
    scope = _Scope(report, report.devices[0], dtype)
    if not isinstance(config, RunConfig):  # a registered family: its own evaluation (verify_registered)
        figures = {name: config.evaluation_figures(weights, name, eval_tasks) for name in twins}
        for quantity, jax_value, torch_value in _pairs("eval: ", figures["jax"], figures["torch"]):
            scope.check("run weights", quantity, [(quantity, jax_value, torch_value)], "forward")
        return
    figures = {name: evaluate(config, weights, name, num_tasks=eval_tasks) for name in twins}
    for quantity, attribute in (("evaluation KL per t", "kl"), ("evaluation model NLL per t", "model_nll")):
        scope.check("run weights", quantity, [(attribute, getattr(figures["jax"], attribute),
                                               getattr(figures["torch"], attribute))], "forward")
    scope.check("run weights", "evaluation mean KL", [("mean KL", np.asarray(figures["jax"].mean_kl),
                                                      np.asarray(figures["torch"].mean_kl))], "forward")


def _layer_label(layer: str, steps: int) -> str:
    return f"{steps} steps" if layer == "N steps" else layer


# ------------------------------------------------------------------------------------------ run folders
def load_run(path: str | Path) -> tuple[RunConfig, dict[str, np.ndarray]]:
    """The config and final weights of a run folder (any registered model family), refusing folders verify cannot check.

    Raises:
        FileNotFoundError: not a finished run folder.
        ValueError: a model family verify does not cover (e.g. a meta-seq2seq run), or a weights file written in
            another format (another cogmeta version), with what to do.
    """
    from cogmeta import __version__
    from cogmeta.runs import RunDir
    from cogmeta.weights import read_safetensors

    run = RunDir.at(path)
    run.require_run()
    try:
        data = json.loads(run.config.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"run config {run.config} is not valid JSON ({error}); restore it or train again") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind is not None:
        raise ValueError(f"{run.root} is a {kind!r} run; cogmeta verify covers {COVERED} only (no checks of that "
                         f"model family exist yet); its parity is tested by the parity suite (parity_tests/)")
    config = RunConfig.load(run.config)
    if config.model.family == "seq2seq":  # its weights files also carry both vocabularies
        from cogmeta.experiments.meta_seq2seq import FORMAT, load_weights
    else:
        from cogmeta.weights import FORMAT, load_weights
    _, metadata = read_safetensors(run.weights)
    found = metadata.get("format")
    if found != FORMAT:
        raise ValueError(f"{run.weights} has weights format {found!r}, but this cogmeta ({__version__}) reads "
                         f"{FORMAT!r}: the run folder was written by another cogmeta version (or is not a cogmeta run); "
                         f"verify it with the cogmeta version that wrote it, or train it again with this one")
    return config, load_weights(run.weights, config)


def load_config_file(path: str | Path) -> RunConfig:
    """A run config from a JSON file (``config.json`` of a run, or written by hand: missing keys take defaults)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file; give a config.json (e.g. a run folder's)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"--config {path} is not valid JSON ({error})") from None
    if isinstance(data, dict) and "kind" in data:
        raise ValueError(f"--config {path} describes a {data['kind']!r} run; cogmeta verify covers {COVERED} only")
    try:
        return RunConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"--config {path}: {error}") from None


# ------------------------------------------------------------------------------------------ outputs
def write_outputs(report: Report, out: str | Path, figure: bool = True) -> list[Path]:
    """Write ``report.txt``, ``checks.csv``, ``curves.csv``, ``summary.json`` and (``figure``) ``curves.png`` into ``out``."""
    from cogmeta.io import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("report.txt", report.format() + "\n"), ("checks.csv", report.checks_csv()),
                       ("curves.csv", report.curves_csv())):
        atomic_write_text(out / name, text)
        written.append(out / name)
    atomic_write_json(out / "summary.json", report.summary())
    written.append(out / "summary.json")
    if figure and report.curves:
        written.append(write_figure(report, out / "curves.png"))
    return written


def write_figure(report: Report, path: Path) -> Path:
    """Per-step normalized differences of parameters, loss and gradient norm (log scale), one line per
    device and dtype, with the N-step parameter tolerance of each dtype dashed."""
    from cogmeta.figures import _pyplot, figure_grid

    plt = _pyplot()
    fig, axes = figure_grid(1, 3, (13, 3.8), suptitle=True)
    titles = {"params": "parameters (max over tensors)", "loss": "training loss", "grad_norm": "gradient norm"}
    floor = 1e-18  # exact agreement is drawn here on the log scale
    for ax, (quantity, title) in zip(axes, titles.items()):
        for index, (device, dtype) in enumerate((d, t) for d in report.devices for t in report.dtypes):
            rows = [(s, e) for d, t, s, q, e in report.curves if (d, t, q) == (device, dtype, quantity)]
            if rows:
                steps, errors = zip(*rows)
                ax.plot(steps, np.maximum(errors, floor), marker="o", ms=3, color=f"C{index}", label=f"{device} {dtype}")
                if quantity == "params":
                    ax.axhline(tolerance("train_steps", dtype)[1], color=f"C{index}", ls="--", lw=1,
                               label=f"{dtype} tolerance")
        ax.set_yscale("log")
        ax.set_xlabel("training step (exact agreement drawn at 1e-18)" if quantity == "loss" else "training step")
        ax.set_title(title)
    axes[0].set_ylabel(f"max|jax - torch| / max(max|torch|, {FLOOR:g})")
    axes[0].legend(fontsize=8)
    config = report.config
    title = (f"{config.task.name}, {config.model.cell.upper()}-{config.model.hidden_size}"
             if isinstance(config, RunConfig) else config.title())
    fig.suptitle(f"cogmeta verify: {title}, PyTorch vs JAX from identical weights and batches "
                 f"({'PASS' if report.passed else 'FAIL'})")
    from cogmeta.io import atomic_write_with

    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


__all__ = ["COVERED", "Check", "VerifyConfig", "DEFAULT_STEPS", "LADDER", "MAX_STEPS", "Report", "initial_weights", "load_config_file",
           "load_run", "synthetic_gradients", "training_batches", "verify", "write_figure", "write_outputs"]
