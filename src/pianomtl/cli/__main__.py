"""``python -m pianomtl.cli``: the ``pianomtl`` command."""

import sys

from pianomtl.cli import main

sys.exit(main())
