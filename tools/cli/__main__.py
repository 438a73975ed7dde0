"""python -m vmgames.tools.cli: the vmgames command."""

import sys

from vmgames.tools.cli.main import main

sys.exit(main())
