"""``cogmeta.startup_gc``: the ``cogmeta`` command pauses the garbage collector while it imports a framework and
freezes what the import created; a program that imports ``cogmeta`` as a library is left alone."""

from __future__ import annotations

import gc
import importlib

import pytest

from cogmeta import backends, startup_gc


@pytest.fixture
def restore_gc(monkeypatch):
    monkeypatch.setattr(startup_gc, "_for_command", False)
    yield
    gc.unfreeze()  # give the frozen objects back to the collector: other tests see Python's default state
    gc.enable()


def test_the_collector_is_off_inside_and_freezes_what_is_alive_after(restore_gc):
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with startup_gc.collector_paused():
        assert not gc.isenabled()
        created = [[i] for i in range(1000)]  # tracked containers alive when the window closes
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(created)


def test_a_collector_turned_off_by_the_caller_stays_off(restore_gc):
    gc.disable()
    frozen = gc.get_freeze_count()
    with startup_gc.collector_paused():
        pass
    assert not gc.isenabled() and gc.get_freeze_count() == frozen


def _collector_state_during_imports(monkeypatch) -> list[bool]:
    states = []
    real_import = importlib.import_module

    def recording_import(name, *args):
        states.append(gc.isenabled())
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    with pytest.raises(ModuleNotFoundError):  # a module never imported before (and not there): no module state touched
        backends.load_module("torch", "no_such_twin_module")
    return states


def test_only_the_command_pauses_the_collector_for_a_framework_import(restore_gc, monkeypatch):
    frozen = gc.get_freeze_count()
    assert _collector_state_during_imports(monkeypatch) == [True]  # a library user: Python's default
    assert gc.get_freeze_count() == frozen
    startup_gc.enable_for_command()
    assert _collector_state_during_imports(monkeypatch) == [False]
    assert gc.isenabled() and gc.get_freeze_count() > frozen
