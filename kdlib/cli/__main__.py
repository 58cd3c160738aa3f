"""``python -m kdlib.cli``: the ``kdlib`` command."""

import sys

from kdlib.cli import main

sys.exit(main())
