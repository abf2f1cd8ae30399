"""``python -m mirror`` is the ``mirror`` command."""

import sys

from mirror.cli.main import main

sys.exit(main())
