"""``python -m harps_synth``: the ``harps-synth`` command."""

import sys

from harps_synth.cli import main

sys.exit(main())
