"""vm_object: a set of pages, anonymous or backed by a file, possibly
shadowing another object (Dillon, "Design elements of the FreeBSD VM system").

A private mapping of a file (program data) maps the file's object
copy-on-write; the first write fault pushes an anonymous *shadow* object in
front of it, which receives the private copies.  A fault looks a page up
top-down through the chain of backing objects.
"""

from __future__ import annotations

from typing import Protocol

from emulator.ram import PAGE_SIZE
from kernel.vm import pmap
from kernel.vm.page import PageAllocator, VMPage

ANONYMOUS = "anonymous"
VNODE = "vnode"


class Vnode(Protocol):
    """What a file must offer to back an object."""

    path: str
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class VMObject:
    """A vm_object. `backing`/`backing_offset` (in pages) make the shadow chain."""

    def __init__(self, allocator: PageAllocator, kind: str, size: int, vnode: Vnode | None = None) -> None:
        self.allocator = allocator
        self.id = allocator.new_object_id()
        self.kind = kind
        self.size = size
        self.vnode = vnode
        self.pages: dict[int, VMPage] = {}
        self.backing: VMObject | None = None
        self.backing_offset = 0
        self.ref_count = 1
        self.shadow_count = 0
        allocator.recorder.event("object", "create", object=self.id, object_type=kind, size=size,
                                 path=vnode.path if vnode else None)

    def __repr__(self) -> str:
        return f"<VMObject {self.id} {self.kind} ref={self.ref_count} shd={self.shadow_count} pages={len(self.pages)}>"

    def reference(self) -> None:
        self.ref_count += 1

    def insert(self, page: VMPage, pindex: int) -> None:
        page.object = self
        page.pindex = pindex
        self.pages[pindex] = page

    def page_in(self, pindex: int) -> VMPage:
        """Read one page of the file into this (vnode) object."""
        page = self.allocator.alloc(zero=False)
        data = self.vnode.read(pindex * PAGE_SIZE, PAGE_SIZE)
        view = self.allocator.ram.frame_view(page.frame)
        view[:len(data)] = data
        view[len(data):] = bytes(PAGE_SIZE - len(data))
        self.insert(page, pindex)
        self.allocator.recorder.event("page", "pagein", frame=page.frame, object=self.id, pindex=pindex)
        return page

    def shadow(self, offset: int, size: int) -> VMObject:
        """vm_object_shadow: a new anonymous object in front of this one.

        The caller's reference to this object passes to the shadow.
        """
        shadow = VMObject(self.allocator, ANONYMOUS, size)
        shadow.backing = self
        shadow.backing_offset = offset
        self.shadow_count += 1
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
        """Drop a reference; the last one terminates the object and releases its backing."""
        obj: VMObject | None = self
        while obj is not None:
            obj.ref_count -= 1
            if obj.ref_count > 0:
                return
            backing = obj.backing
            obj._terminate()
            if backing is not None:
                backing.shadow_count -= 1
            obj = backing

    def _terminate(self) -> None:
        for page in self.pages.values():
            pmap.remove_all(page, "terminate")
            self.allocator.free(page)
        self.allocator.recorder.event("object", "terminate", object=self.id, pages=len(self.pages))
        self.pages.clear()
        self.backing = None
