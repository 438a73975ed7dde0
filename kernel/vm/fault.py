"""vm_fault: resolve a page fault from the map entry and its object chain.

The steps follow FreeBSD's vm_fault and the paper:
1. find the map entry; no entry, or an access its protection forbids, is fatal;
2. a write through a needs-copy entry first pushes a shadow object;
3. look the page up top-down through the chain of backing objects;
4. nothing found: zero-fill a page in the top object, or page it in from the
   file at the bottom of the chain; a page an object has on swap is read
   back from there (a swap-in);
5. found below the top object: a read maps it read-only; a write copies it up
   into the top object, or moves it up (no copy) when its holder is the top
   object's immediate backing object, held by no one else and shadowed once,
   and the page is not in flight in a sink;
6. a page in flight in a copy-on-write send (`page.cow`) is never written:
   a write gives the top object a copy in its place (FreeBSD's
   vm_page_cowfault), and the sink keeps the original;
7. enter the mapping in the pmap.

A page the pageout daemon had unmapped as a candidate for reuse (on the
inactive or cache queue) is simply taken back: a reactivation.  Before any
of it, a fault makes sure the frames it may need are there (vm_wait).
"""

from __future__ import annotations

from typing import NamedTuple

from vmgames.emulator import mmu
from vmgames.kernel.vm.map import MapEntry, VMSpace
from vmgames.kernel.vm.object import ANONYMOUS, VNODE, PagerError, VMObject
from vmgames.kernel.vm.page import PAGES_PER_FAULT, OutOfMemory, PageAllocator, VMPage
from vmgames.kernel.vm.pagequeue import ACTIVE
from vmgames.kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE

ZERO_FILL = "zero-fill"
FILE = "file"
SWAP_IN = "swap-in"
RESIDENT = "resident"
COW_COPY = "cow-copy"
COW_MOVE = "cow-move"
PROTECTION = "protection"
FATAL = "fatal"
KINDS = (ZERO_FILL, FILE, SWAP_IN, RESIDENT, COW_COPY, COW_MOVE, PROTECTION, FATAL)

# Why a fatal fault was fatal, as the signal's si_code would say.
MAPERR = "no mapping"            # SEGV_MAPERR
ACCERR = "permission denied"     # SEGV_ACCERR
BUSERR = "beyond end of file"    # SIGBUS
IOERR = "I/O error reading the file"   # SIGBUS too (the pager failed)
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


class Decision(NamedTuple):
    """What a fault will do, decided from the map and the chain before anything changes."""

    kind: str
    reason: str = ""                 # why it is fatal
    entry: MapEntry | None = None
    push_shadow: bool = False        # a write through a needs-copy entry: a shadow goes in front first
    holder: VMObject | None = None   # the object holding the page (the bottom object when none does)
    index: int = 0                   # the page's index in `holder`
    level: int = 0                   # `holder`'s level in the chain, counted once the shadow is pushed
    page: VMPage | None = None       # the page found, if any


def vm_fault(vmspace: VMSpace, allocator: PageAllocator, va: int, access: int, error_code: int,
             rip: int | None) -> FaultResult:
    """Handle one page fault of `vmspace` at `va`; `rip` is None for faults taken by the kernel's copyin/copyout."""
    if not allocator.vm_wait(PAGES_PER_FAULT):
        decision = Decision(FATAL, NOMEM)     # the out-of-memory killer chose this process
    else:
        decision = vm_fault_decide(vmspace, va, access, error_code)
    result = FaultResult(FATAL, decision.reason) if decision.kind == FATAL else _apply(vmspace, allocator, va,
                                                                                       access, decision)
    allocator.recorder.event("fault", result.kind, address=va, access=mmu.ACCESS_NAMES[access],
                             error_code=error_code, rip=rip, reason=result.reason or None,
                             object=result.object, level=result.level, depth=result.depth, frame=result.frame)
    return result


def vm_fault_decide(vmspace: VMSpace, va: int, access: int, error_code: int) -> Decision:
    """Steps 1-5: which kind of fault this is, and where its page is, without changing anything.

    A debugger asks the same question before the handler runs (predict_kind);
    the one thing it cannot foresee is RAM running out while the fault is
    handled (then the fault is fatal instead).
    """
    entry = vmspace.map.lookup(va)
    if entry is None:
        return Decision(FATAL, MAPERR)
    if not entry.protection & _NEEDED[access] or _writes_file(entry, access):
        return Decision(FATAL, ACCERR)
    write = access == mmu.WRITE
    push = write and entry.needs_copy
    holder, index, level, page = find_page(entry, va)
    level += push                    # a pushed shadow becomes level 0 and everything moves down one
    if holder.kind == VNODE and page is None and index * 4096 >= holder.vnode.size:
        return Decision(FATAL, BUSERR)
    swapped = page is None and index in holder.swap_blocks
    if page is None and holder.kind != VNODE and not swapped:
        kind = ZERO_FILL
    elif level > 0 and write:
        # The page (paged in from the file first, if need be) goes up into the top object.
        shadows = holder.shadow_count + (push and level == 1)
        kind = COW_MOVE if page is not None and vm_fault_cow_moves(holder, page, level, shadows) else COW_COPY
    elif swapped:
        kind = SWAP_IN               # read back from swap: a major fault
    elif holder.kind == VNODE and page is None:
        kind = FILE                  # read from the file: a major fault
    elif holder.kind == VNODE:
        kind = RESIDENT              # already in the page cache (another process read it): a minor fault
    elif error_code & mmu.PF_P and level == 0:
        kind = PROTECTION
    else:
        kind = RESIDENT
    return Decision(kind, "", entry, push, holder, index, level, page)


def predict_kind(vmspace: VMSpace, va: int, access: int, error_code: int) -> str:
    """The kind vm_fault will give this fault, decided without handling it (for debuggers)."""
    return vm_fault_decide(vmspace, va, access, error_code).kind


def vm_fault_cow_moves(holder: VMObject, page: VMPage, level: int, shadows: int) -> bool:
    """Whether a write moves `page` up into the top object instead of copying it (FreeBSD's vm_fault_cow test).

    Each clause is one reason no one else can see the page any more:
    - `level == 1`: its holder is the top object's immediate backing object,
      so no object between them could hold a copy of its own;
    - the holder is anonymous: a file's page stays in the file's object;
    - the page is not held by a sink (sent copy-on-write, or lent by
      vmsplice): the receiver still reads it (Linux's do_wp_page reuses a
      page only when nothing else references it; before 5.8 it did not, and
      a forked child could vmsplice what its parent wrote later,
      CVE-2020-29374);
    - the holder has one reference and one shadow (`shadows`, counting a
      shadow about to be pushed): that reference is the top object's, so
      no other map reaches the holder.
    """
    return (level == 1 and holder.kind == ANONYMOUS and not page.hold_count
            and holder.ref_count == 1 and shadows == 1)


def _apply(vmspace: VMSpace, allocator: PageAllocator, va: int, access: int, decision: Decision) -> FaultResult:
    """Steps 2 and 4-7: carry the decision out."""
    entry, holder, page, kind, level = decision.entry, decision.holder, decision.page, decision.kind, decision.level
    if decision.push_shadow:
        _push_shadow(entry)
    first = entry.object
    pindex = entry.pindex(va)
    write = access == mmu.WRITE
    if page is not None and page.queue is not allocator.queues[ACTIVE]:
        allocator.activate(page)     # before anything is allocated: a page on the cache queue may be reused
    try:
        if kind == ZERO_FILL:
            page = allocator.alloc(zero=True, prezeroed=True)
            first.insert(page, pindex)
            holder, level = first, 0
        elif page is None:
            page = holder.page_in(decision.index)
        prot = entry.protection
        reason = "fault"
        if kind in (COW_COPY, COW_MOVE):
            page = _copy_up(allocator, first, pindex, holder, page, kind)
            holder, level = first, 0
            reason = "cow"
        elif level > 0 or entry.needs_copy or holder.kind == VNODE:
            # Shared with a lower object, another map, or the file's own page: writable only in a shadow's copy.
            prot &= ~PROT_WRITE
        in_flight = None
        if level == 0 and write and page.hold_count:
            # A sink holds the page: sent copy-on-write, or lent by vmsplice and reached now through a read-only
            # mapping (a forked child lent it; a collapse moved it here).  Linux's do_wp_page reuses a page only
            # when nothing else references it: the writer gets a copy, the receiver the page as it was.
            reason = "cow-send" if page.cow else "cow"
            in_flight, page = page, _copy_in_flight(vmspace, allocator, first, va & ~0xFFF, page, reason)
        if page.cow:
            prot &= ~PROT_WRITE
        page.referenced = True
        vmspace.pmap.enter(va & ~0xFFF, page, prot, reason)
        if in_flight is not None:
            allocator.free(in_flight)   # the sink's hold keeps it, orphaned
    except OutOfMemory:
        return FaultResult(FATAL, NOMEM)
    except PagerError:
        return FaultResult(FATAL, IOERR)
    return FaultResult(kind, object=holder.id, level=level, depth=first.depth(), frame=page.frame)


def find_page(entry: MapEntry, va: int) -> tuple[VMObject, int, int, VMPage | None]:
    """Look the page of `va` up top-down through the entry's chain.

    Returns (object, page index in it, level, page); for a page on swap, its
    object and None; when no object has the page, the bottom object and None.
    It changes nothing, so a debugger can ask the same question the fault
    handler is about to ask.
    """
    obj, index, level = entry.object, entry.pindex(va), 0
    page = obj.pages.get(index)
    while page is None and obj.backing is not None and index not in obj.swap_blocks:
        index += obj.backing_offset
        obj = obj.backing
        level += 1
        page = obj.pages.get(index)
    return obj, index, level, page


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


def _copy_up(allocator: PageAllocator, first: VMObject, pindex: int, holder: VMObject, page: VMPage,
             kind: str) -> VMPage:
    """vm_fault_cow: give the top object the page found lower in the chain, moved (COW_MOVE) or copied."""
    if kind == COW_MOVE:
        del holder.pages[page.pindex]
        if page.pindex in holder.swap_blocks:
            holder.vm.swap_pager.free(holder, page.pindex, "cow")   # the copy there was the holder's
            page.dirty = True
        first.insert(page, pindex)
        allocator.recorder.event("page", "move", frame=page.frame, source_object=holder.id, object=first.id,
                                 reason="cow")
        return page
    copy = allocator.alloc(zero=False)
    allocator.copy(copy, page, "cow")
    first.insert(copy, pindex)
    return copy


def _copy_in_flight(vmspace: VMSpace, allocator: PageAllocator, obj: VMObject, va: int, page: VMPage,
                    reason: str) -> VMPage:
    """A write to a page a sink holds: the object gets a copy in its place.

    Other mappings of the old page are removed, so they fault the copy in;
    the caller replaces the mapping at `va` and then frees the old page,
    which the sink's hold keeps, orphaned, until it has drained it.
    """
    copy = allocator.alloc(zero=False)
    allocator.copy(copy, page, reason)
    for pmap, at in list(page.pv):
        if pmap is not vmspace.pmap or at != va:
            pmap.remove(at, at + 4096, reason)
    pindex = page.pindex
    del obj.pages[pindex]
    obj.insert(copy, pindex)
    return copy
