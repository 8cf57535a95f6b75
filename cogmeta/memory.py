"""Memory estimates checked before work starts, so that an absurd size fails at once with its arithmetic.

The estimates are deliberately rough lower bounds (what the run must hold at least), compared with the
memory the machine has available now (``MemAvailable`` in ``/proc/meminfo``; elsewhere the free physical
pages from ``os.sysconf``). They catch the sizes that cannot fit (``--hidden-size 65536``, ``--num-tasks
10**9``), not the borderline ones, and say which option to lower. Where the available memory cannot be
read, nothing is refused.

Bytes of a tutorial training run with P parameters of b bytes each (b = 4 for float32, 8 for float64):

    6 P b                    weights, gradients, Adam's two moments, the checkpoint and the host copy
    + 2 T B L H (G + 2) b    activations kept for the backward pass (T steps, B tasks, L layers of H units,
                             G = 3 GRU / 4 LSTM gates, + hidden and input), once more for its gradients
    + E T L H (G + 2) b      the held-out forward pass on E = eval_tasks tasks (``heldout_kl``)

and of scoring N held-out tasks of T steps: 16 float64 arrays of [T, N] (observations, both predictives,
KL, NLLs and their intermediates), 128 T N bytes.
"""

from __future__ import annotations

import os
from math import prod

GIB = 2**30
#: float64 arrays of [T, N] that scoring N held-out tasks holds at once (cogmeta.evaluation, cogmeta.predictive)
EVALUATION_ARRAYS = 16


def available_bytes() -> int | None:
    """Memory available to a new allocation now, in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def gib(nbytes: float) -> str:
    """``nbytes`` in GiB, for messages."""
    return f"{nbytes / GIB:.3g} GiB"


def require_fits(nbytes: float, arithmetic: str, fix: str) -> None:
    """Raise a ValueError stating ``arithmetic`` and ``fix`` if ``nbytes`` exceed the memory available now."""
    available = available_bytes()
    if available is not None and nbytes > available:
        raise ValueError(f"{arithmetic}; {gib(nbytes)} in all, more than the {gib(available)} of memory available "
                         f"on this machine; {fix}")


def evaluation_bytes(num_tasks: int, sequence_length: int) -> tuple[int, str]:
    """(bytes, arithmetic) of scoring ``num_tasks`` held-out tasks of ``sequence_length`` steps."""
    nbytes = EVALUATION_ARRAYS * 8 * sequence_length * num_tasks
    return nbytes, (f"{num_tasks} tasks x T={sequence_length} steps x {EVALUATION_ARRAYS} float64 arrays x 8 bytes "
                    f"= {gib(nbytes)}")


def require_evaluation_fits(option: str, num_tasks: int, sequence_length: int = 1) -> None:
    """Refuse ``option`` = ``num_tasks`` held-out tasks that cannot fit (``sequence_length`` 1: the least any task needs)."""
    nbytes, arithmetic = evaluation_bytes(num_tasks, sequence_length)
    require_fits(nbytes, f"{option} {num_tasks}: {arithmetic}", f"lower {option}")


def training_bytes(config) -> tuple[int, str]:
    """(bytes, arithmetic) of training the model of ``config`` (a ``cogmeta.config.RunConfig``): a recurrent core of
    the tutorial's shape (every family but the bounded GRU, which has its own count: :func:`bounded_gru_bytes`)."""
    from cogmeta.weights import _GATES, parameter_shapes

    model, train = config.model, config.train
    if model.family == "bounded_gru":
        task = config.task
        return bounded_gru_bytes(model.hidden_size, train.batch_size, task.num_trials, task.num_cues)
    size = 8 if train.dtype == "float64" else 4
    parameters = sum(prod(shape) for shape in parameter_shapes(config).values())
    gates, length = _GATES[model.cell], config.task.sequence_length
    per_task = length * model.num_layers * model.hidden_size * (gates + 2) * size
    states = 6 * parameters * size
    activations = 2 * train.batch_size * per_task
    held_out = train.eval_tasks * per_task
    arithmetic = (f"{model.cell.upper()} with hidden_size={model.hidden_size} x num_layers={model.num_layers}: "
                  f"{parameters} parameters x {size} bytes x 6 copies (weights, gradients, Adam moments, checkpoint, "
                  f"host) = {gib(states)}, + activations of batch_size={train.batch_size} x T={length} steps "
                  f"x 2 = {gib(activations)}, + held-out pass of eval_tasks={train.eval_tasks} = {gib(held_out)}")
    return states + activations + held_out, arithmetic


# ------------------------------------------------------------------------------------ the studies' estimates
def bounded_gru_bytes(hidden_size: int, batch_size: int, trials: int, cues: int, members: int = 1) -> tuple[int, str]:
    """(bytes, arithmetic) of training ``members`` bounded GRUs together (``cogmeta experiment heuristics``; JAX
    trains a stage's members in one program, torch one at a time: ``members`` 1).

    Per member, float32: the parameters P = 2 W + 7 H + 2 K (a mean and a log sigma per weight of the W in
    ``ih`` [3H, K+2], ``hh`` [3H, H], ``mu`` and ``logscale`` [K, H]; biases; the initial state) x 6 copies,
    the weight noise W of a forward pass, and the activations 2 B T H (3 gates + 2) of the backward pass.
    """
    hidden, inputs = hidden_size, cues + 2
    weights = 3 * hidden * (inputs + hidden) + 2 * cues * hidden
    parameters = 2 * weights + 7 * hidden + 2 * cues
    activations = 2 * batch_size * trials * hidden * 5 * 4
    per_member = 6 * parameters * 4 + weights * 4 + activations
    nbytes = members * per_member
    arithmetic = (f"bounded GRU with hidden_size={hidden}: {parameters} parameters x 4 bytes x 6 copies + weight noise "
                  f"+ activations of batch_size={batch_size} x T={trials} trials x 2 = {gib(per_member)}")
    if members > 1:
        arithmetic = f"{members} members trained together x ({arithmetic}) = {gib(nbytes)}"
    return nbytes, arithmetic


def population_bytes(participants: int, steps: int, hidden: int = 1) -> tuple[int, str]:
    """(bytes, arithmetic) of a learning-to-infer population: each participant's training queries (``steps`` of
    11 float32 values: 6 inputs and 5 targets) and its RBF network (``hidden`` units x 11 parameters x 4 copies)."""
    queries = participants * steps * 11 * 4
    network = participants * hidden * 11 * 4 * 4
    arithmetic = (f"{participants} participants x ({steps} training queries x 11 float32 values + {hidden} RBF units x "
                  f"11 parameters x 4 copies) = {gib(queries + network)}")
    return queries + network, arithmetic
