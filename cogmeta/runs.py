"""The run folder: everything a training run writes, at fixed names.

    RUN/config.json            the RunConfig (JSON)
    RUN/weights.safetensors    final weights, canonical names (load in either framework)
    RUN/checkpoint.safetensors last good training state (weights + Adam state + step)
    RUN/metrics.csv            long-format metrics log
    RUN/evaluation-<backend>.csv, RUN/figures/*.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "RunDir":
        return cls(Path(path))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def weights(self) -> Path:
        return self.root / "weights.safetensors"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.safetensors"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def evaluation(self, backend: str) -> Path:
        return self.root / f"evaluation-{backend}.csv"

    def require_run(self) -> None:
        """Raise a FileNotFoundError that says what is missing, unless this is a finished run."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"run folder {self.root} does not exist")
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.root} is not a cogmeta run folder: {self.config.name} is missing")
        if not self.weights.is_file():
            hint = " (training did not finish; continue it with `cogmeta train --resume`)" if self.checkpoint.is_file() else ""
            raise FileNotFoundError(f"{self.root} has no {self.weights.name}{hint}")
