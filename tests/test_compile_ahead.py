"""``Trainer(compile_ahead=True)`` (JAX only: PyTorch compiles nothing): the first training call's program is
compiled on a background thread while the model is drawn. The first call then compiles nothing, and training is
bit for bit the same as without it (one device, the data-parallel trainer, float32 and float64)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

from jax import monitoring  # noqa: E402

from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from cogmeta.tasks import GaussianMeanTask  # noqa: E402
from jax_impl.backend import MetaLearnerObjective  # noqa: E402
from jax_impl.distributed import DataParallelTrainer  # noqa: E402
from jax_impl.trainer import Trainer  # noqa: E402

#: the event JAX records whenever it compiles a program or loads one from the persistent cache
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _config(dtype: str, seed: int) -> RunConfig:
    return RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=8),
                     train=TrainConfig(steps=40, batch_size=8, dtype=dtype, seed=seed), jax=JaxOptions(steps_per_call=20))


def _build(kind: str, config: RunConfig, compile_ahead: bool):
    if kind == "one device":
        return Trainer(MetaLearnerObjective(config), steps_per_call=config.jax.steps_per_call, compile_ahead=compile_ahead)
    return DataParallelTrainer(config, devices=1, compile_ahead=compile_ahead)


def _compiles_during(action) -> tuple[object, int]:
    events = []

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            events.append(event)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        return action(), len(events)
    finally:
        monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("kind", ["one device", "data-parallel"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_first_call_finds_its_program_compiled_and_trains_as_without(kind, dtype):
    # every trainer jits its own program: without compiling ahead its first call compiles (or loads) it
    with jax.enable_x64(dtype == "float64"):
        config = _config(dtype, seed=3)
        ahead = _build(kind, config, compile_ahead=True)
        ahead._compiling.join()  # what the first run() does
        first, compiles = _compiles_during(lambda: ahead.run(20))
        assert compiles == 0, "the first call compiled although its program was compiled ahead"
        later = ahead.run(20)

        plain = _build(kind, config, compile_ahead=False)
        assert plain._compiling is None
        reference = [plain.run(20), plain.run(20)]
    for got, want in zip((first, later), reference):
        np.testing.assert_array_equal(got.loss, want.loss)
        np.testing.assert_array_equal(got.grad_norm, want.grad_norm)
    for name, value in plain.weights().items():
        np.testing.assert_array_equal(ahead.weights()[name], value, err_msg=name)
        assert ahead.weights()[name].dtype == np.dtype(dtype)


def test_without_compile_ahead_the_first_call_compiles():
    """The check above can fail: a trainer built without it compiles in its first call (a size no other test uses)."""
    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=5),
                       train=TrainConfig(steps=40, batch_size=8), jax=JaxOptions(steps_per_call=20))
    trainer = Trainer(MetaLearnerObjective(config), steps_per_call=20)
    _, compiles = _compiles_during(lambda: trainer.run(20))
    assert compiles >= 1


def test_an_objective_that_cannot_compile_ahead_still_trains():
    """A failure on the background thread (here: batches that do not trace) only means the first call compiles."""

    class Untraceable(MetaLearnerObjective):
        calls = 0

        def sample(self, step, member):
            Untraceable.calls += 1
            if Untraceable.calls == 1:  # the background trace
                raise RuntimeError("not traceable ahead")
            return super().sample(step, member)

    config = _config("float32", seed=5)
    trainer = Trainer(Untraceable(config), steps_per_call=20, compile_ahead=True)
    metrics = trainer.run(20)
    assert Untraceable.calls == 2 and np.isfinite(metrics.loss).all() and len(metrics.loss) == 20


def test_a_process_that_never_runs_its_trainer_exits_cleanly():
    """The compiling thread is waited for at exit: a daemon thread still inside XLA's compiler while the interpreter
    finalizes aborted the process (SIGABRT, seen in a worker that built trainers only to inspect them)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig
        from jax_impl.backend import MetaLearnerObjective
        from jax_impl.trainer import Trainer
        config = RunConfig(model=ModelConfig(hidden_size=48), train=TrainConfig(batch_size=16),
                           jax=JaxOptions(steps_per_call=50))
        trainer = Trainer(MetaLearnerObjective(config), steps_per_call=50, compile_ahead=True)
        print("built", trainer._compiling.is_alive())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "JAX_COMPILATION_CACHE_DIR": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("built")
