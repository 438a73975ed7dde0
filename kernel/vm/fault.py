"""vm_fault: resolve a page fault from the map entry and its object chain.

The steps follow FreeBSD's vm_fault and the paper:
1. find the map entry; no entry, or an access its protection forbids, is fatal;
2. a write through a needs-copy entry first pushes a shadow object;
3. look the page up top-down through the chain of backing objects;
4. nothing found: zero-fill a page in the top object, or page it in from the
   file at the bottom of the chain;
5. found below the top object: a read maps it read-only; a write copies it up
   into the top object, or moves it up (no copy) when its holder is the top
   object's immediate backing object, held by no one else and shadowed once,
   and the page is not in flight in a sink;
6. a page in flight in a copy-on-write send (`page.cow`) is never written:
   a write gives the top object a copy in its place (FreeBSD's
   vm_page_cowfault), and the sink keeps the original;
7. enter the mapping in the pmap.
"""

from __future__ import annotations

from typing import NamedTuple

from emulator import mmu
from kernel.vm.map import MapEntry, VMSpace
from kernel.vm.object import ANONYMOUS, VNODE, VMObject
from kernel.vm.page import OutOfMemory, PageAllocator, VMPage
from kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE

ZERO_FILL = "zero-fill"
FILE = "file"
RESIDENT = "resident"
COW_COPY = "cow-copy"
COW_MOVE = "cow-move"
PROTECTION = "protection"
FATAL = "fatal"
KINDS = (ZERO_FILL, FILE, RESIDENT, COW_COPY, COW_MOVE, PROTECTION, FATAL)

# Why a fatal fault was fatal, as the signal's si_code would say.
MAPERR = "no mapping"            # SEGV_MAPERR
ACCERR = "permission denied"     # SEGV_ACCERR
BUSERR = "beyond end of file"    # SIGBUS
NOMEM = "out of memory"          # the OOM killer's SIGKILL

_NEEDED = (PROT_READ | PROT_WRITE | PROT_EXEC, PROT_WRITE, PROT_EXEC)


class FaultResult(NamedTuple):
    """What a fault did: its kind, and where in the chain the page came from."""

    kind: str
    reason: str = ""
    object: int | None = None   # id of the object that held (or now holds) the page
    level: int | None = None    # 0 for the top object, 1 for its backing object, ...
    depth: int | None = None    # length of the chain at the faulting address
    frame: int | None = None    # the frame mapped

    @property
    def fatal(self) -> bool:
        return self.kind == FATAL


def vm_fault(vmspace: VMSpace, allocator: PageAllocator, va: int, access: int, error_code: int,
             rip: int | None) -> FaultResult:
    """Handle one page fault of `vmspace` at `va`; `rip` is None for faults taken by the kernel's copyin/copyout."""
    result = _resolve(vmspace, allocator, va, access, error_code)
    allocator.recorder.event("fault", result.kind, address=va, access=mmu.ACCESS_NAMES[access],
                             error_code=error_code, rip=rip, reason=result.reason or None,
                             object=result.object, level=result.level, depth=result.depth, frame=result.frame)
    return result


def _resolve(vmspace: VMSpace, allocator: PageAllocator, va: int, access: int, error_code: int) -> FaultResult:
    entry = vmspace.map.lookup(va)
    if entry is None:
        return FaultResult(FATAL, MAPERR)
    if not entry.protection & _NEEDED[access] or _writes_file(entry, access):
        return FaultResult(FATAL, ACCERR)
    write = access == mmu.WRITE
    if write and entry.needs_copy:
        _push_shadow(entry)

    first = entry.object
    pindex = entry.pindex(va)
    obj, index, level, page = find_page(entry, va)

    try:
        if page is None:
            if obj.kind == VNODE:
                if index * 4096 >= obj.vnode.size:
                    return FaultResult(FATAL, BUSERR)
                page = obj.page_in(index)
                kind = FILE
            else:
                obj, level = first, 0
                page = allocator.alloc(zero=True)
                first.insert(page, pindex)
                kind = ZERO_FILL
        elif obj.kind == VNODE:
            kind = FILE
        elif error_code & mmu.PF_P and obj is first:
            kind = PROTECTION
        else:
            kind = RESIDENT

        prot = entry.protection
        reason = "fault"
        if obj is not first:
            if write:
                page, kind = _copy_up(allocator, first, pindex, obj, page)
                obj, level = first, 0
                reason = "cow"
            else:
                prot &= ~PROT_WRITE
        elif entry.needs_copy or obj.kind == VNODE:
            # Still shared with another map, or the file's own page: writable only in a shadow's copy.
            prot &= ~PROT_WRITE
        in_flight = None
        if obj is first and write and page.cow:
            in_flight, page = page, _copy_in_flight(vmspace, allocator, first, va & ~0xFFF, page)
            reason = "cow-send"
        if page.cow:
            prot &= ~PROT_WRITE
        vmspace.pmap.enter(va & ~0xFFF, page, prot, reason)
        if in_flight is not None:
            allocator.free(in_flight)   # the sink's hold keeps it, orphaned
    except OutOfMemory:
        return FaultResult(FATAL, NOMEM)
    return FaultResult(kind, object=obj.id, level=level, depth=first.depth(), frame=page.frame)


def find_page(entry: MapEntry, va: int) -> tuple[VMObject, int, int, VMPage | None]:
    """Look the page of `va` up top-down through the entry's chain.

    Returns (object, page index in it, level, page); when no object has the
    page, the bottom object and None.  It changes nothing, so a debugger can
    ask the same question the fault handler is about to ask.
    """
    obj, index, level = entry.object, entry.pindex(va), 0
    page = obj.pages.get(index)
    while page is None and obj.backing is not None:
        index += obj.backing_offset
        obj = obj.backing
        level += 1
        page = obj.pages.get(index)
    return obj, index, level, page


def predict_kind(vmspace: VMSpace, va: int, access: int, error_code: int) -> str:
    """The kind vm_fault will give this fault, decided without handling it (for debuggers).

    It follows _resolve's decisions step by step; the one thing it cannot
    foresee is RAM running out (then the fault is fatal instead).
    tests/test_gdb_stub.py holds it to vm_fault's answer on every fault of a fork cascade and of a
    copy-on-write send.
    """
    entry = vmspace.map.lookup(va)
    if entry is None or not entry.protection & _NEEDED[access] or _writes_file(entry, access):
        return FATAL
    write = access == mmu.WRITE
    pushes_shadow = write and entry.needs_copy
    obj, index, level, page = find_page(entry, va)
    if page is None:
        if obj.kind == VNODE:
            return FILE if index * 4096 < obj.vnode.size else FATAL
        return ZERO_FILL
    in_top = level == 0 and not pushes_shadow
    if not in_top and write:
        # _copy_up: a move when the holder is the top object's backing object, used by nothing else.
        holder_is_backing = level == (0 if pushes_shadow else 1)
        shadows_after = obj.shadow_count + (1 if pushes_shadow else 0)
        if (holder_is_backing and obj.kind == ANONYMOUS and not page.hold_count
                and obj.ref_count == 1 and shadows_after == 1):
            return COW_MOVE
        return COW_COPY
    if obj.kind == VNODE:
        return FILE
    if error_code & mmu.PF_P and in_top:
        return PROTECTION
    return RESIDENT


def _writes_file(entry: MapEntry, access: int) -> bool:
    """A write that would land in a file's own pages: refused whatever the entry's protection says.

    The guest's files are read-only, so a shared mapping of one never has
    PROT_WRITE in its maximum protection (sys_mmap); this holds the line
    even if some route gave such an entry write permission anyway.
    """
    return access == mmu.WRITE and not entry.cow and entry.object.kind == VNODE


def _push_shadow(entry: MapEntry) -> None:
    """Clear needs-copy: give the entry a private anonymous object in front of the shared one."""
    pages = (entry.end - entry.start) // 4096
    entry.object = entry.object.shadow(entry.offset // 4096, pages)
    entry.offset = 0
    entry.needs_copy = False


def _copy_up(allocator: PageAllocator, first: VMObject, pindex: int, holder: VMObject,
             page: VMPage) -> tuple[VMPage, str]:
    """Give the top object its own copy of a page found lower in the chain.

    A page a sink holds (sent copy-on-write, or lent by vmsplice) is copied,
    never moved up: the receiver still reads it.  Linux's do_wp_page reuses
    a page only when nothing else holds a reference to it; before 5.8 it
    did not, and a forked child could vmsplice what its parent wrote later
    (CVE-2020-29374).
    """
    if (holder is first.backing and holder.kind == ANONYMOUS and not page.hold_count
            and holder.ref_count == 1 and holder.shadow_count == 1):
        del holder.pages[page.pindex]
        first.insert(page, pindex)
        allocator.recorder.event("page", "move", frame=page.frame, source_object=holder.id, object=first.id,
                                 reason="cow")
        return page, COW_MOVE
    copy = allocator.alloc(zero=False)
    allocator.copy(copy, page, "cow")
    first.insert(copy, pindex)
    return copy, COW_COPY


def _copy_in_flight(vmspace: VMSpace, allocator: PageAllocator, obj: VMObject, va: int, page: VMPage) -> VMPage:
    """A write to a page a copy-on-write send holds: the object gets a copy in its place.

    Other mappings of the old page are removed, so they fault the copy in;
    the caller replaces the mapping at `va` and then frees the old page,
    which the sink's hold keeps, orphaned, until it has drained it.
    """
    copy = allocator.alloc(zero=False)
    allocator.copy(copy, page, "cow-send")
    for pmap, at in list(page.pv):
        if pmap is not vmspace.pmap or at != va:
            pmap.remove(at, at + 4096, "cow-send")
    pindex = page.pindex
    del obj.pages[pindex]
    obj.insert(copy, pindex)
    return copy
