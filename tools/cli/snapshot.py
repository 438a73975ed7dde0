"""--snapshot-at: the address spaces and shadow chains drawn, and each map as procstat -v lists it."""

from __future__ import annotations

import os
import shutil
import subprocess

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import Process
from vmgames.tools.cli.output import say, say_error


def snapshot_files(path: str) -> tuple[str, str, str]:
    """The DOT file, the SVG drawn from it and the procstat -v tables beside it."""
    base = os.path.splitext(path)[0]
    return path, base + ".svg", base + ".txt"


def _draw_svg(dot: str, svg: str) -> None:
    """Draw the snapshot with graphviz's dot, if it is there; say what came of it."""
    if not shutil.which("dot"):
        say_error(f"graphviz's dot not found: wrote only {dot}; install graphviz for the SVG")
        return
    try:
        drawn = subprocess.run(["dot", "-Tsvg", dot, "-o", svg], capture_output=True, text=True, check=False)
    except OSError as error:
        say_error(f"dot: {error.strerror}: no SVG drawn")
        return
    if drawn.returncode:
        said = drawn.stderr.strip().splitlines()
        say_error(f"dot failed (exit status {drawn.returncode}{': ' + said[0] if said else ''}): no SVG drawn")
        return
    say_error(f"and drawn in {svg}")


class SnapshotAt(Observer):
    """Writes the VM picture and the procstat -v tables once: at instruction N, or before the first exit."""

    def __init__(self, when: str, path: str, tracing: bool) -> None:
        self.at_exit = when == "exit"
        self.pause_at = None if self.at_exit else int(when)
        self.path = path
        self.tracing = tracing
        self.written = False

    def on_pause(self, kernel: Kernel) -> None:
        self.write(kernel, f"t = {kernel.machine.now:,} instructions")

    def before_exit(self, kernel: Kernel, proc: Process) -> None:
        if self.at_exit and not self.written:
            self.write(kernel, f"the exit of {proc.name} [{proc.pid}], t = {kernel.machine.now:,}")

    def write(self, kernel: Kernel, title: str) -> None:
        from vmgames.tools import procstat
        from vmgames.tools.snapshot import live_processes, to_dot

        self.written = True
        dot, svg, text = snapshot_files(self.path)
        try:
            with open(dot, "w", encoding="utf-8") as f:
                f.write(to_dot(kernel, title))
        except OSError as error:
            say_error(f"--snapshot {dot}: {error.strerror}: no snapshot")
            return
        say_error(f"snapshot at {title} written to {dot}")
        _draw_svg(dot, svg)
        tables = []
        for proc in live_processes(kernel):
            tables.append(procstat.format_table(proc.pid, procstat.entries(proc)))
            if self.tracing:
                procstat.record(kernel.recorder, proc, "snapshot")
        say("\n\n".join(tables))
        try:
            with open(text, "w", encoding="utf-8") as f:
                f.write("\n\n".join(tables) + "\n")
        except OSError as error:
            say_error(f"{text}: {error.strerror}: the maps are only on stderr")
            return
        say_error(f"the maps as procstat -v shows them written to {text}")
