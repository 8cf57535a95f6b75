"""A torchrun worker whose run config depends on its rank (a seed per rank): must fail in every rank.

Prints ``CONFIG-ERROR <message>`` and exits with status 3 when the expected ValueError is raised.
"""

from __future__ import annotations

import sys

from cogmeta.config import RunConfig, TrainConfig
from cogmeta.distributed import launch_env
from torch_impl.distributed import DataParallelTrainer, shutdown


def main() -> int:
    env = launch_env()
    config = RunConfig(train=TrainConfig(batch_size=8, seed=env.rank, dtype="float64"))
    try:
        DataParallelTrainer(config, timeout_s=60)
    except ValueError as error:
        print(f"CONFIG-ERROR rank {env.rank}: {error}", flush=True)
        return 3
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
