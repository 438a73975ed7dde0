"""pmap: a process's x86-64 page tables, kept in emulated RAM.

Page tables are a cache of what the VM objects say (FreeBSD's "throw-away"
page tables): a missing entry is rebuilt by the fault handler, so the pmap
may drop mappings whenever that is convenient.  Every page mapped here gets a
pv entry, so the kernel can find all mappings of a physical page.

TLB invalidations are only needed where the address space is loaded
(`active_cpus`, FreeBSD's pm_active): the CPU making the change, and a
shootdown IPI to each other one (kernel/vm/shootdown.py); the others will be
flushed when they load its CR3.
"""

from __future__ import annotations

from vmgames.emulator import pte as E
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.vm.page import PageAllocator, VMPage
from vmgames.kernel.vm.shootdown import TLBShootdown

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4

_SHIFTS = (39, 30, 21)
_SPAN = (1 << 39, 1 << 30, 1 << 21, 1 << 12)   # bytes mapped by one entry at each level


class PageTable:
    """One page-table page and which of its 512 entries are in use, so that
    walks and teardown visit only what is mapped and empty tables can be freed."""

    __slots__ = ("page", "used")

    def __init__(self, page: VMPage) -> None:
        self.page = page
        self.used: set[int] = set()


class Pmap:
    """One address space's page tables, rooted at a PML4 frame."""

    def __init__(self, allocator: PageAllocator, shootdown: TLBShootdown) -> None:
        self.allocator = allocator
        self.shootdown = shootdown
        self.recorder = allocator.recorder
        self.qwords = allocator.ram.qwords
        allocator.vm_wait(1)
        self.root = allocator.alloc(wired=True)
        self.tables: dict[int, PageTable] = {self.root.frame: PageTable(self.root)}
        allocator.pmaps[self] = None
        self.resident = 0
        self.active_cpus: set[int] = set()     # the CPUs whose CR3 points here (pm_active); the scheduler keeps it

    @property
    def cr3(self) -> int:
        return self.root.paddr

    def _slot(self, va: int, create: bool) -> int | None:
        """Index into RAM (in qwords) of the PT entry for va; builds missing tables if asked."""
        table = self.root.frame
        for shift in _SHIFTS:
            index = (va >> shift) & 0x1FF
            slot = table * 512 + index
            entry = self.qwords[slot]
            if not entry & E.P:
                if not create:
                    return None
                page = self.allocator.alloc(wired=True)
                self.tables[page.frame] = PageTable(page)
                self.tables[table].used.add(index)
                self.qwords[slot] = page.paddr | E.P | E.RW | E.US
                self.recorder.event("pte", "table", address=va, level=shift, new=page.paddr)
                entry = self.qwords[slot]
            table = E.frame_of(entry)
        return table * 512 + ((va >> 12) & 0x1FF)

    def enter(self, va: int, page: VMPage, prot: int, reason: str) -> None:
        """Map `page` at `va` with `prot`; replaces whatever was there."""
        slot = self._slot(va, create=True)
        old = self.qwords[slot]
        new = page.paddr | E.P | E.US | (E.RW if prot & PROT_WRITE else 0) | (0 if prot & PROT_EXEC else E.NX)
        if old & E.P and E.frame_of(old) == page.frame:
            new |= old & (E.A | E.D)
        else:
            if old & E.P:
                self._drop_pv(old, va)
                self.resident -= 1
            page.pv.append((self, va))
            self.resident += 1
            self.tables[slot >> 9].used.add(slot & 0x1FF)
        self.qwords[slot] = new
        self.recorder.event("pte", "write", address=va, old=old, new=new, reason=reason)
        if old & E.P and self.active_cpus and _lost_rights(old, new):
            self.shootdown.invalidate(self.active_cpus, [va], reason)

    def _present_leaves(self, start: int, end: int) -> list[tuple[int, int]]:
        """(slot, va) of every present leaf entry in [start, end), visiting only tables in use."""
        found: list[tuple[int, int]] = []
        tables = self.tables

        def visit(frame: int, level: int, base: int) -> None:
            span = _SPAN[level]
            first = max(start - base, 0) // span
            last = min((end - 1 - base) // span, 511)
            for index in sorted(tables[frame].used):
                if index < first or index > last:
                    continue
                va = base + index * span
                if level == 3:
                    found.append((frame * 512 + index, va))
                else:
                    visit(E.frame_of(self.qwords[frame * 512 + index]), level + 1, va)

        if start < end:
            visit(self.root.frame, 0, 0)
        return found

    def remove(self, start: int, end: int, reason: str) -> None:
        """Unmap every page in [start, end)."""
        leaves = self._present_leaves(start, end)
        for slot, va in leaves:
            self._unmap_slot(slot, va, self.qwords[slot], reason)
        self.shootdown.invalidate(self.active_cpus, [va for _, va in leaves], reason)

    def protect(self, start: int, end: int, prot: int, reason: str) -> None:
        """Take rights away from present mappings in [start, end); rights are granted lazily on fault."""
        if prot == PROT_NONE:
            self.remove(start, end, reason)
            return
        changed = []
        clear = 0 if prot & PROT_WRITE else E.RW
        set_ = 0 if prot & PROT_EXEC else E.NX
        qwords, recorder = self.qwords, self.recorder
        traced = recorder.sink is not None
        for slot, va in self._present_leaves(start, end):
            old = qwords[slot]
            new = (old & ~clear) | set_
            if new != old:
                qwords[slot] = new
                if traced:
                    recorder.event("pte", "write", address=va, old=old, new=new, reason=reason)
                changed.append(va)
        if not traced:
            recorder.tally("pte", "write", len(changed), reason)     # fork write-protects every page: counted at once
        self.shootdown.invalidate(self.active_cpus, changed, reason)

    def resident_in(self, start: int, end: int) -> int:
        """How many pages of [start, end) are mapped."""
        return len(self._present_leaves(start, end))

    def lookup(self, va: int) -> int:
        """The leaf PTE for va, or 0."""
        slot = self._slot(va, create=False)
        return 0 if slot is None else self.qwords[slot]

    def destroy(self) -> None:
        """Tear down every mapping and free every page-table page (exit, exec).

        No TLB invalidation is counted: the CPU loads another CR3 before it runs again.
        """
        leaves = self._present_leaves(0, 1 << 47)
        traced = self.recorder.sink is not None
        for slot, va in leaves:
            entry = self.qwords[slot]
            self._drop_pv(entry, va)
            if traced:
                self.recorder.event("pte", "write", address=va, old=entry, new=0, reason="exit")
        if not traced:
            self.recorder.tally("pte", "write", len(leaves), "exit")
        for frame, table in self.tables.items():
            for index in table.used:
                self.qwords[frame * 512 + index] = 0
            self.allocator.free(table.page)
        self.tables.clear()
        self.resident = 0
        self.allocator.pmaps.pop(self, None)

    def _unmap_slot(self, slot: int, va: int, old: int, reason: str) -> None:
        """Clear one leaf entry; the caller invalidates the TLB."""
        self.qwords[slot] = 0
        self.recorder.event("pte", "write", address=va, old=old, new=0, reason=reason)
        self._drop_pv(old, va)
        self.resident -= 1
        self._release_tables(va)

    def _release_tables(self, va: int) -> None:
        """Forget va's leaf entry, and free the page-table pages on its path that became empty."""
        path = []
        table = self.root.frame
        for shift in _SHIFTS:
            index = (va >> shift) & 0x1FF
            path.append((table, index))
            table = E.frame_of(self.qwords[table * 512 + index])
        self.tables[table].used.discard((va >> 12) & 0x1FF)
        child = table
        for parent, index in reversed(path):
            if self.tables[child].used:
                break
            self.allocator.free(self.tables.pop(child).page)
            self.qwords[parent * 512 + index] = 0
            self.tables[parent].used.discard(index)
            child = parent

    def _drop_pv(self, entry: int, va: int) -> None:
        """A mapping of a page goes: its pv entry with it, and what its dirty bit said stays with the page."""
        page = self.allocator.page_of(E.frame_of(entry))
        page.pv.remove((self, va))
        if entry & E.D:
            page.dirty = True


def _lost_rights(old: int, new: int) -> bool:
    """Whether a PTE change takes something away, so a cached TLB entry would be wrong."""
    if E.frame_of(old) != E.frame_of(new):
        return True
    if old & E.RW and not new & E.RW:
        return True
    return bool(new & E.NX and not old & E.NX)


def remove_all(page: VMPage, reason: str) -> None:
    """pmap_remove_all: unmap a physical page from every address space."""
    for pmap, va in list(page.pv):
        pmap.remove(va, va + PAGE_SIZE, reason)


def remove_all_by_scan(page: VMPage, reason: str, pmaps: list[Pmap]) -> int:
    """pmap_remove_all without a reverse map: probe every present PTE of every address space for the page's
    frame, as a kernel with no pv entries must (Linux 2.4 swept page tables so); returns the PTEs probed."""
    probes = 0
    for pmap in pmaps:
        found = []
        for slot, va in pmap._present_leaves(0, 1 << 47):
            probes += 1
            if E.frame_of(pmap.qwords[slot]) == page.frame:
                found.append(va)
        for va in found:
            pmap.remove(va, va + PAGE_SIZE, reason)
    return probes


def is_modified(page: VMPage) -> bool:
    """pmap_is_modified: whether a PTE mapping the page has its dirty bit set."""
    return any(pmap.lookup(va) & E.D for pmap, va in page.pv)


def ts_referenced(page: VMPage, stale: dict[Pmap, list[int]]) -> int:
    """pmap_ts_referenced: how many of the PTEs mapping `page` have their accessed bit set, clearing them.

    A TLB may still hold a translation whose A bit is cleared, and a CPU
    using it does not set the bit again: each address goes into `stale`,
    under its pmap, for the caller to invalidate in one batch (FreeBSD
    invalidates; Linux's x86 ptep_clear_flush_young does not, and accepts
    missing some references).
    """
    refs = 0
    for pmap, va in page.pv:
        slot = pmap._slot(va, create=False)
        entry = pmap.qwords[slot]
        if entry & E.A:
            pmap.qwords[slot] = entry & ~E.A
            pmap.recorder.event("pte", "write", address=va, old=entry, new=entry & ~E.A, reason="aging")
            stale.setdefault(pmap, []).append(va)
            refs += 1
    return refs



def remove_write(page: VMPage, reason: str) -> None:
    """pmap_remove_write: make every mapping of a physical page read-only."""
    for pmap, va in list(page.pv):
        pmap.protect(va, va + PAGE_SIZE, PROT_READ | PROT_EXEC, reason)
