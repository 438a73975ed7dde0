"""python -m tools.cli: the vmgames command."""

import sys

from tools.cli.main import main

sys.exit(main())
