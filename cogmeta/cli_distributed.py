"""The ``--devices N`` option of ``cogmeta train`` (data-parallel training; docs/scale-out.md).

JAX: one process drives N devices of a mesh (``jax_impl.distributed``). On a CPU, N host devices need
``JAX_NUM_CPU_DEVICES`` before JAX starts its backend; the command sets it (``cogmeta.host_devices``: one per
usable CPU, or N when ``--devices N`` asks for more). Each host device runs on its own thread, so up to the
number of cores they run in parallel (without ``--devices``, a run splits its batch over them when each gets
enough tasks: ``jax_impl.launch.auto_devices``); beyond it they share cores (correctness checks only).
PyTorch: one process per device started by ``torchrun`` (``torch_impl.distributed``); ``--devices`` may be left
out there.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_devices_argument(group: argparse._ArgumentGroup) -> None:
    from cogmeta.cli_options import integer

    group.add_argument("--devices", type=integer(1, 65_536), default=None, metavar="N",
                       help="data-parallel training: split every batch over N devices (JAX: a device mesh; "
                            "torch: start with `torchrun --nproc-per-node=N -m cogmeta train ...`). "
                            "Default: JAX on a CPU splits the batch over one device per core when each gets at "
                            "least 16 tasks (`--devices 1`: one core); otherwise one device (or torchrun's process "
                            "count)")


def prepare_devices(args: argparse.Namespace) -> None:
    """Validate ``--devices`` and, for JAX on a CPU, ask for that many simulated CPU devices.

    ``JAX_NUM_CPU_DEVICES`` only changes the CPU platform (a GPU machine keeps its GPUs as the default
    devices) and only works before JAX initialises, so it is set only if unset and JAX is not loaded.
    """
    devices = getattr(args, "devices", None)
    if devices is None:
        return
    if devices < 1:
        raise ValueError(f"--devices must be >= 1, got {devices}")
    # Several hosts (JAX_COORDINATOR_ADDRESS set): N counts every host's devices, so leave the local count alone.
    multihost = os.environ.get("JAX_COORDINATOR_ADDRESS", "") != ""
    if args.backend == "jax" and not multihost and "jax" not in sys.modules and "JAX_NUM_CPU_DEVICES" not in os.environ:
        os.environ["JAX_NUM_CPU_DEVICES"] = str(devices)
