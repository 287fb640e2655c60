"""``python -m ml.synth``: the ``harps-synth`` command."""

import sys

from ml.synth.cli import main

sys.exit(main())
