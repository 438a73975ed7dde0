"""Pre-faulting: mapping a file's resident pages before any fault asks for them.

Dillon's paper: running `ls` or `ps` over and over takes the same faults
each time on pages the file's object already holds; FreeBSD maps them when
a file is mapped, at exec and mmap (vm_map_pmap_enter, bounded), so that the
program takes no fault on them at all (`vmgames run --prefault`, MAP).
Linux instead maps them as faults come (do_fault_around): a read fault on a
file's page maps the resident pages of the 64 KiB around it too
(`--prefault fault-around`).  Either way only pages already in memory, and
in use (not the pageout daemon's candidates), are mapped, read-only: a write
still faults, to copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.vm.fault import find_page
from vmgames.kernel.vm.object import VNODE, VMObject
from vmgames.kernel.vm.pagequeue import ACTIVE
from vmgames.kernel.vm.pmap import PROT_WRITE

if TYPE_CHECKING:
    from vmgames.kernel.vm.map import MapEntry, VMSpace

MAP, FAULT_AROUND = "map", "fault-around"
MODES = (MAP, FAULT_AROUND)
# FreeBSD's MAX_INIT_PT: the pages vm_map_pmap_enter maps for one mapping at the most.
PREFAULT_PAGES = 96
# Linux's fault_around_bytes (64 KiB): the aligned window a read fault on a file's page maps.
FAULT_AROUND_PAGES = 16


def vm_map_pmap_enter(vmspace: VMSpace, entry: MapEntry, limit: int = PREFAULT_PAGES) -> int:
    """Map the resident pages of the file behind `entry`, read-only, up to `limit`; returns how many."""
    obj, offset = entry.bottom()
    offset //= PAGE_SIZE
    if obj.kind != VNODE:
        return 0
    pages = (entry.end - entry.start) // PAGE_SIZE
    mapped = 0
    for pindex in sorted(obj.pages):
        if mapped == limit:
            break
        if offset <= pindex < offset + pages:
            mapped += _map_resident(vmspace, entry, obj, entry.start + (pindex - offset) * PAGE_SIZE, "prefault")
    return mapped


def fault_around(vmspace: VMSpace, va: int) -> int:
    """Linux's do_fault_around, after a read fault at `va` on a file's page: map the resident pages of the
    file in the aligned FAULT_AROUND_PAGES window around it (within its map entry); returns how many."""
    entry = vmspace.map.lookup(va)
    if entry is None:
        return 0
    obj, _ = entry.bottom()
    if obj.kind != VNODE:
        return 0
    window = FAULT_AROUND_PAGES * PAGE_SIZE
    first = va & ~(window - 1)
    return sum(_map_resident(vmspace, entry, obj, at, "fault-around")
               for at in range(max(first, entry.start), min(first + window, entry.end), PAGE_SIZE))


def _map_resident(vmspace: VMSpace, entry: MapEntry, obj: VMObject, va: int, reason: str) -> bool:
    """Map the file object `obj`'s page at `va` read-only if it is resident, in use, and what a fault would
    find there, and nothing is mapped yet; whether it was."""
    holder, _, _, page = find_page(entry, va)
    if holder is not obj or page is None or page.queue is not obj.allocator.queues[ACTIVE] \
            or vmspace.pmap.lookup(va):
        return False     # not in memory, a page of its own above the file's hides it, or already mapped
    vmspace.pmap.enter(va, page, entry.protection & ~PROT_WRITE, reason)
    return True
