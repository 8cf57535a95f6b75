"""The framework-free pieces of data-parallel training (``cogmeta.distributed``): no torch, no JAX."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.config import RunConfig, TrainConfig
from cogmeta.distributed import (
    config_digest,
    launch_env,
    require_divisible,
    require_same_config,
    shard_bounds,
    timeout_s,
)

FULL_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_shards_tile_the_global_batch_in_order(workers):
    batch = np.arange(16)
    pieces = [batch[slice(*shard_bounds(16, rank, workers))] for rank in range(workers)]
    assert all(len(piece) == 16 // workers for piece in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), batch)


def test_shards_average_to_the_global_mean():
    """Mean of equal-size shard means = global mean (what makes averaged gradients exact)."""
    values = np.random.default_rng(0).standard_normal(24)
    shard_means = [values[slice(*shard_bounds(24, rank, 3))].mean() for rank in range(3)]
    assert np.mean(shard_means) == pytest.approx(values.mean(), rel=1e-14)


def test_indivisible_batch_names_the_fix():
    with pytest.raises(ValueError, match=r"batch_size=10 is not divisible by the 4 devices.*--batch-size 8 or 12"):
        require_divisible(10, 4)
    with pytest.raises(ValueError, match="rank must lie in"):
        shard_bounds(8, 2, 2)
    with pytest.raises(ValueError, match="must be >= 1"):
        require_divisible(8, 0)


def test_launch_env_absent_complete_and_partial():
    assert launch_env({}) is None
    env = launch_env(FULL_ENV)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (1, 2, 1, "127.0.0.1", 29500)
    assert not env.is_writer
    partial = {name: value for name, value in FULL_ENV.items() if name != "MASTER_ADDR"}
    with pytest.raises(ValueError, match="MASTER_ADDR missing.*torchrun"):
        launch_env(partial)
    with pytest.raises(ValueError, match="RANK=2 must lie in"):
        launch_env({**FULL_ENV, "RANK": "2"})
    with pytest.raises(ValueError, match="MASTER_PORT must be an integer"):
        launch_env({**FULL_ENV, "MASTER_PORT": "http"})


def test_config_digest_detects_any_difference():
    config = RunConfig(train=TrainConfig(batch_size=8))
    assert config_digest(config) == config_digest(RunConfig.from_dict(config.to_dict()))
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=1))
    digests = [config_digest(config), config_digest(config), config_digest(other)]
    require_same_config(digests[:2])
    with pytest.raises(ValueError, match=r"rank\(s\) 2 disagree with rank 0"):
        require_same_config(digests)


def test_timeout_from_environment():
    assert timeout_s({}) == 120.0
    assert timeout_s({"COGMETA_DISTRIBUTED_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="COGMETA_DISTRIBUTED_TIMEOUT must be a positive number"):
        timeout_s({"COGMETA_DISTRIBUTED_TIMEOUT": "0"})
