"""vm_object: a set of pages, anonymous or backed by a file, possibly
shadowing another object (Dillon, "Design elements of the FreeBSD VM system").

A private mapping of a file (program data) maps the file's object
copy-on-write; the first write fault pushes an anonymous *shadow* object in
front of it, which receives the private copies.  A fault looks a page up
top-down through the chain of backing objects.

An anonymous object's pages may also be on swap (`swap_blocks`, page index
to swap block, kept by kernel/vm/swap_pager.py): an object "has" a page that
is resident or swapped, and a swapped page is read back by `page_in` like a
file's.
"""

from __future__ import annotations

from typing import Protocol

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.vm import pmap
from vmgames.kernel.vm.context import VMContext
from vmgames.kernel.vm.page import VMPage

ANONYMOUS = "anonymous"
VNODE = "vnode"


class PagerError(Exception):
    """The pager could not read a page from its file (the host failed to give it): the fault is SIGBUS."""


class Vnode(Protocol):
    """What a file must offer to back an object."""

    path: str
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class VMObject:
    """A vm_object. `backing`/`backing_offset` (in pages) make the shadow chain."""

    def __init__(self, vm: VMContext, kind: str, size: int, vnode: Vnode | None = None) -> None:
        self.vm = vm
        self.allocator = vm.allocator
        self.id = vm.new_object_id()
        self.kind = kind
        self.size = size
        self.vnode = vnode
        self.pages: dict[int, VMPage] = {}
        self.backing: VMObject | None = None
        self.backing_offset = 0
        self.ref_count = 1
        self.shadows: list[VMObject] = []   # the objects whose backing object this is
        self.swap_blocks: dict[int, int] = {}   # page index -> swap block (kernel/vm/swap_pager.py)
        vm.recorder.event("object", "create", object=self.id, object_type=kind, size=size,
                                 path=vnode.path if vnode else None)

    @property
    def shadow_count(self) -> int:
        return len(self.shadows)

    def __repr__(self) -> str:
        return f"<VMObject {self.id} {self.kind} ref={self.ref_count} shd={self.shadow_count} pages={len(self.pages)}>"

    def reference(self) -> None:
        self.ref_count += 1

    def insert(self, page: VMPage, pindex: int) -> None:
        page.object = self
        page.pindex = pindex
        self.pages[pindex] = page

    def has_page(self, pindex: int) -> bool:
        """Whether this object holds its own page at `pindex`, resident or on swap."""
        return pindex in self.pages or pindex in self.swap_blocks

    def page_in(self, pindex: int) -> VMPage:
        """Read one page in: from swap, or from the file of a vnode object (PagerError if it cannot be read)."""
        page = self.allocator.alloc(zero=False)
        if pindex in self.swap_blocks:
            self.vm.swap_pager.getpage(self, pindex, page)
            page.dirty = False           # the copy on swap is good until the page is written
            self.insert(page, pindex)
            return page
        try:
            data = self.vnode.read(pindex * PAGE_SIZE, PAGE_SIZE)
        except SyscallError:
            self.allocator.free(page)
            raise PagerError(self.vnode.path) from None
        self.allocator.machine.fill_frame(page.frame, data)
        page.dirty = False
        self.insert(page, pindex)
        self.allocator.recorder.event("page", "pagein", frame=page.frame, object=self.id, pindex=pindex)
        return page

    def shadow(self, offset: int, size: int) -> VMObject:
        """vm_object_shadow: a new anonymous object in front of this one.

        The caller's reference to this object passes to the shadow.
        """
        shadow = VMObject(self.vm, ANONYMOUS, size)
        shadow.backing = self
        shadow.backing_offset = offset
        self.shadows.append(shadow)
        self.allocator.recorder.event("object", "shadow", object=shadow.id, backing=self.id, offset=offset)
        return shadow

    def depth(self) -> int:
        """How many objects make up the chain starting here."""
        depth, obj = 0, self
        while obj is not None:
            depth += 1
            obj = obj.backing
        return depth

    def deallocate(self) -> None:
        """vm_object_deallocate: drop a reference.

        The last reference terminates the object and drops its reference on
        the backing object.  An anonymous object left with one reference that
        is its only shadow's is merged into that shadow (collapse).
        """
        obj: VMObject | None = self
        while obj is not None:
            obj.ref_count -= 1
            if obj.ref_count == 1 and obj.shadow_count == 1 and obj.kind == ANONYMOUS:
                obj.shadows[0].collapse()
                return
            if obj.ref_count > 0:
                return
            backing = obj.backing
            obj._terminate()
            if backing is not None:
                backing.shadows.remove(obj)
            obj = backing

    def collapse(self) -> None:
        """vm_object_collapse: shorten the chain below this object while that is free.

        - merge: the backing object is anonymous and referenced only by this
          object; its pages move up unless this object already has them (those
          are dead, and freed), and its backing becomes ours;
        - bypass: the backing object is still referenced by others, but this
          object already holds every page of it that it could see ("all
          shadowed"), so it can point past it.
        """
        if not self.vm.collapse_enabled:
            return
        recorder = self.allocator.recorder
        while (backing := self.backing) is not None and backing.kind == ANONYMOUS:
            if backing.ref_count == 1:
                moved = freed = 0
                moved_up: set[int] = set()
                for pindex, page in list(backing.pages.items()):
                    mine = pindex - self.backing_offset
                    del backing.pages[pindex]
                    if 0 <= mine < self.size and not self.has_page(mine):
                        self.insert(page, mine)
                        recorder.event("page", "move", frame=page.frame, source_object=backing.id,
                                       object=self.id, reason="collapse")
                        moved_up.add(mine)
                        moved += 1
                    else:
                        # Hidden by our own page (or outside our window): nobody can reach it.
                        recorder.event("page", "dead", frame=page.frame, object=backing.id, pindex=pindex)
                        pmap.remove_all(page, "collapse")
                        self.allocator.free(page)
                        freed += 1
                if backing.swap_blocks:
                    self._take_swap_of(backing, moved_up)
                self._skip(backing, backing_reference_passes=True)
                backing.ref_count = 0
                backing.backing = None
                recorder.event("object", "collapse", object=self.id, backing=backing.id, moved=moved, freed=freed)
                recorder.event("object", "terminate", object=backing.id, pages=0)
            elif self._shadows_all_of(backing):
                self._skip(backing, backing_reference_passes=False)
                recorder.event("object", "bypass", object=self.id, backing=backing.id)
                backing.deallocate()
            else:
                return

    def _take_swap_of(self, backing: VMObject, moved_up: set[int]) -> None:
        """In a merge: the swap blocks of `backing`'s pages that became ours (`moved_up`, at our indexes) move
        up with them, and so do those of pages only on swap that we lack; those of pages hidden by our own
        are dead swap, freed (the swap dead pages "eat", in the paper's words)."""
        for pindex in list(backing.swap_blocks):
            mine = pindex - self.backing_offset
            if 0 <= mine < self.size and (mine in moved_up or not self.has_page(mine)):
                self.vm.swap_pager.transfer(backing, pindex, self, mine)
            else:
                self.vm.swap_pager.free(backing, pindex, "dead")

    def _shadows_all_of(self, backing: VMObject) -> bool:
        """Whether this object has its own page for every page of `backing` (resident or on swap) in its
        window."""
        for pindex in (*backing.pages, *backing.swap_blocks):
            mine = pindex - self.backing_offset
            if 0 <= mine < self.size and not self.has_page(mine):
                return False
        return True

    def _skip(self, backing: VMObject, backing_reference_passes: bool) -> None:
        """Point past `backing` to its own backing object.

        When `backing` is being merged away, its reference on the object below
        passes to us; when it is bypassed but lives on, we take a new one.
        """
        backing.shadows.remove(self)
        below = backing.backing
        self.backing = below
        self.backing_offset += backing.backing_offset
        if below is not None:
            if backing_reference_passes:
                below.shadows.remove(backing)
            else:
                below.reference()
            below.shadows.append(self)

    def page_remove(self, start: int, end: int) -> None:
        """vm_object_page_remove: unmap and free the resident pages at indexes [start, end)."""
        for pindex in [p for p in self.pages if start <= p < end]:
            page = self.pages.pop(pindex)
            pmap.remove_all(page, "page-remove")
            self.allocator.free(page)
        if self.swap_blocks:
            self.vm.swap_pager.free_range(self, start, end, "page-remove")

    def _terminate(self) -> None:
        recorder = self.allocator.recorder
        traced = recorder.sink is not None
        freed = 0
        for page in self.pages.values():
            pmap.remove_all(page, "terminate")
            if traced:
                self.allocator.free(page)
            else:
                freed += self.allocator.free_untallied(page)
        if not traced:
            recorder.tally("page", "free", freed)     # each page's event would cost more than freeing it
        if self.swap_blocks:
            self.vm.swap_pager.free_range(self, 0, max(self.swap_blocks) + 1, "terminate")
        self.allocator.recorder.event("object", "terminate", object=self.id, pages=len(self.pages))
        self.pages.clear()
        self.backing = None
