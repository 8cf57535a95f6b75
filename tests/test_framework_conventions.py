"""Framework conventions of docs/framework-differences.md that no parity test could see on a CPU.

- matmul precision (#matmul-precision): on the CPU TF32 does not exist, so the numbers cannot show a
  missing ``precision=HIGHEST``; the tests read the compiled program and the source instead, and torch's flags;
- float64 (#float64): JAX makes float32 unless its 64-bit mode is on, and cogmeta refuses to pretend;
- CPU threads (#cpu-threads): torch sets its thread count, JAX can only be checked;
- forward mode through the hand-written reverse pass (#recurrent-reverse-pass) is refused, and the plain
  forward, the documented escape hatch, gives the same derivative as the custom reverse pass;
- ``correctly_rounded_sqrt`` (#sqrt-rounding) equals numpy's correctly rounded float32 ``sqrt``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: jax.numpy / lax functions that contract arrays and therefore take a ``precision``.
CONTRACTIONS = {"matmul", "dot", "einsum", "tensordot", "inner", "vdot", "dot_general", "conv_general_dilated"}


def _dot_generals(jaxpr) -> list:
    """Every ``dot_general`` equation of a jaxpr, including those inside scans, custom rules and pjit calls."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else [value]:
                if hasattr(inner, "eqns"):
                    found += _dot_generals(inner)
                elif hasattr(inner, "jaxpr") and hasattr(inner.jaxpr, "eqns"):
                    found += _dot_generals(inner.jaxpr)
    return found


@pytest.mark.jax
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_jax_matmul_runs_at_highest_precision(cell):
    """The loss and gradient of the tutorial model: every contraction in the program is HIGHEST x HIGHEST."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax import lax

    from cogmeta import GaussianMeanTask, ModelConfig, RunConfig
    from jax_impl.backend import build_model
    from jax_impl.model import sequence_nll

    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(cell=cell, hidden_size=4, num_layers=2))
    graphdef, params = nnx.split(build_model(config))
    # float32 as the model: another test may have switched on jax_enable_x64 (a float64 config does, globally)
    inputs, targets = jnp.ones((7, 3, 2), jnp.float32), jnp.ones((7, 3, 1), jnp.float32)
    loss = lambda params: sequence_nll(nnx.merge(graphdef, params), inputs, targets)
    program = jax.make_jaxpr(jax.value_and_grad(loss))(params)
    dots = _dot_generals(program.jaxpr)
    assert len(dots) >= 6  # forward, input projections, hidden, head, and their reverse passes
    highest = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)
    assert all(eqn.params["precision"] == highest for eqn in dots), [eqn.params["precision"] for eqn in dots]


def test_jax_impl_source_passes_precision_to_every_contraction():
    """No ``@`` between arrays and no jnp/lax contraction without ``precision=`` anywhere in ``jax_impl``."""
    offences = []
    for path in sorted((ROOT / "jax_impl").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                offences.append(f"{path.name}:{node.lineno}: the @ operator (default precision)")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CONTRACTIONS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in {"jnp", "lax", "jax"}
                    and "precision" not in {keyword.arg for keyword in node.keywords}):
                offences.append(f"{path.name}:{node.lineno}: {node.func.value.id}.{node.func.attr} without precision=")
    assert not offences, "\n".join(offences)


@pytest.mark.torch
def test_torch_configure_turns_tf32_off():
    import torch

    from torch_impl.numerics import configure

    torch.backends.cuda.matmul.allow_tf32 = True  # what a user's script or another library may have set
    torch.backends.cudnn.allow_tf32 = True
    configure()
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.jax
def test_jax_float64_needs_the_64_bit_switch():
    import warnings

    import jax
    import jax.numpy as jnp

    from jax_impl.numerics import configure, resolve_dtype

    with jax.enable_x64(False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # JAX warns that it truncated float64 to float32
            assert jnp.zeros(2, dtype=jnp.float64).dtype == jnp.float32
        with pytest.raises(ValueError, match="64-bit"):
            resolve_dtype("float64")
        assert resolve_dtype("float32") == jnp.float32
    with jax.enable_x64(True):
        assert resolve_dtype("float64") == jnp.float64
        assert jnp.zeros(2, dtype=resolve_dtype("float64")).dtype == jnp.float64
    before = jax.config.jax_enable_x64
    try:  # --dtype float64 flips the global flag
        jax.config.update("jax_enable_x64", False)
        configure(dtype="float64")
        assert jax.config.jax_enable_x64 is True
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.mark.jax
def test_jax_thread_count_is_checked_not_set():
    from jax_impl.numerics import configure

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with pytest.raises(ValueError, match=rf"taskset -c 0-{available}"):
        configure(threads=available + 1)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        configure(threads=-1)
    configure(threads=available)  # the count JAX uses anyway: accepted
    configure(threads=0)  # the default: accepted


@pytest.mark.torch
def test_torch_thread_count_is_set():
    import torch

    from torch_impl.numerics import configure

    before = torch.get_num_threads()
    try:
        configure(threads=1)
        assert torch.get_num_threads() == 1
        configure(threads=0)  # 0 keeps whatever is set
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.jax
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_forward_mode_through_the_recurrent_layers_raises(cell):
    """jvp through the custom_vjp layers is refused; the plain forward's jvp equals <custom gradient, tangent>."""
    import jax
    import jax.numpy as jnp

    from jax_impl import recurrent_layers as layers

    T, B, H = 4, 3, 5
    gates = 3 if cell == "gru" else 4
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        projected = jnp.asarray(rng.standard_normal((T, B, gates * H)))
        h0, c0 = jnp.asarray(rng.standard_normal((B, H))), jnp.asarray(rng.standard_normal((B, H)))
        w_hh = jnp.asarray(0.3 * rng.standard_normal((gates * H, H)))
        tangent = jnp.asarray(rng.standard_normal((gates * H, H)))
        b_hh = jnp.zeros(gates * H)
        if cell == "gru":
            custom = lambda w: layers.gru_layer(projected, h0, w, b_hh).sum()
            plain = lambda w: layers._gru_forward(projected, h0, w, b_hh)[0].sum()
        else:
            custom = lambda w: layers.lstm_layer(projected, h0, c0, w, b_hh)[0].sum()
            plain = lambda w: layers._lstm_forward(projected, h0, c0, w, b_hh)[0].sum()
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(custom, (w_hh,), (tangent,))
        _, directional = jax.jvp(plain, (w_hh,), (tangent,))
        np.testing.assert_allclose(float(directional), float(jnp.vdot(jax.grad(custom)(w_hh), tangent)), rtol=1e-12)


@pytest.mark.torch
def test_correctly_rounded_sqrt_matches_numpy():
    """float32: bit-identical to numpy's correctly rounded sqrt (also at 0, subnormals and the largest float);
    float64: torch's own sqrt, at most one ulp from numpy's."""
    import torch

    from torch_impl.paired_comparison_samplers import correctly_rounded_sqrt

    rng = np.random.default_rng(0)
    x32 = np.concatenate([rng.uniform(0, 10, 200_000), rng.lognormal(0, 20, 50_000)]).astype(np.float32)
    x32 = np.concatenate([x32, np.array([0.0, 1e-45, 1e-40, 1.0, 2.0, np.finfo(np.float32).max], np.float32)])
    np.testing.assert_array_equal(correctly_rounded_sqrt(torch.from_numpy(x32)).numpy(), np.sqrt(x32))
    x64 = rng.uniform(0, 10, 100_000)
    got = correctly_rounded_sqrt(torch.from_numpy(x64))
    assert got.dtype == torch.float64 and torch.equal(got, torch.sqrt(torch.from_numpy(x64)))
    assert np.abs(got.numpy().view(np.int64) - np.sqrt(x64).view(np.int64)).max() <= 1


@pytest.mark.jax
@pytest.mark.torch
def test_log_ndtr_float64_is_less_accurate_in_jax():
    """torch's float64 ``special.log_ndtr`` matches scipy to ~1e-15 relative; JAX's does not (jax 0.10.2:
    ~1e-10 relative for moderate z, ~1e-11 below z = -20, gradients ~3e-9), so the bounded GRU's NLL and
    its gradient agree across frameworks only to that, far inside the parity tolerances at moderate z."""
    import jax
    import jax.scipy.special as jsp
    import scipy.special
    import torch

    z = np.concatenate([np.linspace(-40.0, -20.5, 200), np.linspace(-19.0, 5.0, 400)])
    exact = scipy.special.log_ndtr(z)
    relative = lambda values: float(np.max(np.abs(values - exact) / np.abs(exact)))  # noqa: E731
    with jax.enable_x64(True):
        jax_error = relative(np.asarray(jsp.log_ndtr(jax.numpy.asarray(z))))
    torch_error = relative(torch.special.log_ndtr(torch.from_numpy(z)).numpy())
    assert torch_error < 1e-14
    assert 1e-13 < jax_error < 1e-8
