"""``assert_bitwise_on_cpu``: the suite's bitwise claims hold bit for bit on CPU and within tolerance elsewhere.

The GPU path cannot run here, so the platform is passed in: the same arrays must fail the CPU claim and pass the
GPU one when they are an ulp apart, and fail both when they are far apart.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from parity_tests._compare import assert_bitwise_on_cpu, jax_platform

pytestmark = [pytest.mark.parity, pytest.mark.jax]


@pytest.fixture(params=["float32", "float64"])
def values(request) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(7, 16)).astype(request.param)


def test_one_ulp_fails_on_cpu_and_passes_elsewhere(values):
    dtype = values.dtype.name
    nudged = np.nextafter(values, np.inf)
    assert_bitwise_on_cpu("same", values.copy(), values, "forward", dtype, platform="cpu")
    with pytest.raises(AssertionError, match="not bit-identical"):
        assert_bitwise_on_cpu("one ulp", nudged, values, "forward", dtype, platform="cpu")
    assert_bitwise_on_cpu("one ulp", nudged, values, "forward", dtype, platform="gpu")


def test_an_error_above_the_tolerance_fails_everywhere(values):
    dtype = values.dtype.name
    off = values * (1 + 1e-3)  # 100x the float32 forward tolerance, 1e8x the float64 one
    for platform in ("cpu", "gpu", "tpu"):
        with pytest.raises(AssertionError):
            assert_bitwise_on_cpu("off", off, values, "forward", dtype, platform=platform)


def test_the_platform_is_jaxs():
    assert jax_platform() == jax.default_backend()
