"""The PyTorch CUDA-graph training step against the eager step, on a real GPU (part of ``gpu_check.sh``).

    python benchmarks/cuda_graph_check.py --out DIR      # needs a CUDA device; writes DIR/cuda-graph-check.csv

For each cell (GRU, LSTM) and dtype (float64, float32), the same config is trained three ways from the
same initial weights and the same batches (sampled on the host, so every variant sees identical data):

- ``cpu eager``: ``torch_impl.trainer.Trainer`` on the CPU (the reference the CPU tests pin);
- ``cuda eager``: the same trainer on the GPU, one Python step per update;
- ``cuda graph``: ``TorchOptions(cuda_graphs=True)``: the first update checked against the eager step
  (``StaticStep.verify_first_step``), then every update replayed from one captured CUDA graph.

It prints, and writes, the worst normalized parameter difference max|a - b| / max(max|b|, 1e-3) between
the variants after ``--steps`` updates, and the loss curves' worst relative difference. TF32 is off
(as in the test suite), so float32 differences come from reduction order alone. Exit status 1 if the
CUDA graph and the eager CUDA step disagree beyond 1e-10 (float64) or 1e-4 (float32) normalized.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cogmeta import GaussianMeanTask, ModelConfig, RunConfig, TorchOptions, TrainConfig  # noqa: E402
from cogmeta.cli_options import integer  # noqa: E402
from cogmeta.io import atomic_write_text  # noqa: E402

BOUNDS = {"float64": 1e-10, "float32": 1e-4}


def _config(cell: str, dtype: str, steps: int, device: str, graphs: bool) -> RunConfig:
    return RunConfig(task=GaussianMeanTask(), model=ModelConfig(cell=cell, hidden_size=64),
                     train=TrainConfig(steps=steps, batch_size=128, dtype=dtype, log_every=50),
                     torch=TorchOptions(device=device, cuda_graphs=graphs))


def _train(config: RunConfig) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    import torch

    from torch_impl.backend import make_tutorial_trainer as Trainer

    trainer = Trainer(config)
    began = time.perf_counter()
    losses = []
    while trainer.step < config.train.steps:
        metrics = trainer.run(min(config.train.log_every, config.train.steps - trainer.step))
        losses.append(metrics.loss)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    seconds = time.perf_counter() - began
    return trainer.checkpoint().params, np.concatenate(losses), seconds


def _normalized(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[n] - b[n]))) / max(float(np.max(np.abs(b[n]))), 1e-3) for n in b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for cuda-graph-check.csv")
    parser.add_argument("--steps", type=integer(1), default=500, help="updates per variant")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check needs one", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    rows, failed = [], False
    header = ("cell,dtype,steps,graph_vs_eager_cuda,cuda_vs_cpu,graph_loss_rel,cpu_updates_per_s,"
              "cuda_eager_updates_per_s,cuda_graph_updates_per_s")
    for cell in ("gru", "lstm"):
        for dtype in ("float64", "float32"):
            runs = {name: _train(_config(cell, dtype, args.steps, device, graphs))
                    for name, device, graphs in (("cpu", "cpu", False), ("eager", "cuda", False), ("graph", "cuda", True))}
            graph_vs_eager = _normalized(runs["graph"][0], runs["eager"][0])
            cuda_vs_cpu = _normalized(runs["eager"][0], runs["cpu"][0])
            loss_rel = float(np.max(np.abs(runs["graph"][1] - runs["eager"][1]) / np.abs(runs["eager"][1])))
            rates = [args.steps / runs[name][2] for name in ("cpu", "eager", "graph")]
            ok = graph_vs_eager <= BOUNDS[dtype]
            failed |= not ok
            rows.append(f"{cell},{dtype},{args.steps},{graph_vs_eager:.3e},{cuda_vs_cpu:.3e},{loss_rel:.3e},"
                        + ",".join(f"{r:.1f}" for r in rates))
            print(f"{cell:>4} {dtype}: graph vs eager (CUDA) {graph_vs_eager:.2e}{'' if ok else ' !'}  CUDA vs CPU "
                  f"{cuda_vs_cpu:.2e}  loss curve {loss_rel:.2e}  updates/s cpu {rates[0]:.0f} eager {rates[1]:.0f} "
                  f"graph {rates[2]:.0f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "cuda-graph-check.csv", "\n".join([header, *rows]) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
