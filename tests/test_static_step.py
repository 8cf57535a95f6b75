"""The synchronisation-free training step (``torch_impl.static_step``) against the eager trainer, on CPU.

On a CUDA device the same ``_step`` is captured in a CUDA graph; everything except the capture itself
(static buffers, the precomputed schedule, clipping, Adam in torch's order, the non-finite guard,
resuming) is checked here against :func:`torch_impl.trainer.make_train_step`, the eager step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cogmeta import GaussianMeanTask, ModelConfig, RunConfig, TorchOptions, TrainConfig  # noqa: E402
from torch_impl.backend import MetaLearnerObjective, build_model, native_batch  # noqa: E402
from torch_impl.backend import make_tutorial_trainer as Trainer  # noqa: E402
from torch_impl.numerics import resolve_device, resolve_dtype  # noqa: E402
from torch_impl.optim import init_adam  # noqa: E402
from torch_impl.static_step import StaticStep  # noqa: E402
from torch_impl.trainer import make_train_step  # noqa: E402

STEPS = 40


def _config(cell="gru", dtype="float64", schedule="cosine", clip=1.0):
    return RunConfig(task=GaussianMeanTask(sequence_length=6), model=ModelConfig(cell=cell, hidden_size=8),
                     train=TrainConfig(steps=STEPS, batch_size=5, learning_rate=3e-2, schedule=schedule,
                                       clip_norm=clip, dtype=dtype, log_every=10))


def _eager(config, batches):
    model = build_model(config)
    state = init_adam(model.named_parameters())
    metrics = []
    objective = MetaLearnerObjective(config)
    train_step, member = make_train_step(objective, model), objective.member(config.train.seed)
    for step, observations in enumerate(batches):
        loss, norm, rate, _ = train_step(state, observations, step, member)
        metrics.append((loss, norm, rate))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            break
    return model, np.asarray(metrics)


def _batches(config, count=STEPS):
    return [native_batch(config, k, resolve_dtype(config.train.dtype)) for k in range(count)]


@pytest.mark.parametrize("cell,dtype,tolerance", [("gru", "float64", 1e-12), ("lstm", "float64", 1e-12),
                                                  ("gru", "float32", 2e-5)])
def test_static_step_follows_the_eager_trainer(cell, dtype, tolerance):
    """40 updates with clipping active (clip 1.0) and a cosine schedule: same parameters and metrics."""
    config = _config(cell, dtype)
    batches = _batches(config)
    eager, eager_metrics = _eager(config, batches)
    model = build_model(config)
    static = StaticStep(model, config, capture=False)
    loss, norm, rate = static.run(batches[:15])
    more = static.run(batches[15:])
    ours = np.stack([np.concatenate([loss, more[0]]), np.concatenate([norm, more[1]]), np.concatenate([rate, more[2]])], 1)
    assert ours.shape == eager_metrics.shape == (STEPS, 3)
    assert (eager_metrics[:, 1] > config.train.clip_norm).any(), "the test should exercise clipping"
    np.testing.assert_allclose(ours, eager_metrics, rtol=tolerance, atol=tolerance)
    for name, param in eager.named_parameters():
        np.testing.assert_allclose(dict(model.named_parameters())[name].detach().numpy(), param.detach().numpy(),
                                   rtol=tolerance, atol=tolerance, err_msg=name)


def test_non_finite_step_is_not_applied_and_freezes_the_run():
    config = _config()
    batches = _batches(config, 12)
    batches[7] = batches[7].clone()
    batches[7][2, 1, 0] = math.nan
    eager, eager_metrics = _eager(config, batches)
    assert len(eager_metrics) == 8 and math.isnan(eager_metrics[-1, 0])
    model = build_model(config)
    static = StaticStep(model, config, capture=False)
    loss, norm, rate = static.run(batches)
    assert len(loss) == 8 and math.isnan(loss[-1]) and math.isnan(norm[-1]) and static.stopped
    np.testing.assert_allclose(loss[:7], eager_metrics[:7, 0], rtol=1e-12)
    for name, param in eager.named_parameters():  # updates 8-12 changed nothing
        np.testing.assert_allclose(dict(model.named_parameters())[name].detach().numpy(), param.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_resuming_from_moments_continues_the_trajectory():
    config = _config(schedule="constant")
    batches = _batches(config, 20)
    eager, _ = _eager(config, batches)
    first_model = build_model(config)
    first = StaticStep(first_model, config, capture=False)
    first.run(batches[:9])
    exp_avg, exp_avg_sq = first.moments()
    resumed = StaticStep(first_model, config, start=9, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, capture=False)
    resumed.run(batches[9:])
    for name, param in eager.named_parameters():
        np.testing.assert_allclose(dict(first_model.named_parameters())[name].detach().numpy(),
                                   param.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_verify_first_step_passes_and_catches_a_wrong_step():
    config = _config()
    batches = _batches(config, 2)
    static = StaticStep(build_model(config), config, capture=False)
    assert static.verify_first_step(batches[0], MetaLearnerObjective(config)) < 1e-12
    with pytest.raises(ValueError, match="first update"):
        static.verify_first_step(batches[1], MetaLearnerObjective(config))
    broken = StaticStep(build_model(config), config, capture=False)
    broken.count.fill_(4.0)  # a stale buffer (here Adam's step count) must not train silently
    with pytest.raises(RuntimeError, match="disagrees with the eager step"):
        broken.verify_first_step(batches[0], MetaLearnerObjective(config))


def test_device_options_are_validated():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        TorchOptions(cuda_graphs=True)
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        TorchOptions(device="tpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA device"):
            resolve_device("cuda")
        config = RunConfig(task=GaussianMeanTask(), torch=TorchOptions(device="cuda", cuda_graphs=True))
        with pytest.raises(RuntimeError, match="install a CUDA build"):
            Trainer(config)
    assert RunConfig.from_dict(RunConfig(torch=TorchOptions(device="cuda:1", cuda_graphs=True)).to_dict()).torch == \
        TorchOptions(device="cuda:1", cuda_graphs=True)


def test_metrics_ring_buffer_wraps(monkeypatch):
    import torch_impl.static_step as static_step

    monkeypatch.setattr(static_step, "HISTORY_ROWS", 8)
    config = _config(schedule="constant")
    batches = _batches(config, 30)
    _, eager_metrics = _eager(config, batches)
    static = StaticStep(build_model(config), config, capture=False)
    parts = [static.run(batches[:11]), static.run(batches[11:])]
    ours = np.stack([np.concatenate([p[i] for p in parts]) for i in range(3)], 1)
    np.testing.assert_allclose(ours, eager_metrics, rtol=1e-12, atol=1e-12)


def test_trainer_with_the_static_step_matches_the_eager_trainer():
    """The Trainer's cuda_graphs path (verified first update, chunks, step count, checkpoint moments),
    run eagerly on CPU: the option is switched on behind the config's CUDA check."""
    config = _config(schedule="cosine")
    eager = Trainer(config)
    eager_metrics = [eager.run(15), eager.run(25)]
    static_config = _config(schedule="cosine")
    object.__setattr__(static_config.torch, "cuda_graphs", True)
    static = Trainer(static_config)
    ours = [static.run(15), static.run(25)]
    assert static.step == eager.step == STEPS and static.static is not None and not static.static.graphed
    for a, b in zip(ours, eager_metrics):
        for field in ("loss", "grad_norm", "learning_rate"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-12, atol=1e-12)
    ours_ckpt, eager_ckpt = static.checkpoint(), eager.checkpoint()
    for name in eager_ckpt.params:
        np.testing.assert_allclose(ours_ckpt.params[name], eager_ckpt.params[name], rtol=1e-12, atol=1e-12)
    for name in eager_ckpt.exp_avg:
        np.testing.assert_allclose(ours_ckpt.exp_avg_sq[name], eager_ckpt.exp_avg_sq[name], rtol=1e-12, atol=1e-15)


def test_the_step_makes_no_host_round_trip(monkeypatch):
    """What would break a CUDA-graph capture, caught on CPU: a tensor built from Python data inside the step
    (a host-to-device copy) or a tensor read back to Python (a synchronisation)."""
    config = _config()
    static = StaticStep(build_model(config), config, capture=False)
    static.observations.copy_(_batches(config, 1)[0])

    def forbidden(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name} called inside the static step")
        return fail

    monkeypatch.setattr(torch, "tensor", forbidden("torch.tensor"))
    for method in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, forbidden(f"Tensor.{method}"))
    static._step()
    monkeypatch.undo()
    assert int(static.k) == 1 and bool(static.alive)


def test_cli_reports_the_cuda_options_clearly(tmp_path, capsys):
    from cogmeta.cli import main

    code = main(["train", "--task", "gaussian", "--backend", "torch", "--cuda-graphs", "--steps", "2",
                 "--out", str(tmp_path / "run")])
    assert code != 0 and "needs a CUDA device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code = main(["train", "--task", "gaussian", "--backend", "torch", "--torch-device", "cuda", "--steps", "2",
                     "--out", str(tmp_path / "run2")])
        assert code != 0 and "sees no CUDA device" in capsys.readouterr().err
