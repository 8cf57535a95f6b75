"""Compiled training programs kept on disk and found again without tracing: the warm start of ``cogmeta train``.

JAX's persistent compilation cache (``cogmeta.compilation_cache``) keys an executable by the *lowered*
program, so even a warm run first traces the Python step and lowers it to StableHLO before it can look the
executable up: for the README's main run (GRU-64, batch 128, 100-step calls split over two host devices) that
is 0.2-0.3 s of Python, then 0.08-0.13 s to load, on the critical path of every run's first call, against
0.06 s for the call's 100 steps (2-core VM; docs/performance.md, "A stored executable"). This store keys
the executable by what the program is a function of instead, so that a key is computed in milliseconds and
a hit skips tracing, lowering and XLA's cache alike (``jax.experimental.serialize_executable``).

A key must name everything the compiled program depends on, or a changed program would run stale. Its
parts (:func:`program_key`):

- the caller's description of the program: the run's configuration without what the program takes as
  arguments (the member's seed and learning rate), the trainer kind, its devices and steps per call;
- the library's code: the bytes of every file of the ``cogmeta`` and ``jax_impl`` packages;
- the versions of Python, jax, jaxlib, flax, optax, numpy and ml_dtypes;
- JAX's configuration values, ``XLA_FLAGS`` and every other ``JAX_*`` / ``XLA_*`` environment variable;
- the devices (platform, kind, id, process) and the host CPU's model and instruction-set flags, since
  XLA:CPU compiles for the instruction set of the machine it runs on.

So only programs built from the library's own objectives go through the store (their code is in the key); a
user's objective compiles as before. Every failure is a miss: a missing, truncated or corrupt entry (each
carries the SHA-256 of its payload, checked before XLA reads it) or one that does not load compiles afresh.

One XLA detail shapes :func:`compile_for_store`: an executable that JAX *loaded* from its persistent cache
serializes into one that fails at its first run (jax 0.10.2, XLA:CPU: ``NOT_FOUND: Function
iota_convert_fusion not found``; the loaded executable no longer holds its JIT-compiled functions), and
JAX's thread-local ``enable_compilation_cache`` state cannot turn the cache off for one compilation (JAX
decides once per process whether it uses the cache). So a program bound for the store is compiled with a
unique value of an XLA option that is part of the persistent cache's key and changes nothing else
(:data:`SALT_OPTION`, a dump filter that matters only while XLA dumps), which makes it a fresh compilation;
and a compilation during which this thread saw a persistent-cache hit (JAX's monitoring event) is not
stored all the same. The price is a full compilation the first time a key is missing even when XLA's cache
holds the program (after the library changed, for instance), and one unused entry in XLA's cache.

Loading an executable runs machine code: the store belongs to its user, like JAX's own cache
(``jax.experimental.serialize_executable`` warns against loading untrusted entries). It is on only for the
``cogmeta`` command, in the folder of its compilation cache (:func:`store_from_environment`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import pickle
import platform
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import jax

from cogmeta.compilation_cache import STORE_VARIABLE as ENVIRONMENT_VARIABLE
from cogmeta.io import atomic_write_with

#: The store's size limit, bytes (least recently used entries are removed beyond it).
MAX_BYTES = 256 << 20
#: The first bytes of every entry: the format, so that a later layout never reads an older one.
MAGIC = b"cogmeta-executable-3\n"
#: The packages whose files are part of every key.
LIBRARY_PACKAGES = ("cogmeta", "jax_impl")
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "ml_dtypes")
_SUFFIX = ".xla"
_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def library_fingerprint() -> str:
    """SHA-256 over the relative path and bytes of every file of :data:`LIBRARY_PACKAGES` (8 ms for ~110 files)."""
    digest = hashlib.sha256()
    for package in LIBRARY_PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent  # imported already: a dict lookup
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                digest.update(str(path.relative_to(root.parent)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _host_cpu() -> str:
    """The CPU's model and instruction-set flags (Linux's ``/proc/cpuinfo``; elsewhere what ``platform`` says)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    seen = {}
    for line in lines:
        name, _, value = line.partition(":")
        name = name.strip()
        if name in wanted and name not in seen:
            seen[name] = value.strip()
    return json.dumps(seen, sort_keys=True)


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """Python's and the packages' versions, from their installed metadata (2-6 ms, once): without importing them,
    so that a key can be computed before Flax is imported (``jax_impl.program_keys``)."""
    versions = {"python": sys.version}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _jax_settings() -> dict[str, str]:
    values = {name: repr(value) for name, value in sorted(jax.config.values.items())}
    environment = {name: value for name, value in sorted(os.environ.items()) if name.startswith(("JAX_", "XLA_"))}
    return {"config": json.dumps(values), "environment": json.dumps(environment)}


def _devices(devices) -> list[str]:
    return [f"{d.platform}/{d.device_kind}/{d.id}/{d.process_index}" for d in devices]


def program_key(description: Mapping[str, Any], devices=None) -> str:
    """The store key of a program that ``description`` (JSON-able) determines together with the library's code,
    the versions, JAX's settings and ``devices`` (default: ``jax.devices()``); see the module docstring."""
    parts = {
        "format": MAGIC.decode(),  # a new layout never reads an older one's entries (they age out)
        "program": json.dumps(description, sort_keys=True, default=repr),
        "library": library_fingerprint(),
        "versions": _versions(),
        "jax": _jax_settings(),
        "devices": _devices(jax.devices() if devices is None else devices),
        "processes": jax.process_count(),
        "cpu": _host_cpu(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


#: The XLA option :func:`compile_for_store` sets to a unique value: in the persistent cache's key (unlike the other
#: dump options, which JAX leaves out of it), and read only while XLA dumps emitter debug output.
SALT_OPTION = "xla_dump_emitter_re"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_hits_by_thread: dict[int, int] = {}
_listening = threading.Lock()


def _count_cache_hits(event: str, **kwargs) -> None:
    if event == CACHE_HIT_EVENT:  # listeners run in the thread that records the event
        thread = threading.get_ident()
        _hits_by_thread[thread] = _hits_by_thread.get(thread, 0) + 1


@functools.lru_cache(maxsize=1)
def _listen_for_cache_hits() -> None:
    from jax import monitoring

    monitoring.register_event_listener(_count_cache_hits)


def compile_for_store(lowered) -> tuple["jax.stages.Compiled", bool]:
    """``(compiled, storable)``: ``lowered`` compiled afresh (module docstring), and whether it was (no
    persistent-cache hit in this thread meanwhile) and so may be serialized."""
    _listen_for_cache_hits()
    thread = threading.get_ident()
    before = _hits_by_thread.get(thread, 0)
    try:
        compiled = lowered.compile(compiler_options={SALT_OPTION: f"cogmeta-store-{uuid.uuid4().hex}"})
    except Exception:  # noqa: BLE001 - an XLA without the option: compile as usual, stored only if fresh
        compiled = lowered.compile()
    return compiled, _hits_by_thread.get(thread, 0) == before


class FlatProgram:
    """A compiled program of flat arguments, called with structured ones: ``program(*args)`` flattens ``args`` (of the
    structure ``args_tree``), runs ``compiled`` on the leaves and rebuilds its outputs as ``out_tree``.

    Stored programs take and return flat lists of arrays so that their serialized form names no class of the
    pytrees (Flax's states, the library's named tuples): an entry then loads without importing them, on a thread
    while the main thread is still importing them (:func:`prefetch`; unpickling a tree of Flax classes there
    deadlocked on Flax's import lock). The structured trees are pickled beside it and read where the program is used.
    """

    def __init__(self, compiled, args_tree, out_tree):
        self.compiled, self.args_tree, self.out_tree = compiled, args_tree, out_tree
        #: loaded by :func:`prefetch` ahead of its use (what ``cogmeta train`` reports)
        self.prefetched = False

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        if tree != self.args_tree:
            raise TypeError(f"this compiled program takes arguments structured as {self.args_tree}, got {tree}")
        return jax.tree.unflatten(self.out_tree, self.compiled(*leaves))


def flat_lowering(fn, *args) -> tuple["jax.stages.Lowered", Any, Any]:
    """``(lowered, args_tree, out_tree)``: ``fn(*args)`` lowered as a program of the leaves of ``args`` that returns
    the leaves of its outputs (for :class:`FlatProgram`); ``args`` may be abstract (``jax.ShapeDtypeStruct``)."""
    leaves, args_tree = jax.tree.flatten(args)
    structure = {}

    def flat(*leaves):
        outputs, structure["out"] = jax.tree.flatten(fn(*jax.tree.unflatten(args_tree, leaves)))
        return outputs

    lowered = jax.jit(flat).lower(*leaves)
    return lowered, args_tree, structure["out"]


class ExecutableStore:
    """Serialized executables in ``directory``, one file ``<key>.xla`` each, at most ``max_bytes`` in all."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int = MAX_BYTES):
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    def load(self, key: str) -> FlatProgram | None:
        """The program stored under ``key``, or None: missing, unreadable, corrupt or not loadable (such an entry is
        removed). A key that :func:`prefetch` started loading waits for that load."""
        with _prefetch_lock:
            pending = _prefetched.pop((str(self.directory), key), None)
        if pending is None:
            loaded = self._read(key)
        else:
            pending.done.wait()
            loaded = pending.loaded
        if loaded is None:
            return None
        compiled, trees = loaded
        try:
            args_tree, out_tree = pickle.loads(trees)  # here, where the pytrees' classes are imported
        except Exception as error:  # noqa: BLE001 - a miss, and the entry goes
            self._remove(key, error)
            return None
        program = FlatProgram(compiled, args_tree, out_tree)
        program.prefetched = pending is not None
        return program

    def load_or_compile(self, key: str, lower: Callable[[], tuple]) -> tuple[FlatProgram, str]:
        """The program stored under ``key``, else the one ``lower()`` (a :func:`flat_lowering`) gives, compiled by
        :func:`compile_for_store` and stored; with where it came from: "prefetched" (loaded by :func:`prefetch`),
        "store", "stored" (compiled and stored now) or "compiled" (compiled, but not storable or not written)."""
        program = self.load(key)
        if program is not None:
            return program, "prefetched" if program.prefetched else "store"
        lowered, args_tree, out_tree = lower()
        compiled, storable = compile_for_store(lowered)
        program = FlatProgram(compiled, args_tree, out_tree)
        return program, "stored" if storable and self.save(key, program) else "compiled"

    def _read(self, key: str):
        """``(the flat program loaded onto its devices, its pickled trees)`` from the entry of ``key``, or None;
        needs no class of the program's pytrees (:class:`FlatProgram`)."""
        from jax.experimental import serialize_executable

        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            if not data.startswith(MAGIC):
                raise ValueError("not an entry of this format")
            checksum, payload = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
            if hashlib.sha256(payload).digest() != checksum:
                raise ValueError("checksum mismatch (a torn or corrupted file)")
            serialized, in_tree, out_tree, device_ids, trees = pickle.loads(payload)
            by_id = {device.id: device for device in jax.devices()}
            # the devices it was compiled for, in order: by default it would be loaded onto every device, and a
            # one-device program would then expect one shard per device of the machine
            compiled = serialize_executable.deserialize_and_load(
                serialized, in_tree, out_tree, execution_devices=[by_id[i] for i in device_ids])
        except Exception as error:  # noqa: BLE001 - every failure is a miss, and the entry goes
            self._remove(key, error)
            return None
        os.utime(path)  # recently used: kept by the eviction
        return compiled, trees

    def _remove(self, key: str, error: BaseException) -> None:
        if sys.is_finalizing():  # the interpreter is shutting down under a load: the entry is not at fault
            return
        _log.warning("removing the unusable stored executable %s: %s", self.path(key), error)
        self.path(key).unlink(missing_ok=True)

    def save(self, key: str, program: FlatProgram) -> bool:
        """Store ``program`` (compiled by :func:`compile_for_store` from a :func:`flat_lowering`) under ``key``,
        written then renamed; False (logged) when it cannot be serialized or written. Evicts the least recently
        used entries past the limit."""
        from jax.experimental import serialize_executable

        try:
            compiled = program.compiled
            device_ids = [device.id for device in compiled.runtime_executable().local_devices()]
            trees = pickle.dumps((program.args_tree, program.out_tree), protocol=pickle.HIGHEST_PROTOCOL)
            payload = pickle.dumps((*serialize_executable.serialize(compiled), device_ids, trees),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            data = MAGIC + hashlib.sha256(payload).digest() + payload
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_with(self.path(key), lambda tmp: tmp.write_bytes(data))
        except Exception as error:  # noqa: BLE001 - a program that cannot be stored still runs
            _log.warning("could not store the compiled program under %s: %s", self.directory, error)
            return False
        self._evict()
        return True

    def _evict(self) -> None:
        entries = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


class _Pending:
    """One entry that :func:`prefetch` loads: set when done, ``loaded`` None for a miss."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.loaded = None


_prefetched: dict[tuple[str, str], _Pending] = {}
_prefetch_lock = threading.Lock()


def prefetch(store: ExecutableStore, keys: list[str], then: Callable[[], None] | None = None) -> threading.Thread | None:
    """Load the entries of ``keys`` from ``store`` on a thread, in order, ahead of their use: :meth:`ExecutableStore.load`
    of such a key then waits for (or takes at once) that load instead of reading the file. Deserializing runs in XLA
    without the interpreter lock, so it overlaps the main thread's imports (``jax_impl.program_keys``). Not a daemon:
    the interpreter waits for a load still inside XLA at exit (``Trainer._compile_ahead`` says why). ``then`` runs on
    the same thread after the loads (failures ignored)."""
    from jax.experimental import serialize_executable  # noqa: F401 - imported here, not by the thread beside imports

    pending = []
    with _prefetch_lock:
        for key in keys:
            slot = (str(store.directory), key)
            if slot not in _prefetched:
                _prefetched[slot] = _Pending()
                pending.append((key, _prefetched[slot]))
    if not pending:
        return None

    def load_all() -> None:
        for key, entry in pending:
            try:
                entry.loaded = store._read(key)
            except Exception:  # noqa: BLE001 - a failed load is a miss: the user of the key compiles
                _log.debug("prefetching %s failed", key, exc_info=True)
            finally:
                entry.done.set()
        if then is not None:
            try:
                then()
            except Exception:  # noqa: BLE001 - only a head start
                _log.debug("the work after prefetching failed", exc_info=True)

    thread = threading.Thread(target=load_all, name="cogmeta-prefetch", daemon=False)
    thread.start()
    return thread


def store_from_environment(environ: Mapping[str, str] = os.environ) -> ExecutableStore | None:
    """The store that the ``cogmeta`` command turned on (``COGMETA_EXECUTABLE_STORE``, set by
    ``cogmeta.compilation_cache.enable_for_command``), or None: off in a process
    that did not set it (library code never writes to a user's cache behind their back) and in a multi-host job."""
    folder = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not folder or jax.process_count() > 1:
        return None
    return ExecutableStore(Path(folder).expanduser())


if os.environ.get(ENVIRONMENT_VARIABLE):  # the store is on: hash the library now, at start-up, not in a run's clock
    library_fingerprint()

__all__ = ["ENVIRONMENT_VARIABLE", "LIBRARY_PACKAGES", "MAGIC", "MAX_BYTES", "SALT_OPTION", "ExecutableStore", "FlatProgram",
           "compile_for_store", "flat_lowering", "library_fingerprint", "prefetch", "program_key",
           "store_from_environment"]
