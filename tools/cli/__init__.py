"""The `vmgames` command, one file per command.

- main.py        the entry point: the command line split into options and the program's own words,
                 the standard streams the host gave (or did not), exit statuses for Ctrl-C and a closed pipe
- parser.py      every option, its help and its checks (sizes, counts, durations, seeds)
- asm.py         vmgames asm
- run.py         vmgames run (and its gdb and --break-on modes)
- snapshot.py    --snapshot-at: the VM picture and procstat -v tables, taken by a kernel observer
- report.py      vmgames report
- experiment.py  vmgames experiment chains|zerocopy
- output.py      one-line messages on stderr, and output paths checked before any work
"""

from vmgames.tools.cli.main import main, parse_args

__all__ = ["main", "parse_args"]
