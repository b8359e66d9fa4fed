"""``python -m diskguard``: the same as the ``diskguard`` command."""

import sys

from .cli import main

sys.exit(main())
