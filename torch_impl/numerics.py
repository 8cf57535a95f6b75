"""Numerical settings: thread count, full-precision float32 matmuls, dtype names."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def configure(threads: int = 0, dtype: str = "float32") -> None:
    """Process-wide numerics: ``threads`` intra-op threads (0 keeps the framework's default) and ``dtype``.

    PyTorch pins its intra-op thread count to ``threads`` (1 is often the fastest for small models, and
    fixes the order of parallel reductions) and turns TF32 off: TF32 would round float32 matmul inputs to
    10 mantissa bits on Ampere+ GPUs (cuDNN RNNs use it by default), which breaks parity with JAX at
    "highest" precision. ``dtype`` ("float32" or "float64") is checked only: torch's dtypes are per tensor,
    so float64 needs no process-wide switch.
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 keeps the default), got {threads}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def resolve_dtype(name: str) -> torch.dtype:
    """"float32"/"float64" -> the framework's dtype (``torch.float32``/``torch.float64``)."""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> ``torch.device``, with an error that says what is missing."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but torch {torch.__version__} sees no CUDA device "
                               "(a CPU-only build, or no GPU visible); install a CUDA build of torch or use device 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return device
