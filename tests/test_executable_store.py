"""The executable store (``jax_impl.executable_store``, JAX only): the training program found again without tracing.

What makes it safe: the key covers what the program depends on (the config fields it leaves out demonstrably do
not enter the lowered program; the rest changes the key), a stored program trains bit for bit as a compiled one
in a fresh process (one device and data-parallel, another seed and a resumed run included), a corrupt entry is a
miss, and a compilation that JAX served from its persistent cache is never stored (such an executable does not
serialize into one that runs).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402

from cogmeta import compilation_cache  # noqa: E402
from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TorchOptions, TrainConfig  # noqa: E402
from cogmeta.held_out_check import HeldOutCheck  # noqa: E402
from cogmeta.presets import preset  # noqa: E402
from cogmeta.tasks import GaussianMeanTask  # noqa: E402
from jax_impl import executable_store  # noqa: E402
from jax_impl.backend import MetaLearnerObjective  # noqa: E402
from jax_impl.launch import HOST_TRAIN_FIELDS, program_description  # noqa: E402
from jax_impl.rl2 import RL2Objective  # noqa: E402
from jax_impl.trainer import Trainer  # noqa: E402
from tests.store_processes import environment as _environment  # noqa: E402
from tests.store_processes import run as _run  # noqa: E402

pytestmark = pytest.mark.jax


def _tutorial(**train) -> RunConfig:
    return RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=8),
                     train=TrainConfig(**{"steps": 40, "batch_size": 32, **train}), jax=JaxOptions(steps_per_call=20))


def _bandit(**train) -> RunConfig:
    config = preset("rl2-bandit")
    return dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_size=8),
                               train=dataclasses.replace(config.train, **{"steps": 40, "batch_size": 4, **train}),
                               jax=JaxOptions(steps_per_call=5))


def _lowered_text(objective, config: RunConfig) -> str:
    trainer = Trainer(objective(config), steps_per_call=config.jax.steps_per_call)
    params, opt_state = trainer._abstract_state(jax.eval_shape(lambda: trainer.objective.init(trainer.seed)))
    return trainer._run.lower(params, opt_state, jnp.asarray(0), jnp.asarray(trainer.chunk_size)).as_text()


#: a value for every field of HOST_TRAIN_FIELDS other than the default
_OTHER_VALUES = {"seed": 7, "learning_rate": 1.234e-4, "log_every": 3, "checkpoint_every": 7, "eval_every": 9,
                 "eval_tasks": 33, "until_kl": 0.01, "until_kl_every": 5}


@pytest.mark.parametrize("objective,config", [(MetaLearnerObjective, _tutorial), (RL2Objective, _bandit)],
                         ids=["tutorial", "rl2"])
def test_the_fields_left_out_of_the_key_do_not_enter_the_program(objective, config):
    assert set(_OTHER_VALUES) == set(HOST_TRAIN_FIELDS)
    reference = _lowered_text(objective, config())
    for name, value in _OTHER_VALUES.items():
        if objective is RL2Objective and name == "until_kl":
            continue  # refused for bandits (scored by reward)
        assert _lowered_text(objective, config(**{name: value})) == reference, f"train.{name} entered the program"
    # the comparison can fail: a field that is in the key changes the lowered program
    assert _lowered_text(objective, config(steps=41)) != reference


def _checked_lowered_text(config: RunConfig) -> str:
    """The lowered training call with the held-out check of ``config.train.until_kl`` inside (``run_checked``'s)."""
    trainer = Trainer(MetaLearnerObjective(config), steps_per_call=config.jax.steps_per_call,
                      until=HeldOutCheck.of(config))
    params, opt_state = trainer._abstract_state(jax.eval_shape(lambda: trainer.objective.init(trainer.seed)))
    return trainer._run_checked.lower(params, opt_state, jnp.asarray(0), jnp.asarray(trainer.chunk_size),
                                      *trainer._abstract_held_out()).as_text()


def test_a_checked_program_holds_the_check_period_and_the_held_out_size_and_its_key_names_them():
    """With ``until_kl``, the training call holds the held-out check: its period and the held-out set's size enter
    the program and the description (the key); the target is an argument, and the other host fields stay out."""
    checked = lambda **train: _tutorial(**{"until_kl": 0.01, **train})  # noqa: E731
    reference, base = _checked_lowered_text(checked()), program_description(checked(), MetaLearnerObjective)
    assert base != program_description(_tutorial(), MetaLearnerObjective), "the check is part of the description"
    for name, value in {**_OTHER_VALUES, "until_kl": 0.02}.items():
        config = checked(**{name: value})
        kept = name not in ("until_kl_every", "eval_tasks")
        assert (_checked_lowered_text(config) == reference) == kept, f"train.{name}"
        assert (program_description(config, MetaLearnerObjective) == base) == kept, f"train.{name}"


def test_the_description_leaves_out_host_fields_and_pytorch_options_only():
    base = program_description(_tutorial(), MetaLearnerObjective)
    for name, value in _OTHER_VALUES.items():
        if name == "until_kl":  # a target puts the check into the program (the test above)
            continue
        assert program_description(_tutorial(**{name: value}), MetaLearnerObjective) == base
    torch_only = dataclasses.replace(_tutorial(), torch=TorchOptions(threads=2))
    assert program_description(torch_only, MetaLearnerObjective) == base
    for changed in (_tutorial(batch_size=16), _tutorial(steps=41), _tutorial(dtype="float64"),
                    dataclasses.replace(_tutorial(), jax=JaxOptions(steps_per_call=10))):
        assert program_description(changed, MetaLearnerObjective) != base
    assert program_description(_tutorial(), RL2Objective) != base

    class Outside(MetaLearnerObjective):  # defined here: its code is not in the key, so no store
        pass

    assert program_description(_tutorial(), Outside) is None


def test_the_key_names_the_program_the_library_and_the_devices(monkeypatch):
    key = executable_store.program_key({"a": 1})
    assert key == executable_store.program_key({"a": 1}) and len(key) == 64
    assert executable_store.program_key({"a": 2}) != key
    assert executable_store.program_key({"a": 1}, devices=[]) != key
    monkeypatch.setattr(executable_store, "library_fingerprint", lambda: "an edited library")
    assert executable_store.program_key({"a": 1}) != key


def _square_plus_one():
    return jax.jit(lambda x: x * x + 1.0).lower(jnp.ones(3))


def _flat_square_plus_one(storable_too=False):
    lowered, args_tree, out_tree = executable_store.flat_lowering(lambda x: {"y": x * x + 1.0}, jnp.ones(3))
    compiled, storable = executable_store.compile_for_store(lowered)
    program = executable_store.FlatProgram(compiled, args_tree, out_tree)
    return (program, storable) if storable_too else program


def test_an_entry_round_trips_and_a_corrupt_one_is_a_miss(tmp_path):
    store = executable_store.ExecutableStore(tmp_path)
    compiled, storable = _flat_square_plus_one(storable_too=True)
    assert storable  # this process has no persistent cache (conftest), so the compilation is fresh
    assert store.load("k") is None
    assert store.save("k", compiled)
    loaded = store.load("k")
    np.testing.assert_array_equal(loaded(jnp.arange(3.0))["y"], [1.0, 2.0, 5.0])  # the structured output again
    with pytest.raises(TypeError, match="structured as"):
        loaded((jnp.arange(3.0),))

    data = bytearray(store.path("k").read_bytes())
    data[-10] ^= 0xFF
    store.path("k").write_bytes(bytes(data))
    assert store.load("k") is None and not store.path("k").exists(), "a corrupt entry was not removed"
    store.path("k").write_bytes(b"something else")
    assert store.load("k") is None and not store.path("k").exists()


def test_the_least_recently_used_entries_go_past_the_size_limit(tmp_path):
    compiled = _flat_square_plus_one()
    probe = executable_store.ExecutableStore(tmp_path / "probe")
    probe.save("x", compiled)
    size = probe.path("x").stat().st_size
    store = executable_store.ExecutableStore(tmp_path / "store", max_bytes=2 * size)
    store.save("old", compiled)
    store.save("used", compiled)
    os.utime(store.path("old"), (1, 1))
    os.utime(store.path("used"), (2, 2))
    assert store.load("used") is not None  # a hit makes it the most recent
    store.save("new", compiled)
    assert sorted(p.stem for p in (tmp_path / "store").iterdir()) == ["new", "used"]


def test_the_store_is_off_unless_the_command_turned_it_on(tmp_path, monkeypatch):
    assert executable_store.store_from_environment({}) is None
    store = executable_store.store_from_environment({executable_store.ENVIRONMENT_VARIABLE: str(tmp_path)})
    assert store is not None and store.directory == tmp_path
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    environ = {"COGMETA_JAX_CACHE": str(tmp_path / "cache")}
    compilation_cache.enable_for_command(environ)
    assert environ[compilation_cache.STORE_VARIABLE] == str(tmp_path / "cache" / "executables")
    off = {"COGMETA_JAX_CACHE": "off"}
    compilation_cache.enable_for_command(off)
    assert compilation_cache.STORE_VARIABLE not in off


#: One process of the round trip: trains the tutorial's 40 steps with the trainer ``cogmeta train`` builds (one
#: device, and its batch split over 2 host devices), prints where each program came from, the losses and the weights.
_WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig
    from cogmeta.tasks import GaussianMeanTask
    from jax_impl.launch import make_trainer

    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=8),
                       train=TrainConfig(steps=40, batch_size=32, seed=int(sys.argv[1])), jax=JaxOptions(steps_per_call=20))
    # with a target it never reaches: the call with the held-out checks inside (a check every 10 steps)
    checked = RunConfig(task=config.task, model=config.model, jax=config.jax, train=TrainConfig(
        steps=40, batch_size=32, seed=int(sys.argv[1]), until_kl=1e-9, until_kl_every=10, eval_tasks=40))

    def train(trainer, count):
        if trainer.until is None:
            return trainer.run(count).loss, []
        metrics, checks = trainer.run_checked(count)
        return metrics.loss, [kl for _, kl in checks]

    result = {}
    for devices in (1, 2):
        for name, run_config in (("", config), (" checked", checked)):
            trainer = make_trainer(run_config, devices=devices)
            first, kls = train(trainer, 20)
            resumed = make_trainer(run_config, trainer.checkpoint(), devices=devices)  # a resumed run: the same program
            second, more = train(trainer, 20)
            resumed_losses, _ = train(resumed, 20)
            result[f"{devices}{name}"] = {
                "source": trainer.program_source, "kind": type(trainer).__name__,
                "loss": np.concatenate([first, second]).tolist(), "kls": kls + more,
                "weights": {k: v.tolist() for k, v in trainer.weights().items()},
                "resumed_source": resumed.program_source, "resumed_loss": resumed_losses.tolist(),
                "resumed_weights": {k: v.tolist() for k, v in resumed.weights().items()}}
    print(json.dumps(result))
""")

#: Stores a program whose compilation JAX served from its persistent cache? ``compile_for_store`` must say no.
_GUARD = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp
    from jax_impl import executable_store

    lowered = jax.jit(lambda x: jnp.sin(x) * 3.0).lower(jnp.ones(5))
    lowered.compile()  # into the persistent cache
    executable_store.SALT_OPTION = "xla_dump_hlo_pass_re"  # an option JAX leaves out of its cache key
    _, served = executable_store.compile_for_store(lowered)
    executable_store.SALT_OPTION = "xla_dump_emitter_re"
    compiled, fresh = executable_store.compile_for_store(lowered)
    print(json.dumps({"served_storable": served, "salted_storable": fresh, "value": float(compiled(jnp.ones(5))[0])}))
""")


def test_a_stored_program_trains_bit_for_bit_as_a_compiled_one_in_a_fresh_process(tmp_path):
    environ = _environment(tmp_path, store=True)
    first = _run(_WORKER, environ, "0")
    entries = sorted((tmp_path / "cache" / "executables").iterdir())
    assert len(entries) == 4, "one entry per trainer (one device, data-parallel) and per program (checks or none)"
    second = _run(_WORKER, environ, "0")
    another_seed = _run(_WORKER, environ, "1")  # the seed is an argument of the program: the same entry
    unstored = _run(_WORKER, _environment(tmp_path, store=False), "1")
    assert sorted((tmp_path / "cache" / "executables").iterdir()) == entries
    for devices in ("1", "2", "1 checked", "2 checked"):
        assert first[devices]["kind"] == ("Trainer" if devices.startswith("1") else "DataParallelTrainer")
        assert len(first[devices]["kls"]) == (4 if "checked" in devices else 0)  # checks at 10, 20, 30, 40
        assert second[devices]["kls"] == first[devices]["kls"] and another_seed[devices]["kls"] == unstored[devices]["kls"]
        assert (first[devices]["source"], second[devices]["source"], another_seed[devices]["source"],
                unstored[devices]["source"]) == ("stored", "store", "store", "compiled")
        assert second[devices]["loss"] == first[devices]["loss"]
        assert second[devices]["weights"] == first[devices]["weights"]
        assert another_seed[devices]["loss"] == unstored[devices]["loss"]
        assert another_seed[devices]["weights"] == unstored[devices]["weights"]
        assert another_seed[devices]["loss"] != first[devices]["loss"]
        for run in (first, second):  # resumed after 20 steps: the rest of the run, bit for bit
            assert run[devices]["resumed_loss"] == run[devices]["loss"][20:]
            assert run[devices]["resumed_weights"] == run[devices]["weights"]
        assert second[devices]["resumed_source"] == "store"


def test_a_program_served_by_the_persistent_cache_is_never_stored(tmp_path):
    result = _run(_GUARD, _environment(tmp_path, store=True))
    assert result == {"served_storable": False, "salted_storable": True, "value": pytest.approx(3 * np.sin(1.0))}
