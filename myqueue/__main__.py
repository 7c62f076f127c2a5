"""``python -m myqueue ...``: the same command line as the ``myqueue`` console script."""

import sys

from myqueue.cli.main import main

sys.exit(main())
