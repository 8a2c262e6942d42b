"""``python -m interpolant.cli`` (and ``torchrun -m interpolant.cli``) run the command line."""

import sys

from .main import main

sys.exit(main())
