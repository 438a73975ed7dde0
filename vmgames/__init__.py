"""vmgames: an instruction-level x86-64 machine with a toy kernel, for measuring virtual-memory games.

The Python API (docs/python-api.md):

    import vmgames
    result = vmgames.run("build/touch", ["1024"], ram="8M", swap="64M")
    print(result.status, result.counters["faults"]["total"])

`run` takes `vmgames run`'s options by their Python names and returns a
`Result` (exit status, the guest's output, --stats-json's counters, and the
trace's events when asked for).  `boot` gives the kernel itself, for scripts
that drive it step by step as the experiments do.
"""

from vmgames.tools.api import CannotRun, OptionError, Result, parse_size, run
from vmgames.tools.boot import boot

__all__ = ["CannotRun", "OptionError", "Result", "boot", "parse_size", "run"]
