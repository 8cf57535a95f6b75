"""``jax_impl.program_keys``: the keys a tutorial run's programs are stored under, predicted before Flax is imported,
are the keys the trainer and the held-out forward pass look up; the programs load during start-up without Flax, and
a run on prefetched programs computes what a run without the store computes, bit for bit."""

from __future__ import annotations

import textwrap

import pytest

pytest.importorskip("jax")

from tests.store_processes import environment, run  # noqa: E402

pytestmark = pytest.mark.jax

#: One process: (``prefetch``) first loads the programs of the run planned for ``devices=None`` as ``cogmeta train``
#: does, with nothing of Flax imported, then for one device and for the batch over two: the keys planned, the
#: training program's key, the forward keys looked up before and after a training call, and the numbers.
_WORKER = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    from cogmeta.config import JaxOptions, ModelConfig, RunConfig, TrainConfig
    from cogmeta.tasks import GaussianMeanTask
    from jax_impl import program_keys

    config = RunConfig(task=GaussianMeanTask(), model=ModelConfig(hidden_size=8),
                       train=TrainConfig(steps=40, batch_size=32), jax=JaxOptions(steps_per_call=20))
    result = {"prefetched": []}
    if sys.argv[1] == "prefetch":
        result["prefetched"] = program_keys.prefetch(config, None)
        for thread in threading.enumerate():
            if thread.name == "cogmeta-prefetch":
                thread.join()
        result["flax_imported_by_the_prefetch"] = "flax" in sys.modules
    import jax
    from jax_impl import backend, executable_store
    from jax_impl.launch import make_trainer

    observations = np.random.default_rng(0).normal(size=(7, 50, 1))
    for devices in (1, 2):
        known = set(backend._stored_forwards)
        trainer = make_trainer(config, devices=devices)
        before = trainer.predictive(observations)["mean"]
        losses = trainer.run(20).loss
        after = trainer.predictive(observations)["mean"]
        result[devices] = {"planned": program_keys.planned_keys(config, devices, 20),
                           "training": None if trainer._stored is None else trainer._stored[1],
                           "forwards": sorted(set(backend._stored_forwards) - known), "source": trainer.program_source,
                           "numbers": [before.tolist(), losses.tolist(), after.tolist()]}
    result["unused_prefetches"] = len(executable_store._prefetched)
    print(json.dumps(result))
""")


def test_the_planned_keys_are_the_keys_the_run_looks_up(tmp_path):
    result = run(_WORKER, environment(tmp_path, store=True), "plain")
    for devices in ("1", "2"):
        planned = result[devices]["planned"]
        assert result[devices]["training"] == planned[1]
        # the same forward program before and after a training call (whose replicated outputs say P(None,))
        assert result[devices]["forwards"] == [planned[0]]
    assert len({result["1"]["planned"][0], result["2"]["planned"][0]}) == 2  # the placement is in the key


def test_prefetched_programs_load_without_flax_and_compute_what_an_unstored_run_computes(tmp_path):
    stored = environment(tmp_path, store=True)
    first = run(_WORKER, stored, "plain")  # compiles and stores the programs
    prefetched = run(_WORKER, stored, "prefetch")
    unstored = run(_WORKER, environment(tmp_path, store=False), "plain")
    assert prefetched["prefetched"] == first["2"]["planned"]  # a CPU run of batch 32 splits over the two devices
    assert prefetched["flax_imported_by_the_prefetch"] is False
    assert prefetched["unused_prefetches"] == 0  # the run took both programs from the prefetch
    for devices in ("1", "2"):
        assert (first[devices]["source"], prefetched[devices]["source"], unstored[devices]["source"]) == (
            "stored", "prefetched" if devices == "2" else "store", "compiled")
        assert prefetched[devices]["numbers"] == unstored[devices]["numbers"] == first[devices]["numbers"]
