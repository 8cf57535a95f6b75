"""``cogmeta.shell_probe``: the ``cogmeta`` command imports a framework with ``import IPython`` failing (no shell runs
there; ``cogmeta.startup_gc.framework_import``), and only where IPython is not imported already; a program that imports
``cogmeta`` as a library is left alone."""

from __future__ import annotations

import gc
import importlib
import sys
import types

import pytest

from cogmeta import backends, shell_probe, startup_gc


@pytest.fixture
def library_mode(monkeypatch):
    monkeypatch.setattr(startup_gc, "_for_command", False)
    yield
    gc.unfreeze()  # the command's import froze what was alive: give it back to the collector for other tests
    gc.enable()


def test_inside_the_shell_module_cannot_be_imported_and_after_it_can(monkeypatch):
    monkeypatch.delitem(sys.modules, shell_probe.SHELL_MODULE, raising=False)
    with shell_probe.shell_absent():
        with pytest.raises(ImportError):
            importlib.import_module(shell_probe.SHELL_MODULE)
    assert shell_probe.SHELL_MODULE not in sys.modules  # no trace left: a later import searches as usual


def test_a_shell_module_imported_already_is_left_as_it_is(monkeypatch):
    shell = types.ModuleType(shell_probe.SHELL_MODULE)
    monkeypatch.setitem(sys.modules, shell_probe.SHELL_MODULE, shell)
    with shell_probe.shell_absent():
        assert importlib.import_module(shell_probe.SHELL_MODULE) is shell
    assert sys.modules[shell_probe.SHELL_MODULE] is shell


def test_flax_reads_the_same_answer_with_the_shell_module_hidden(monkeypatch):
    reprlib = pytest.importorskip("flax.nnx.reprlib")
    pytest.importorskip(shell_probe.SHELL_MODULE)  # installed: the probe would import it and find no shell
    expected = reprlib.supports_color()
    monkeypatch.delitem(sys.modules, shell_probe.SHELL_MODULE)
    with shell_probe.shell_absent():
        assert reprlib.supports_color() == expected


def _shell_module_during_imports(monkeypatch) -> list[object]:
    seen = []
    real_import = importlib.import_module

    def recording_import(name, *args):
        seen.append(sys.modules.get(shell_probe.SHELL_MODULE, "not imported"))
        return real_import(name, *args)

    monkeypatch.delitem(sys.modules, shell_probe.SHELL_MODULE, raising=False)
    monkeypatch.setattr(importlib, "import_module", recording_import)
    with pytest.raises(ModuleNotFoundError):  # a module never imported before (and not there): no module state touched
        backends.load_module("torch", "no_such_twin_module")
    return seen


def test_only_the_command_hides_the_shell_module_during_a_framework_import(library_mode, monkeypatch):
    assert _shell_module_during_imports(monkeypatch) == ["not imported"]  # a library user: Python's default
    startup_gc.enable_for_command()
    assert _shell_module_during_imports(monkeypatch) == [None]  # None in sys.modules: `import IPython` fails
    assert shell_probe.SHELL_MODULE not in sys.modules
