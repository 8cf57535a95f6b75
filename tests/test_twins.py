"""The twins mirror: every ``torch_impl/X.py`` and ``jax_impl/X.py`` pair has the same public names, and
functions of the same name take the same parameters.

What only one framework has is listed in :data:`FRAMEWORK_ONLY` with the reason; pairs that do not
mirror yet are in :data:`NOT_YET_MIRRORED` (each an expected failure that turns into a real failure the
day it mirrors, so that the list only shrinks). Read with ``ast``: neither framework is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TWINS = ("torch_impl", "jax_impl")

#: module -> {name: reason} for public names that exist in one framework only; a whole module is "*".
FRAMEWORK_ONLY: dict[str, dict[str, str]] = {
    "static_step.py": {"*": "PyTorch only: a training step without host synchronisation, captured in a CUDA graph; "
                            "JAX compiles whole chunks of steps already (docs/performance.md)"},
    "recurrent_layers.py": {"*": "JAX only: GRU/LSTM layers with a hand-written reverse pass (custom VJP); PyTorch "
                                 "uses its fused nn.GRU/nn.LSTM kernels"},
    "linear.py": {"*": "JAX only: a dense layer holding torch's (out, in) weight layout; PyTorch has nn.Linear"},
    "host_random.py": {"*": "JAX only: JAX's threefry keys and uniform draws computed in numpy, so that drawing a "
                             "model runs no compiled program; torch fills its tensors in place"},
    "executable_store.py": {"*": "JAX only: compiled programs on disk, keyed without tracing (a warm run skips "
                                 "tracing and lowering); PyTorch compiles nothing"},
    "program_keys.py": {"*": "JAX only: the executable store's keys of a run's programs before Flax is imported, and "
                             "their load during start-up; PyTorch compiles nothing"},
    "pieces.py": {"*": "JAX only: a batch in pieces of one size, so that jit compiles one program for every batch "
                       "size; PyTorch's eager calls take any size"},
    "engine.py": {"MEMORY_FRACTION": "JAX: the share of a device's memory that vmapped members may take before "
                                     "they train in blocks (Engine.fit_to_memory); the PyTorch engine runs on the CPU",
                  "device_memory": "as MEMORY_FRACTION"},
    "launch.py": {"program_description": "JAX: what the executable store's key says of a run's training program "
                                         "(program_keys.py)"},
    "samplers.py": {"step_generator": "PyTorch's RNG is a stateful torch.Generator per step",
                    "step_key": "JAX's RNG is a functional key folded with the step",
                    "LOOPED_KINDS": "JAX: noise kinds drawn by a data-dependent loop, which XLA must not partition "
                                    "over devices (distributed.sample_on_every_device); torch ranks never partition",
                    "draws_in_loops": "as LOOPED_KINDS"},
    "urn_samplers.py": {"seed_generator": "PyTorch's RNG is a stateful torch.Generator",
                        "seed_key": "JAX's RNG is a functional key"},
    "numerics.py": {"resolve_device": "PyTorch places tensors on a device by name; JAX uses its default device",
                    "HIGHEST": "JAX's matmul precision (torch sets TF32 off globally in configure)",
                    "matmul": "JAX's matmul at HIGHEST precision"},
    "distributed.py": {
        "TEARDOWN_TIMEOUT_S": "PyTorch's gloo teardown can deadlock (pytorch/pytorch#56297): a watchdog limit; JAX has "
                              "no process group to tear down",
        "process_group_backend": "PyTorch picks a collective library (gloo/nccl) per process group; XLA picks its own",
        "SEED_AXIS": "JAX names mesh axes; PyTorch has one process per device and no mesh",
        "data_parallel_check": "JAX: the held-out check's tasks split over the mesh inside the training call; "
                               "PyTorch's ranks each score the whole held-out set between steps",
        "seed_mesh": "JAX: the mesh of the seed axis",
        "place": "JAX: global arrays placed with a NamedSharding (PyTorch ranks hold plain local tensors)",
        "local": "JAX: this host's replica of a global array",
        "task_specs": "JAX: the PartitionSpec of each batch leaf (PyTorch ranks slice their shard, take_shard)",
        "shard_leading_axis": "JAX: seed-axis sharding of stacked runs (vmap over devices); PyTorch has no equivalent",
        "vmap_over_seeds": "as shard_leading_axis",
        "sample_on_every_device": "JAX: a rejection-sampled batch drawn whole on every device instead of partitioned "
                                  "by XLA (every PyTorch rank draws the whole batch already)"},
    "weights.py": {"canonical_to_state": "NNX state <-> canonical dict (torch uses load_state_dict)",
                   "state_to_canonical": "NNX state <-> canonical dict (torch uses state_dict)",
                   "abstract_split": "NNX: a module's structure without drawing its weights (nnx.eval_shape); "
                                     "torch builds modules eagerly"},
    "paired_comparison_samplers.py": {
        "correctly_rounded_sqrt": "torch's float32 sqrt is not correctly rounded on every CPU; JAX's is",
        "draw_task_noise": "JAX draws the noise functionally from a key"},
    "trainer.py": {"clip_and_update_in_place": "PyTorch updates the nn.Module's parameters and the optimizer state in "
                                                "place (shared by the eager and DDP steps); JAX's step returns new pytrees",
                   "write_adam_state": "PyTorch copies a functional update into the module's tensors (also the "
                                       "CUDA-graph step, static_step.py); JAX has no in-place state",
                   "stack_outputs": "PyTorch reads each step's values back and stacks them on the host; JAX's "
                                    "lax.scan stacks them",
                   "COMPILED_INIT_FROM": "JAX draws many runs' initial weights in one compiled vmap (Flax builds "
                                         "modules eagerly at 4-5 ms each); PyTorch's modules build in a fraction of that",
                   "compiled_init": "as COMPILED_INIT_FROM", "init_runs": "as COMPILED_INIT_FROM",
                   "stack_on_host": "JAX: numpy stacks S pytrees without compiling the concatenation that jnp.stack "
                                    "compiles for every new S; torch.stack compiles nothing",
                   "make_checked_chunk": "JAX: the held-out checks of until_kl compiled into the training call (a "
                                         "lax.while_loop that stops at the target); PyTorch's Trainer.run_checked "
                                         "checks between its own run calls, so the CUDA-graph and torchrun trainers "
                                         "check through theirs"},
    "backend.py": {"CudaGraphTrainer": "PyTorch only: the one trainer with its step captured in a CUDA graph "
                                       "(static_step.py); JAX compiles whole chunks of steps already"},
    "amortized.py": {"COMPILED_INIT_FROM": "JAX draws a large population's initial weights in one compiled vmap "
                                           "(jax_impl.trainer.init_runs); PyTorch builds one stacked model"},
    "seq2seq.py": {"to_tensors": "numpy episode -> torch tensors", "to_arrays": "numpy episode -> jax arrays",
                   "Embedding": "an embedding holding torch's layout (flax's nnx.Embed differs)",
                   "dropout_masks": "JAX draws dropout masks functionally from a key"},
}

#: (module, function) -> {parameter: reason} for parameters that one framework's version has in addition.
EXTRA_PARAMETERS: dict[tuple[str, str], dict[str, str]] = {
    ("paired_comparison_samplers.py", "sample_batch"): {"condition": "JAX traces the condition index so that "
                                                                     "conditions can be vmapped"},
    ("paired_comparison_samplers.py", "transform"): {"condition": "as sample_batch"},
    ("engine.py", "Engine"): {"chunk": "JAX: optimizer steps per compiled call (torch takes one Python step per step)",
                              "map_batch": "JAX: members vmapped together per lax.map iteration (torch has no map)",
                              "compile": "PyTorch: opt-in torch.compile of the loop members (JAX always compiles)",
                              "devices": "JAX: members split over devices inside one program (one per CPU core from "
                                         "the command); PyTorch uses the cores with worker processes (sweep --workers)",
                              "memory_budget": "JAX: vmapped members trained in blocks that fit a device's memory (GPU, "
                                               "TPU); the PyTorch engine runs on the CPU"},
    ("amortized.py", "train_population"): {"devices": "as engine.py's Engine: JAX splits the participants over "
                                                      "devices (PyTorch trains them as one stacked model)"},
    ("engine.py", "make_train"): {"chunk": "as Engine", "map_batch": "as Engine", "compile": "as Engine",
                                  "devices": "as Engine", "memory_budget": "as Engine"},
    ("distributed.py", "DataParallelTrainer"): {"compile_ahead": "as trainer.py's Trainer",
                                                "stored_as": "as trainer.py's Trainer"},
    ("distributed.py", "data_parallel_loss_and_grad"): {
        "mesh": "JAX: the device mesh whose shard_map slices the batch and pmeans the gradient",
        "axis": "JAX: the mesh axis of the tasks",
        "model": "PyTorch: this rank's module, differentiated in place (JAX's loss takes the params)",
        "first": "PyTorch: this rank's tasks first:last of the global batch (one process per device)",
        "last": "as first", "device": "PyTorch: where this rank's shard and model live (cuda:LOCAL_RANK or cpu)"},
    ("trainer.py", "make_train_step"): {"model": "PyTorch: the nn.Module the step updates in place (JAX's step takes "
                                                     "the params as an argument)"},
    ("trainer.py", "make_train_on_batches"): {"model": "as make_train_step"},
    ("trainer.py", "make_member_chunk"): {"model": "as make_train_step",
                                          "sample": "JAX: the data-parallel trainer's draw of a rejection-sampled "
                                                    "batch whole on every device (distributed.sample_on_every_device)"},
    ("trainer.py", "make_run_steps"): {"model": "as make_train_step", "sample": "as make_member_chunk",
                                       "checked": "JAX: the held-out check compiled in (make_checked_chunk)"},
    ("trainer.py", "Trainer"): {"device": "PyTorch places the model and its batches on a device by name; JAX uses its "
                                          "default device",
                                "compile_ahead": "JAX: compile the first call's program on a thread while the model "
                                                 "is drawn (PyTorch compiles nothing)",
                                "stored_as": "JAX: load that program from the executable store (executable_store.py)"},
    ("rl2.py", "rollout"): {"replay": "JAX: differentiate the trial loop through the core's replay of the recorded "
                                      "gates (weight gradients as one contraction after the loop) or tape it; PyTorch's "
                                      "autograd tapes its Python loop"},
    ("rl2.py", "RL2Objective"): {"replay": "as rollout (the sweep engine's vmap takes the taped loop: for_vmap)"},
    ("seq2seq.py", "build_model"): {"seed": "JAX's init needs an explicit seed (nnx.Rngs); PyTorch's reads the "
                                            "global RNG that its trainer seeds"},
}

#: Parameter names that are the same thing in each framework's idiom: the RNG (a stateful torch.Generator
#: or a JAX key) and Flax NNX's explicit ``rngs`` at construction (torch modules draw from the global RNG).
EQUIVALENT_PARAMETERS = {"generator": "rng", "key": "rng"}
FRAMEWORK_PARAMETERS = {"self", "rngs"}

#: pairs that the one-trainer redesign (issue 13) has not reached yet, with what differs.
NOT_YET_MIRRORED: dict[str, str] = {
}


def _parameters(function: ast.FunctionDef) -> tuple[str, ...]:
    arguments = function.args
    names = (a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
    return tuple(EQUIVALENT_PARAMETERS.get(n, n) for n in names if n not in FRAMEWORK_PARAMETERS)


def _init(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> ast.FunctionDef | None:
    """The class's ``__init__``, or the one it inherits from a base class of the same module."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return item
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            return _init(classes[base.id], classes)
    return None


def public_api(path: Path) -> dict[str, tuple[str, ...] | None]:
    """Public top-level names -> parameter names (functions; classes: their ``__init__``), or None."""
    api: dict[str, tuple[str, ...] | None] = {}
    body = ast.parse(path.read_text()).body
    classes = {node.name: node for node in body if isinstance(node, ast.ClassDef)}
    for node in body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            api[node.name] = _parameters(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            init = _init(node, classes)
            api[node.name] = None if init is None else _parameters(init)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            api.update({t.id: None for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_")
                        and t.id != "__all__"})
    return api


def differences(module: str) -> list[str]:
    """What keeps ``torch_impl/module`` and ``jax_impl/module`` from mirroring (empty: they mirror)."""
    allowed = FRAMEWORK_ONLY.get(module, {})
    paths = [ROOT / twin / module for twin in TWINS]
    if "*" in allowed:
        return []
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.is_file()]
    if missing:
        return [f"{', '.join(missing)} does not exist"]
    torch_api, jax_api = (public_api(p) for p in paths)
    found = []
    for name in sorted(set(torch_api) ^ set(jax_api)):
        if name not in allowed:
            found.append(f"{name} only in {'torch_impl' if name in torch_api else 'jax_impl'}/{module}")
    for name in sorted(set(torch_api) & set(jax_api)):
        extras = EXTRA_PARAMETERS.get((module, name), {})
        strip = lambda params: None if params is None else tuple(p for p in params if p not in extras)  # noqa: E731
        if strip(torch_api[name]) != strip(jax_api[name]):
            found.append(f"{name}: parameters {torch_api[name]} (torch) vs {jax_api[name]} (jax)")
    return found


MODULES = sorted({p.name for twin in TWINS for p in (ROOT / twin).glob("*.py")} - {"__init__.py"})


@pytest.mark.parametrize("module", [pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_MIRRORED[m]))
                                    if m in NOT_YET_MIRRORED else m for m in MODULES])
def test_twins_have_the_same_public_names_and_parameters(module):
    assert differences(module) == []


def test_every_allow_list_entry_names_something_that_exists():
    for module, names in FRAMEWORK_ONLY.items():
        apis = [public_api(ROOT / twin / module) for twin in TWINS if (ROOT / twin / module).is_file()]
        assert apis, f"{module} is allow-listed but exists in neither twin"
        for name in names:
            assert name == "*" or any(name in api for api in apis), f"{module}: {name} is allow-listed but not defined"
            assert name == "*" or len(apis) < 2 or not all(name in api for api in apis), (
                f"{module}: {name} is allow-listed as one framework's but both twins define it now; drop the entry")
    for module in NOT_YET_MIRRORED:
        assert module in MODULES, f"{module} is listed as not yet mirrored but does not exist"


def test_differences_reports_a_renamed_function(tmp_path, monkeypatch):
    for twin, name in zip(TWINS, ("train_step", "make_train_step")):
        (tmp_path / twin).mkdir()
        (tmp_path / twin / "x.py").write_text(f"def {name}(model, batch):\n    pass\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert differences("x.py") == ["make_train_step only in jax_impl/x.py", "train_step only in torch_impl/x.py"]
