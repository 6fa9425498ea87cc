"""``python -m mediagw`` is the ``mediagw`` command."""
import sys

from mediagw.cli import main

sys.exit(main())
