"""pmap: a process's x86-64 page tables, kept in emulated RAM.

Page tables are a cache of what the VM objects say (FreeBSD's "throw-away"
page tables): a missing entry is rebuilt by the fault handler, so the pmap
may drop mappings whenever that is convenient.  Every page mapped here gets a
pv entry, so the kernel can find all mappings of a physical page.

TLB invalidations are only needed for the address space that is loaded on
the CPU; the others will be flushed when their CR3 is loaded.
"""

from __future__ import annotations

from emulator import pte as E
from emulator.ram import PAGE_SIZE
from kernel.vm.page import PageAllocator, VMPage

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4

_SHIFTS = (39, 30, 21)


class Pmap:
    """One address space's page tables, rooted at a PML4 frame."""

    def __init__(self, allocator: PageAllocator) -> None:
        self.allocator = allocator
        self.machine = allocator.machine
        self.recorder = allocator.recorder
        self.qwords = allocator.ram.qwords
        self.root = allocator.alloc()
        # For each page-table page (by frame): its VMPage and how many entries are in use,
        # so that empty tables can be freed.
        self.tables: dict[int, list] = {self.root.frame: [self.root, 0]}
        self.resident = 0

    @property
    def cr3(self) -> int:
        return self.root.paddr

    @property
    def active(self) -> bool:
        return self.machine.cr3 == self.root.paddr

    def _slot(self, va: int, create: bool) -> int | None:
        """Index into RAM (in qwords) of the PT entry for va; builds missing tables if asked."""
        table = self.root.frame
        for shift in _SHIFTS:
            slot = table * 512 + ((va >> shift) & 0x1FF)
            entry = self.qwords[slot]
            if not entry & E.P:
                if not create:
                    return None
                page = self.allocator.alloc()
                self.tables[page.frame] = [page, 0]
                self.tables[table][1] += 1
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
        if old & E.P:
            if E.frame_of(old) == page.frame:
                new |= old & (E.A | E.D)
            else:
                self._drop_pv(old, va)
                self.resident -= 1
                self._leaf_table(slot)[1] -= 1
        if not old & E.P or E.frame_of(old) != page.frame:
            page.pv.append((self, va))
            self.resident += 1
            self._leaf_table(slot)[1] += 1
        if prot & PROT_EXEC:
            page.held_code = True
        self.qwords[slot] = new
        self.recorder.event("pte", "write", address=va, old=old, new=new, reason=reason)
        if old & E.P and self.active and _lost_rights(old, new):
            self.machine.tlb.invalidate_page(va, reason)

    def remove(self, start: int, end: int, reason: str) -> None:
        """Unmap every page in [start, end)."""
        for va in range(start, end, PAGE_SIZE):
            slot = self._slot(va, create=False)
            if slot is None:
                continue
            old = self.qwords[slot]
            if old & E.P:
                self._unmap_slot(slot, va, old, reason)

    def protect(self, start: int, end: int, prot: int, reason: str) -> None:
        """Take rights away from present mappings in [start, end); rights are granted lazily on fault."""
        for va in range(start, end, PAGE_SIZE):
            slot = self._slot(va, create=False)
            if slot is None:
                continue
            old = self.qwords[slot]
            if not old & E.P:
                continue
            if prot == PROT_NONE:
                self._unmap_slot(slot, va, old, reason)
                continue
            new = old
            if not prot & PROT_WRITE:
                new &= ~E.RW
            if not prot & PROT_EXEC:
                new |= E.NX
            if new != old:
                self.qwords[slot] = new
                self.recorder.event("pte", "write", address=va, old=old, new=new, reason=reason)
                if self.active:
                    self.machine.tlb.invalidate_page(va, reason)

    def lookup(self, va: int) -> int:
        """The leaf PTE for va, or 0."""
        slot = self._slot(va, create=False)
        return 0 if slot is None else self.qwords[slot]

    def destroy(self) -> None:
        """Tear down every mapping and free every page-table page (exit, exec).

        No TLB invalidation is counted: the CPU loads another CR3 before it runs again.
        """
        self._destroy_table(self.root.frame, 0, 0)
        for page, _ in self.tables.values():
            self.allocator.free(page)
        self.tables.clear()
        self.resident = 0

    def _destroy_table(self, frame: int, level: int, base: int) -> None:
        for index in range(512):
            slot = frame * 512 + index
            entry = self.qwords[slot]
            if not entry & E.P:
                continue
            va = base | (index << (39 - 9 * level))
            if level == 3:
                self._drop_pv(entry, _canonical(va))
                self.recorder.event("pte", "write", address=_canonical(va), old=entry, new=0, reason="exit")
            else:
                self._destroy_table(E.frame_of(entry), level + 1, va)
            self.qwords[slot] = 0

    def _unmap_slot(self, slot: int, va: int, old: int, reason: str) -> None:
        self.qwords[slot] = 0
        self.recorder.event("pte", "write", address=va, old=old, new=0, reason=reason)
        self._drop_pv(old, va)
        self.resident -= 1
        if self.active:
            self.machine.tlb.invalidate_page(va, reason)
        self._release_tables(va)

    def _release_tables(self, va: int) -> None:
        """Free the page-table pages on va's path that became empty."""
        path = []
        table = self.root.frame
        for shift in _SHIFTS:
            slot = table * 512 + ((va >> shift) & 0x1FF)
            path.append((table, slot))
            table = E.frame_of(self.qwords[slot])
        self.tables[table][1] -= 1
        child = table
        for parent, slot in reversed(path):
            if self.tables[child][1] > 0:
                break
            page, _ = self.tables.pop(child)
            self.qwords[slot] = 0
            self.allocator.free(page)
            self.tables[parent][1] -= 1
            child = parent

    def _leaf_table(self, slot: int) -> list:
        return self.tables[slot // 512]

    def _drop_pv(self, entry: int, va: int) -> None:
        page = self.allocator.page_of(E.frame_of(entry))
        page.pv.remove((self, va))


def _lost_rights(old: int, new: int) -> bool:
    """Whether a PTE change takes something away, so a cached TLB entry would be wrong."""
    if E.frame_of(old) != E.frame_of(new):
        return True
    if old & E.RW and not new & E.RW:
        return True
    return bool(new & E.NX and not old & E.NX)


def _canonical(va: int) -> int:
    return va | 0xFFFF_0000_0000_0000 if va & (1 << 47) else va


def remove_all(page: VMPage, reason: str) -> None:
    """pmap_remove_all: unmap a physical page from every address space."""
    for pmap, va in list(page.pv):
        slot = pmap._slot(va, create=False)
        pmap._unmap_slot(slot, va, pmap.qwords[slot], reason)


def write_protect_all(page: VMPage, reason: str) -> None:
    """pmap_remove_write: make every mapping of a page read-only."""
    for pmap, va in page.pv:
        pmap.protect(va, va + PAGE_SIZE, PROT_READ | PROT_EXEC, reason)
