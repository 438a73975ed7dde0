"""A process's map as FreeBSD's `procstat -v` shows it.

One row per map entry: its range, protection (PRT), the pages of the range
resident in its object chain (RES) and those on swap (SWP, a column of
vmgames'; FreeBSD's procstat has none), the reference and shadow counts of its
top object (REF, SHD), its flags (C copy-on-write, N needs-copy), and the
type of the object at the bottom of its chain (TP: `df` for anonymous
memory, FreeBSD's default object, `vn` for a file) with the file's PATH.
The same rows go into the trace as a `map` event, so `vmgames report` can
print them from the trace alone.
"""

from __future__ import annotations

from typing import Any

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import Process
from vmgames.kernel.vm.map import MapEntry, prot_letters
from vmgames.kernel.vm.object import ANONYMOUS, VNODE
from vmgames.kernel.vmmeter import Recorder

OBJECT_TYPES = {ANONYMOUS: "df", VNODE: "vn"}   # procstat's two-letter names


def residency(entry: MapEntry) -> tuple[int, int]:
    """Pages of the entry's range an object of its chain holds in memory, and on swap (the topmost copy of
    each page is the one that counts)."""
    first, pages = entry.offset // PAGE_SIZE, (entry.end - entry.start) // PAGE_SIZE
    resident: set[int] = set()
    swapped: set[int] = set()
    obj, shift = entry.object, 0   # a page at entry index i is at pindex first + i + shift in obj
    while obj is not None:
        for held, into in ((obj.pages, resident), (obj.swap_blocks, swapped)):
            into.update(i for i in (pindex - first - shift for pindex in held)
                        if 0 <= i < pages and i not in resident and i not in swapped)
        shift += obj.backing_offset
        obj = obj.backing
    return len(resident), len(swapped)


def entries(proc: Process) -> list[dict[str, Any]]:
    """The rows of a process's map, as the `entries` of a `map` event."""
    rows = []
    for entry in proc.vmspace.map.entries:
        bottom = entry.object
        while bottom.backing is not None:
            bottom = bottom.backing
        resident, swapped = residency(entry)
        rows.append({"start": entry.start, "end": entry.end, "protection": prot_letters(entry.protection),
                     "resident": resident, "swapped": swapped, "ref": entry.object.ref_count,
                     "shadow": entry.object.shadow_count, "flags": entry.flags(),
                     "object_type": OBJECT_TYPES.get(bottom.kind, "--"),
                     "path": bottom.vnode.path if bottom.vnode else None})
    return rows


def record(recorder: Recorder, proc: Process, why: str) -> None:
    """Put a process's map into the recorder (and so the trace) as a `map` event; `why` is its kind."""
    recorder.event("map", why, process=proc.tgid, entries=entries(proc))


class MapsAtExit(Observer):
    """Records each process's map in the trace as it exits: the report shows the last one."""

    def before_exit(self, kernel: Kernel, proc: Process) -> None:
        record(kernel.recorder, proc, "exit")


def format_table(pid: int, rows: list[dict[str, Any]]) -> str:
    """`procstat -v` style text: a header line and a line per entry."""
    lines = [f"{'PID':>5} {'START':>18} {'END':>18} PRT {'RES':>6} {'SWP':>6} {'REF':>3} {'SHD':>3} FLAG TP PATH"]
    for row in rows:
        # A trace older than swap has no SWP figures: nothing was on swap.
        lines.append(f"{pid:>5} {row['start']:>#18x} {row['end']:>#18x} {row['protection']} {row['resident']:>6} "
                     f"{row.get('swapped', 0):>6} "
                     f"{row['ref']:>3} {row['shadow']:>3} {row['flags']:<4} {row['object_type']} {row['path'] or ''}"
                     .rstrip())
    return "\n".join(lines)
