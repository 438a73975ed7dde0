"""Pre-faulting: mapping a file's resident pages at exec, before any fault asks for them.

Dillon's paper: running `ls` or `ps` over and over takes the same faults
each time on pages the file's object already holds; FreeBSD maps them when
the image is mapped (vm_map_pmap_enter, bounded), so that the program takes
no fault on them at all.  Only pages already resident are mapped, read-only
(a write still faults, to copy), and at most PREFAULT_PAGES per mapping;
`vmgames run --prefault` turns it on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.ram import PAGE_SIZE
from kernel.vm.fault import find_page
from kernel.vm.object import VNODE
from kernel.vm.pmap import PROT_WRITE

if TYPE_CHECKING:
    from kernel.vm.map import MapEntry, VMSpace

# FreeBSD's MAX_INIT_PT: the pages vm_map_pmap_enter maps for one mapping at the most.
PREFAULT_PAGES = 96


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
        if not offset <= pindex < offset + pages:
            continue
        va = entry.start + (pindex - offset) * PAGE_SIZE
        holder, _, _, page = find_page(entry, va)
        if holder is not obj or vmspace.pmap.lookup(va):
            continue        # a page of its own above the file's hides it, or it is mapped already
        vmspace.pmap.enter(va, page, entry.protection & ~PROT_WRITE, "prefault")
        mapped += 1
    return mapped
