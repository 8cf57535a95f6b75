"""The one progress bar of the library (tqdm, on stderr), used by every training loop and sweep."""

from __future__ import annotations


def progress_bar(enabled: bool, total: int, description: str, unit: str = "step", initial: int = 0):
    """A ``tqdm`` bar of ``total`` units starting at ``initial``, or ``None`` when ``enabled`` is false.

    Callers update it with ``bar.update(n)`` (and ``bar.set_postfix(loss=...)``) and close it in a
    ``finally``; :func:`close` accepts ``None`` so that loops need no branch.
    """
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True)


def close(bar) -> None:
    """Close ``bar`` if there is one."""
    if bar is not None:
        bar.close()
