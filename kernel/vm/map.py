"""vm_map: a process's address space as a sorted list of entries.

Each entry maps [start, end) to a VM object at an offset, with a protection,
a copy-on-write flag and FreeBSD's needs-copy flag (the shadow object is
created on the first write fault, not when the entry is made).  A vmspace
is a map together with its pmap (the page tables that cache it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.vm.object import ANONYMOUS, VMObject, Vnode
from vmgames.kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE, Pmap

USER_TOP = 0x0000_8000_0000_0000 - PAGE_SIZE   # highest user address + 1 (the last page stays unmapped)
MMAP_TOP = 0x0000_7FFF_F000_0000                # mmap without a hint allocates downwards from here
MMAP_BOTTOM = 0x0000_0001_0000_0000


def prot_letters(prot: int) -> str:
    return ("r" if prot & PROT_READ else "-") + ("w" if prot & PROT_WRITE else "-") + ("x" if prot & PROT_EXEC else "-")


@dataclass(eq=False)
class MapEntry:
    """A vm_map_entry."""

    start: int
    end: int
    object: VMObject
    offset: int                # bytes into the object
    protection: int
    max_protection: int = PROT_READ | PROT_WRITE | PROT_EXEC
    cow: bool = False          # writes go to a private copy, never to the object itself
    needs_copy: bool = False   # a shadow must be pushed before the first write
    shared: bool = False       # MAP_SHARED: children share the object, no COW at fork
    name: str = ""

    def pindex(self, va: int) -> int:
        """Page index in the entry's object of the page holding va."""
        return (va - self.start + self.offset) // PAGE_SIZE

    def bottom(self) -> tuple[VMObject, int]:
        """The object at the bottom of the entry's shadow chain (a file's, for a file mapping), and the offset
        in it, in bytes, of the entry's start."""
        obj, offset = self.object, self.offset
        while obj.backing is not None:
            offset += obj.backing_offset * PAGE_SIZE
            obj = obj.backing
        return obj, offset

    def flags(self) -> str:
        """procstat -v style: C for copy-on-write, N for needs-copy."""
        return ("C" if self.cow else "-") + ("N" if self.needs_copy else "-")


@dataclass(eq=False)
class VMMap:
    entries: list[MapEntry] = field(default_factory=list)
    hint: MapEntry | None = None    # the last entry found, as FreeBSD's map->hint: faults cluster

    def lookup(self, va: int) -> MapEntry | None:
        hint = self.hint
        if hint is not None and hint.start <= va < hint.end:
            return hint
        i = bisect.bisect_right(self.entries, va, key=lambda e: e.start) - 1
        if i >= 0 and self.entries[i].start <= va < self.entries[i].end:
            self.hint = self.entries[i]
            return self.hint
        return None

    def insert(self, entry: MapEntry) -> None:
        if self.overlaps(entry.start, entry.end):
            raise RuntimeError(f"map entry [{entry.start:#x}, {entry.end:#x}) overlaps another")
        bisect.insort(self.entries, entry, key=lambda e: e.start)

    def overlaps(self, start: int, end: int) -> bool:
        return any(e.start < end and start < e.end for e in self.entries)

    def covered(self, start: int, end: int) -> bool:
        """Whether every page of [start, end) is in some entry."""
        at = start
        for e in self.entries:
            if e.end <= at:
                continue
            if e.start > at:
                return False
            at = e.end
            if at >= end:
                return True
        return at >= end

    def find_space(self, length: int, top: int = MMAP_TOP, bottom: int = MMAP_BOTTOM) -> int | None:
        """The highest free range of `length` bytes below `top` (Linux's top-down mmap)."""
        end = top
        for e in reversed(self.entries):
            if e.start >= end:
                continue
            if e.end <= end - length:
                break
            end = e.start
        return end - length if end - length >= bottom else None

    def clip(self, start: int, end: int) -> list[MapEntry]:
        """Split entries so that none straddles start or end; return those inside."""
        inside = []
        for e in list(self.entries):
            if e.end <= start or e.start >= end:
                continue
            if e.start < start:
                e = self._split(e, start)
            if e.end > end:
                self._split(e, end)
            inside.append(e)
        return inside

    def _split(self, entry: MapEntry, at: int) -> MapEntry:
        """vm_map_clip: the right part becomes a new entry sharing the object; returns it."""
        right = MapEntry(at, entry.end, entry.object, entry.offset + (at - entry.start), entry.protection,
                         entry.max_protection, entry.cow, entry.needs_copy, entry.shared, entry.name)
        entry.end = at
        entry.object.reference()
        self.insert(right)
        return right

    def remove(self, entry: MapEntry) -> None:
        self.entries.remove(entry)
        if self.hint is entry:
            self.hint = None


@dataclass(eq=False)
class VMSpace:
    """A process's address space: the map, its page tables, its heap bounds, and the program it holds."""

    map: VMMap
    pmap: Pmap
    heap_start: int = 0
    heap_end: int = 0
    users: int = 1      # tasks using it (Linux's mm_users): the threads of a process, a vfork child
    exe: Vnode | None = None     # the file exec loaded (Linux's mm->exe_file): /proc/self/exe

    def objects(self) -> list[VMObject]:
        """Every object the map reaches, once each: the entries' objects and the chains below them."""
        found: dict[int, VMObject] = {}
        for entry in self.map.entries:
            obj = entry.object
            while obj is not None and obj.id not in found:
                found[obj.id] = obj
                obj = obj.backing
        return list(found.values())

    def unmap(self, start: int, end: int, reason: str) -> None:
        """Remove [start, end) from the map and the page tables, dropping object references."""
        for entry in self.map.clip(start, end):
            self.pmap.remove(entry.start, entry.end, reason)
            self.map.remove(entry)
            obj = entry.object
            others = sum(other.object is obj for other in self.map.entries)
            if others and obj.kind == ANONYMOUS and not obj.shadow_count and obj.ref_count == 1 + others:
                # Only this map reaches the object, and its other entries do not see this range of it: the
                # pages there (and their swap) go now, not when the object dies (FreeBSD's OBJ_ONEMAPPING case).
                obj.page_remove(entry.pindex(entry.start), entry.pindex(entry.end - 1) + 1)
            obj.deallocate()

    def fork(self, pmap: Pmap) -> VMSpace:
        """vmspace_fork: the child's address space, sharing every object with this one.

        Shared entries keep sharing.  Private entries become copy-on-write in
        both processes (needs-copy: the shadows are made by the first write
        fault in each), and the parent's writable PTEs are write-protected,
        at the cost of a TLB invalidation each while the parent is loaded.
        The child's page tables start empty and fill on demand.
        """
        child = VMSpace(VMMap(), pmap, self.heap_start, self.heap_end, exe=self.exe)
        for entry in self.map.entries:
            if not entry.shared:
                # As vm_map_copy_entry does: shorten the chain before a second map shares it.
                entry.object.collapse()
            entry.object.reference()
            copy = MapEntry(entry.start, entry.end, entry.object, entry.offset, entry.protection,
                            entry.max_protection, entry.cow, entry.needs_copy, entry.shared, entry.name)
            if not entry.shared:
                if not entry.needs_copy and entry.protection & PROT_WRITE:
                    self.pmap.protect(entry.start, entry.end, entry.protection & ~PROT_WRITE, "fork")
                entry.cow = entry.needs_copy = copy.cow = copy.needs_copy = True
            child.map.insert(copy)
        return child

    def release(self) -> None:
        """One task stops using it (exit, or exec giving it a new one); the last one destroys it."""
        self.users -= 1
        if self.users == 0:
            self.destroy()

    def destroy(self) -> None:
        """Release everything (exit, or exec replacing the image)."""
        self.pmap.destroy()
        for entry in self.map.entries:
            entry.object.deallocate()
        self.map.entries.clear()
        self.map.hint = None
