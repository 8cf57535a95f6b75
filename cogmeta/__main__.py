"""``python -m cogmeta ...`` (and ``torchrun ... -m cogmeta train ...``): the ``cogmeta`` command."""

import sys

from cogmeta.cli import main

sys.exit(main())
