"""The functional clip + Adam + schedule of ``torch_impl.optim`` against its reference, and the twin surface.

``torch_impl.optim`` replaces ``torch.optim.Adam`` + ``torch.nn.utils.clip_grad_norm_`` everywhere in
``torch_impl`` (eager trainer, CUDA-graph static step, vmapped sweep engine); this is the documented
comparison with torch's own optimizer: the same parameters and moments after 50 steps, with clipping
active on some steps and a cosine schedule, in float64 and float32.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cogmeta.config import TrainConfig  # noqa: E402
from cogmeta.schedules import learning_rate as python_learning_rate  # noqa: E402
from torch_impl.optim import adam_step, clip_by_global_norm, init_adam, learning_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 50
SHAPES = {"core.weight_ih_l0": (24, 2), "core.weight_hh_l0": (24, 8), "core.bias_ih_l0": (24,), "head.weight": (2, 8)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_functional_adam_equals_torch_optim_adam(dtype):
    train = TrainConfig(steps=STEPS, learning_rate=3e-2, schedule="cosine", final_lr_fraction=0.1, clip_norm=1.0,
                        adam_beta1=0.8, adam_beta2=0.99, adam_eps=1e-7)
    generator = torch.Generator().manual_seed(0)
    reference = {n: torch.nn.Parameter(torch.randn(s, generator=generator, dtype=dtype)) for n, s in SHAPES.items()}
    optimizer = torch.optim.Adam(reference.values(), lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2),
                                 eps=train.adam_eps)
    params = {n: p.detach().clone() for n, p in reference.items()}
    state = init_adam(params)
    norms = []
    for k in range(STEPS):
        scale = 0.05 if k % 3 == 0 else 2.0  # clipping acts on two steps in three
        grads = {n: torch.randn(s, generator=generator, dtype=dtype) * scale for n, s in SHAPES.items()}
        for name, param in reference.items():
            param.grad = grads[name].clone()
        expected_norm = torch.nn.utils.clip_grad_norm_(reference.values(), train.clip_norm)
        rate = python_learning_rate(k, train.learning_rate, train.steps, train.schedule, train.final_lr_fraction)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()

        lr = learning_rate(k, train)
        assert float(lr) == rate
        clipped, norm = clip_by_global_norm(grads, train.clip_norm)
        assert torch.equal(norm, expected_norm)
        norms.append(float(norm))
        params, state = adam_step(params, clipped, state, lr, train)
        for name, param in reference.items():
            np.testing.assert_allclose(params[name].numpy(), param.detach().numpy(), rtol=1e-15, atol=1e-15,
                                       err_msg=f"{name} at step {k}")
            np.testing.assert_array_equal(state.exp_avg[name].numpy(), optimizer.state[param]["exp_avg"].numpy())
            np.testing.assert_array_equal(state.exp_avg_sq[name].numpy(), optimizer.state[param]["exp_avg_sq"].numpy())
    assert float(state.count) == STEPS == int(optimizer.state[reference["head.weight"]]["step"])
    assert max(norms) > train.clip_norm > min(norms), "both branches of the clip should run"


def test_guard_applies_nothing_and_keeps_the_count():
    train = TrainConfig()
    params = {"w": torch.ones(3, dtype=torch.float64)}
    state = init_adam(params)
    grads = {"w": torch.full((3,), 0.5, dtype=torch.float64)}
    same, kept = adam_step(params, grads, state, 1e-2, train, apply=torch.tensor(False))
    assert torch.equal(same["w"], params["w"]) and float(kept.count) == 0 and not kept.exp_avg["w"].any()
    moved, advanced = adam_step(params, grads, state, 1e-2, train, apply=torch.tensor(True))
    plain, _ = adam_step(params, grads, state, 1e-2, train)
    assert torch.equal(moved["w"], plain["w"]) and float(advanced.count) == 1
    assert torch.equal(params["w"], torch.ones(3, dtype=torch.float64)), "adam_step must not modify its inputs"


def _public_functions_and_classes(path: Path) -> list[tuple[str, list[str]]]:
    """(name, parameter names) of the public top-level definitions, in file order; constants as (name, [])."""
    tree = ast.parse(path.read_text())
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            args = [a.arg for a in node.args.args + node.args.kwonlyargs] if isinstance(node, ast.FunctionDef) else []
            out.append((node.name, args))
        elif isinstance(node, ast.Assign):
            out.extend((t.id, []) for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_"))
    return out


def test_both_optim_modules_have_the_same_public_surface():
    """``torch_impl/optim.py`` and ``jax_impl/optim.py``: same names, same order, same parameters."""
    torch_side = _public_functions_and_classes(ROOT / "torch_impl" / "optim.py")
    jax_side = _public_functions_and_classes(ROOT / "jax_impl" / "optim.py")
    assert torch_side == jax_side
    assert [name for name, _ in torch_side] == ["CLIP_EPS", "learning_rate", "AdamState", "init_adam",
                                                "clip_by_global_norm", "adam_step"]
