"""Why the meta seq2seq encoder does not use the custom-VJP LSTM layer: a measurement.

The encoder's bidirectional LSTM runs padded sequences with a validity mask (the state is frozen on padding:
``jax_impl.seq2seq._lstm_direction``); ``jax_impl.recurrent_layers.lstm_layer`` has no mask. This times, at the
``seq2seq-me-cpu`` sizes (H = 64; the ME episode's support of 10 sequences plus the query, up to 5 tokens), the
value and gradient of one encoder direction by autodiff of the masked scan against the custom-VJP layer on the
same unmasked input (an upper bound on what the layer could give: a masked version would do more work).

    python benchmarks/seq2seq_encoder_layer.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from cogmeta.cli_options import integer
from jax_impl.numerics import matmul
from jax_impl.recurrent_layers import lstm_layer
from jax_impl.seq2seq import _lstm_direction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=integer(5), default=2000, help="timed calls, in 5 rounds (>= 5)")
    parser.add_argument("--hidden", type=integer(1), default=64)
    parser.add_argument("--length", type=integer(1), default=5)
    parser.add_argument("--batch", type=integer(1), default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t, b, h = args.length, args.batch, args.hidden
    x = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)
    w_ih, w_hh = (jnp.asarray(rng.uniform(-0.1, 0.1, (4 * h, h)), jnp.float32) for _ in range(2))
    b_ih, b_hh = (jnp.asarray(rng.uniform(-0.1, 0.1, 4 * h), jnp.float32) for _ in range(2))
    valid = jnp.asarray(np.arange(t)[:, None] < rng.integers(1, t + 1, b)[None, :])

    def masked(w_ih, w_hh, b_ih, b_hh):
        outputs, last = _lstm_direction(x, valid, w_ih, w_hh, b_ih, b_hh, False)
        return jnp.sum(outputs) + jnp.sum(last)

    def layer(w_ih, w_hh, b_ih, b_hh):
        zeros = jnp.zeros((b, h), jnp.float32)
        outputs, _ = lstm_layer(matmul(x, w_ih) + b_ih, zeros, zeros, w_hh, b_hh)
        return jnp.sum(outputs) + jnp.sum(outputs[-1])

    timings = {}
    for name, fn in (("masked scan, autodiff (the encoder)", masked), ("custom-VJP layer, no mask", layer)):
        step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2, 3)))
        jax.block_until_ready(step(w_ih, w_hh, b_ih, b_hh))
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(args.repeats // 5):
                out = step(w_ih, w_hh, b_ih, b_hh)
            jax.block_until_ready(out)
            rounds.append((time.perf_counter() - start) / (args.repeats // 5) * 1e6)
        timings[name] = float(np.median(rounds))
        print(f"{name:<40} {timings[name]:8.1f} us per value and gradient (median of 5 rounds)")
    first, second = timings.values()
    print(f"ratio masked / layer: {first / second:.2f} (T = {t}, B = {b}, H = {h}, jax {jax.__version__}, "
          f"{jax.default_backend()})")


if __name__ == "__main__":
    main()
