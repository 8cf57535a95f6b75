"""Model families: which network a run trains, on which tasks, and which options it reads.

A *model family* is registered here by name (``RunConfig.model.family``); ``cogmeta train``, ``cogmeta
evaluate``, the presets and the config's validation discover it from :data:`MODEL_FAMILIES`. Each family
names its tasks (a task registry of its own: the predictive tasks of ``cogmeta.contract.TASKS`` for the
tutorial meta-learner, the episode tasks for meta seq2seq), the recurrent cells it supports, the
``ModelConfig`` fields it reads (every other model field must keep its default, so that a flag that would
be ignored is an error), and the driver module that trains, resumes and evaluates its run folders
(its ``WORKLOAD``, the hooks of the one run-folder loop ``cogmeta.training.train``, or a ``train_run`` of its own:
seq2seq; ``cogmeta.training`` itself for the meta-learner).

Adding a family: a ``ModelFamily`` entry below, its driver module, and an objective in each backend
(``docs/extending.md``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class ModelFamily:
    """One registered model family.

    Attributes:
        name: registry key (``model.family`` in a config).
        summary: one line for ``--help`` and errors.
        cells: the recurrent cells it can be built with.
        model_fields: the ``ModelConfig`` fields it reads besides ``family``.
        driver: module with the family's ``WORKLOAD`` for the one run-folder loop (or a ``train_run`` loop of its
            own: seq2seq), ``score_run`` and ``parameter_shapes`` (the meta-learner: ``cogmeta.training``).
        task_registry: returns the family's tasks, name -> frozen dataclass (imported lazily).
        default_task: the task a config of this family gets when none is named.
        default_preset: the ``cogmeta.presets`` entry that ``cogmeta train --family NAME`` starts from.
        check: extra cross-field validation of a whole ``RunConfig`` (ValueError naming the field).
        shapes: ``"module:function"`` giving canonical parameter name -> shape of a config's model (torch
            ``state_dict`` layout); ``cogmeta.weights.parameter_shapes`` asks it, so weights files and
            checkpoints of every family are validated the same way.
        summary_tasks: held-out tasks that ``cogmeta train`` scores at the end by default.
        evaluate_tasks: held-out tasks of ``cogmeta evaluate RUN`` by default.
        reports: module whose ``report_training(result, config, backend, tasks)`` and ``report_evaluation(run,
            backend, tasks, seed, figures)`` print the family's tables (None: the predictive KL of ``cogmeta.cli``).
        cuda_graphs: its PyTorch training step can be captured as one CUDA graph (``TorchOptions.cuda_graphs``,
            ``torch_impl.static_step``: the tutorial's); a config of any other family that asks for it is refused.
        engine_members: the backends' engines train several of its runs together (``*_impl/engine.objective_for``);
            otherwise ``cogmeta sweep`` trains its members one after another through the run-folder loop.
        fixed_length: its runs draw their whole training stream from the seed and ``train.steps`` when they
            start, so a resumed run keeps its steps (the amortized family's query streams).
        sections: the optional ``RunConfig`` sections it reads (``"rl"``: the A2C objective; ``"bound"``: the description-length bound); every other
            family must leave them at their defaults, and only families that read one write it to config.json.
    """

    name: str
    summary: str
    cells: tuple[str, ...]
    model_fields: frozenset[str]
    driver: str
    task_registry: Callable[[], Mapping[str, type]]
    default_task: str
    default_preset: str
    check: Callable[[Any], None] = lambda config: None
    sections: frozenset[str] = frozenset()
    shapes: str = "cogmeta.weights:meta_learner_shapes"
    summary_tasks: int = 2_000
    evaluate_tasks: int = 20_000
    reports: str | None = None
    fixed_length: bool = False
    engine_members: bool = False
    cuda_graphs: bool = False

    def tasks(self) -> Mapping[str, type]:
        return self.task_registry()

    def task_class(self, name: str) -> type:
        tasks = self.tasks()
        if name not in tasks:
            raise ValueError(f"model family {self.name!r} trains the tasks {', '.join(sorted(tasks))}; got task "
                             f"{name!r}" + _family_hint(name))
        return tasks[name]

    def make_task(self, name: str, **params: Any):
        from cogmeta.contract import build_task

        return build_task(self.task_class(name), **params)

    def load_driver(self) -> ModuleType:
        return importlib.import_module(self.driver)

    def parameter_shapes(self, config) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape of the model of ``config`` (``shapes``)."""
        module, _, function = self.shapes.partition(":")
        return getattr(importlib.import_module(module), function)(config)


def _predictive_tasks() -> Mapping[str, type]:
    import cogmeta.tasks  # noqa: F401 - importing it registers the predictive tasks
    from cogmeta.contract import TASKS

    return TASKS


def _episode_tasks() -> Mapping[str, type]:
    from cogmeta.tasks.scan_episodes import EPISODE_TASKS

    return EPISODE_TASKS


def _bandit_tasks() -> Mapping[str, type]:
    from cogmeta.tasks.bandit import BANDIT_TASKS

    return BANDIT_TASKS


def _comparison_tasks() -> Mapping[str, type]:
    from cogmeta.tasks.paired_comparison import PairedComparisonTask

    return {PairedComparisonTask.name: PairedComparisonTask}


def _amortized_tasks() -> Mapping[str, type]:
    from cogmeta.tasks.urn_tasks import AMORTIZED_TASKS

    return AMORTIZED_TASKS


def _check_meta_learner(config) -> None:
    del config  # every TrainConfig field applies to it


def _check_seq2seq(config) -> None:
    """One episode per update; the checkpoint interval a multiple of the log interval, so that a resumed run
    logs exactly the rows of an uninterrupted one; no held-out KL (the task has no exact predictive)."""
    train = config.train
    if train.batch_size != 1:
        raise ValueError(f"train.batch_size must be 1 for the seq2seq family (one episode per update, Lake 2019), "
                         f"got {train.batch_size}")
    if train.checkpoint_every % train.log_every:
        raise ValueError(f"train.checkpoint_every must be a multiple of train.log_every ({train.log_every}) for the "
                         f"seq2seq family, got {train.checkpoint_every}")
    if train.until_kl is not None:
        raise ValueError("train.until_kl needs an exact Bayes predictive; the seq2seq family's episode tasks have "
                         "none (leave --until-kl out)")


def _check_rl2(config) -> None:
    """No held-out KL: a bandit task has no predictive to compare; the policy is scored by its reward."""
    if config.train.until_kl is not None:
        raise ValueError("train.until_kl needs an exact Bayes predictive; the rl2 family's bandit tasks are scored by "
                         "reward (leave --until-kl out)")


def _check_bounded_gru(config) -> None:
    """No held-out KL (the exact predictive of paired comparisons is a Monte-Carlo estimate, scored by the
    heuristics study); a warm-up no longer than the run."""
    if config.train.until_kl is not None:
        raise ValueError("train.until_kl needs an exact Bayes predictive; the bounded_gru family is scored by its "
                         "held-out choice NLL (leave --until-kl out)")
    if config.bound.warmup_steps > config.train.steps:
        raise ValueError(f"bound.warmup_steps ({config.bound.warmup_steps}) must not exceed train.steps "
                         f"({config.train.steps}): the KL weight would never reach beta")


def _check_amortized(config) -> None:
    """Dasgupta et al.'s participants: one query per update at a constant learning rate, no clipping; an
    ``urn_study`` run is exactly its epochs x block of updates."""
    train, task = config.train, config.task
    for name, value, wanted in (("batch_size", train.batch_size, 1), ("schedule", train.schedule, "constant"),
                                ("clip_norm", train.clip_norm, None)):
        if value != wanted:
            raise ValueError(f"train.{name} must be {wanted!r} for the amortized family (one query per update at a "
                             f"constant learning rate without clipping, as the paper trains its participants), got "
                             f"{value!r}")
    if train.until_kl is not None:
        raise ValueError("train.until_kl: the amortized family is scored by its held-out KL to the exact posterior "
                         "(metric heldout_kl), not stopped by it (leave --until-kl out)")
    if task.name == "urn_study" and train.steps != task.steps:
        raise ValueError(f"train.steps must be epochs x (noise_queries + study_queries) = {task.steps} for the "
                         f"urn_study task, got {train.steps} (set --epochs, not --steps)")


#: name -> family. The first is the default of ``ModelConfig.family``.
MODEL_FAMILIES: dict[str, ModelFamily] = {
    "meta_learner": ModelFamily(
        name="meta_learner",
        summary="recurrent meta-learner with a predictive head (the tutorial's; Binz 2022)",
        cells=("gru", "lstm"),
        model_fields=frozenset({"cell", "hidden_size", "num_layers"}),
        driver="cogmeta.training",
        task_registry=_predictive_tasks,
        default_task="gaussian",
        default_preset="tutorial-gaussian",
        check=_check_meta_learner,
        engine_members=True,
        cuda_graphs=True,
    ),
    "seq2seq": ModelFamily(
        name="seq2seq",
        summary="meta sequence-to-sequence learner with a support memory (Lake 2019)",
        cells=("lstm",),
        model_fields=frozenset({"cell", "hidden_size", "num_layers", "dropout", "memory"}),
        driver="cogmeta.experiments.meta_seq2seq",
        task_registry=_episode_tasks,
        default_task="mutual_exclusivity",
        default_preset="seq2seq-me-cpu",
        check=_check_seq2seq,
        shapes="cogmeta.experiments.meta_seq2seq_shapes:parameter_shapes",
        summary_tasks=200,  # ME episodes, drawn and decoded in Python; SCAN scores its whole test set
        evaluate_tasks=200,
        reports="cogmeta.cli_seq2seq",
    ),
    "rl2": ModelFamily(
        name="rl2",
        summary="recurrent actor-critic meta-trained across bandit episodes (RL^2; Duan et al. 2016, Wang et al. 2018)",
        cells=("gru", "lstm"),
        model_fields=frozenset({"cell", "hidden_size", "num_layers"}),
        driver="cogmeta.experiments.rl2",
        task_registry=_bandit_tasks,
        default_task="bandit",
        default_preset="rl2-bandit",
        check=_check_rl2,
        sections=frozenset({"rl"}),
        shapes="cogmeta.experiments.rl2:parameter_shapes",
        summary_tasks=10_000,  # bandits every reference policy plays too
        evaluate_tasks=10_000,
        reports="cogmeta.cli_bandits",
        engine_members=True,
    ),
    "bounded_gru": ModelFamily(
        name="bounded_gru",
        summary="sparse-variational GRU with a description-length bound (heuristics; Binz et al. 2022)",
        cells=("gru",),
        model_fields=frozenset({"cell", "hidden_size"}),
        driver="cogmeta.experiments.bounded_runs",
        task_registry=_comparison_tasks,
        default_task="paired_comparison",
        default_preset="heuristics-ranking",
        check=_check_bounded_gru,
        sections=frozenset({"bound"}),
        shapes="cogmeta.experiments.bounded_runs:parameter_shapes",
        summary_tasks=1_000,  # the heuristics study's held-out tasks per condition
        evaluate_tasks=1_000,
        reports="cogmeta.cli_heuristics",
        engine_members=True,
    ),
    "amortized": ModelFamily(
        name="amortized",
        summary="amortized posterior (Linear -> RBF -> Linear) of a simulated participant (Dasgupta et al. 2020)",
        cells=("rbf",),
        model_fields=frozenset({"cell", "hidden_size"}),
        driver="cogmeta.experiments.amortized_runs",
        task_registry=_amortized_tasks,
        default_task="urn_queries",
        default_preset="l2i-eu-id",
        check=_check_amortized,
        shapes="cogmeta.experiments.amortized_runs:parameter_shapes",
        summary_tasks=2_000,
        evaluate_tasks=10_000,
        reports="cogmeta.cli_learning_to_infer",
        fixed_length=True,
    ),
}


def model_family(name: str) -> ModelFamily:
    """The registered family ``name``, with an error that lists them."""
    if name not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered families: {', '.join(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def family_of_task(name: str) -> ModelFamily:
    """The family whose registry holds task ``name`` (each task belongs to one family)."""
    for family in MODEL_FAMILIES.values():
        if name in family.tasks():
            return family
    raise ValueError(f"unknown task {name!r}; available tasks: {', '.join(all_task_names())}")


def all_task_names() -> list[str]:
    """Every task of every family, sorted (``cogmeta train --task`` choices)."""
    return sorted(name for family in MODEL_FAMILIES.values() for name in family.tasks())


def _family_hint(task: str) -> str:
    for family in MODEL_FAMILIES.values():
        if task in family.tasks():
            return f" (task {task!r} belongs to model family {family.name!r}: set model.family / --family)"
    return ""
