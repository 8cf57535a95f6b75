"""The small float64 run every distributed test trains (no framework imports: the tests import it)."""

STEPS, STEPS_PER_CALL, BATCH = 200, 100, 16

#: ``cogmeta train`` arguments of the JAX equivalence runs (Gaussian tutorial task, GRU-8, T = 6).
JAX_CLI_ARGS = ["train", "--task", "gaussian", "--backend", "jax", "--dtype", "float64", "--steps", str(STEPS),
                "--batch-size", str(BATCH), "--hidden-size", "8", "--learning-rate", "0.01", "--clip-norm", "0.5",
                "--sequence-length", "6", "--steps-per-call", str(STEPS_PER_CALL), "--log-every", "50",
                "--eval-every", str(STEPS), "--eval-tasks", "8", "--checkpoint-every", str(STEPS), "--no-progress",
                "--no-figures", "--summary-tasks", "0"]
