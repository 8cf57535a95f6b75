"""``python -m cogmeta ...`` (and ``torchrun ... -m cogmeta train ...``): the ``cogmeta`` command."""

import sys

from cogmeta.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports this module (`cogmeta sweep --workers`)
    sys.exit(main())
