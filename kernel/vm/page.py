"""vm_page: one record per physical frame, and the free-page allocator.

A page belongs to at most one VM object at a time (at `pindex` in it); its pv
entries (FreeBSD's reverse map) list the page tables that map it, so that a
page can be write-protected or unmapped everywhere at once.

A sink (a wire or a pipe) that sends a user's page without copying it holds
the page (`hold_count`, FreeBSD's vm_page_hold); a copy-on-write send also
counts in `cow` (FreeBSD's m->cow, set by vm_page_cowsetup), which makes a
write fault copy the page instead of writing to it.  A held page that its
object lets go (the process exited, or a write replaced it) is not freed
but orphaned, until the sink releases it.

Each page carries what the pageout daemon (kernel/vm/pageout.py) judges it
by: its activity count (`act_count`, aged from the accessed bits of the
PTEs that map it) and whether its contents exist nowhere else (`dirty`: a
file's page never is, an anonymous page is until it is written to swap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vmgames.emulator.machine import STOP_FRAME, Machine
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.vm.pagequeue import ACTIVE, CACHE, QUEUES, WIRED, PageQueue

if TYPE_CHECKING:
    from vmgames.kernel.vm.object import VMObject
    from vmgames.kernel.vm.pmap import Pmap
    from vmgames.kernel.vmmeter import Recorder


class VMPage:
    """A physical frame in use. `pv` holds (pmap, va) pairs: its pv entries."""

    __slots__ = ("frame", "object", "pindex", "pv", "hold_count", "cow", "queue", "act_count", "dirty", "referenced")

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self.object: VMObject | None = None
        self.pindex = 0
        self.pv: list[tuple[Pmap, int]] = []
        self.hold_count = 0     # sinks holding this page in flight
        self.cow = 0            # of those, copy-on-write sends: writes must copy
        self.queue: PageQueue | None = None     # the page queue it is on (kernel/vm/pagequeue.py)
        self.act_count = ACT_INIT   # how active it has been lately (FreeBSD's act_count)
        self.dirty = True           # no copy of it anywhere else (the file's, or one on swap)
        self.referenced = False     # a fault mapped it since the daemon last looked (FreeBSD's PGA_REFERENCED)

    @property
    def paddr(self) -> int:
        return self.frame * PAGE_SIZE


class OutOfMemory(Exception):
    """No free frame: the caller fails its operation (or the process dies)."""


# FreeBSD's act_count: a page starts at ACT_INIT, gains ACT_ADVANCE (and one per reference seen) each time the
# pageout daemon finds it used, loses ACT_DECLINE each time it does not, and is a candidate at 0.
ACT_INIT, ACT_ADVANCE, ACT_DECLINE, ACT_MAX = 5, 3, 1, 64

# The most frames one page fault allocates: a page read in, a copy of it, and three page-table pages.
PAGES_PER_FAULT = 5

# Virtual time it takes an idle CPU to zero one page (about a microsecond, as the cost model's zero_page_ns
# puts a page's zeroing with what goes around it).
IDLE_ZERO_INSTRUCTIONS = 1000


class PageAllocator:
    """The free page queue, and the page queues of the pages in use (kernel/vm/pagequeue.py).

    Frames are handed out lowest first, so runs are reproducible.  Pages on the cache queue are clean and
    unmapped, as good as free (`available` counts them): when the free list runs dry the oldest is taken from
    its object and reused (FreeBSD 4's vm_page_alloc did the same).  Some free frames may be zeroed already:
    the pre-zeroed pool an idle machine fills (`zero_idle`, FreeBSD's idle zeroing, the paper's pre-zeroing)
    up to `prezero_cap` frames; a zero-fill fault takes one first and need not zero it (v_ozfod).
    """

    def __init__(self, machine: Machine, recorder: Recorder) -> None:
        self.machine = machine
        self.ram = machine.ram
        self.recorder = recorder
        reserved = {STOP_FRAME}
        self._free = [f for f in range(machine.ram.frames - 1, -1, -1) if f not in reserved]
        self.total = len(self._free)
        self._pages: list[VMPage | None] = [None] * machine.ram.frames
        self.orphans: set[VMPage] = set()   # held pages no object owns any more
        self.queues = {name: PageQueue(name) for name in QUEUES}
        self.prezero_cap = 0                # frames the idle machine keeps zeroed (vmgames run --prezero)
        self._zeroed: list[int] = []        # free frames zeroed already, the latest last
        # When free pages run short, the pageout daemon (kernel/vm/pageout.py): called with the frames wanted,
        # it says whether they are there now.
        self.pagedaemon: Callable[[int], bool] | None = None
        self.pmaps: dict[Pmap, None] = {}   # every live address space's page tables, oldest first (Pmap adds itself)
        # FreeBSD's thresholds (vm_pageout.c sizes v_free_min as 4 + (pages - 1024) / 200; ours keeps a page
        # fault's worth more): below free_min the daemon is woken, and it works until free_target is met.
        self.free_min = 4 + PAGES_PER_FAULT + max(0, self.total - 1024) // 200
        self.free_target = 4 * self.free_min

    @property
    def free_count(self) -> int:
        return len(self._free) + len(self._zeroed)

    @property
    def prezeroed_count(self) -> int:
        return len(self._zeroed)

    @property
    def available(self) -> int:
        """Frames to be had at once: free, or clean and unmapped on the cache queue."""
        return len(self._free) + len(self._zeroed) + len(self.queues[CACHE])

    def vm_wait(self, pages: int) -> bool:
        """Before an operation that may allocate `pages` frames: wake the pageout daemon if frames run short.
        False if they could not be found even so (the out-of-memory killer chose the caller)."""
        if self.available >= self.free_min + pages or self.pagedaemon is None:
            return True
        return self.pagedaemon(pages)

    def alloc(self, zero: bool = True, wired: bool = False, prezeroed: bool = False) -> VMPage:
        """A page for an object (active) or, `wired`, for the kernel itself (a page table); raises OutOfMemory
        when RAM is exhausted.  `prezeroed`: a zero-fill fault, which takes a frame the idle machine zeroed if
        there is one."""
        if not (self._free or self._zeroed):
            self._reuse_cached()
        if prezeroed and self._zeroed:
            frame = self._zeroed.pop()
            zero = False
            taken = True
        else:
            frame = self._free.pop() if self._free else self._zeroed.pop()
            taken = False
        page = VMPage(frame)
        self._pages[frame] = page
        self.queues[WIRED if wired else ACTIVE].insert(page)
        self.recorder.event("page", "alloc", frame=frame)
        if taken:
            self.recorder.event("page", "prezeroed", frame=frame)
        if zero:
            self.machine.fill_frame(frame, b"")
            self.recorder.event("page", "zero", frame=frame)
        return page

    def _reuse_cached(self) -> None:
        """The free list is empty: free the oldest page of the cache queue (its object loses it); OutOfMemory
        if the cache is empty too."""
        cache = self.queues[CACHE]
        if not len(cache):
            raise OutOfMemory()
        page = next(iter(cache.pages))
        self.recorder.event("page", "reuse", frame=page.frame, object=page.object.id, pindex=page.pindex)
        self.free_cached(page)

    def free_cached(self, page: VMPage) -> None:
        """A page of the cache queue goes: its object loses it (its copy on swap or in the file stays), and its
        frame is free."""
        del page.object.pages[page.pindex]
        self.free(page)

    def activate(self, page: VMPage) -> None:
        """A fault found the page on the inactive or cache queue: it is in use again (v_reactivated)."""
        self.queues[ACTIVE].insert(page)
        self.recorder.event("page", "reactivate", frame=page.frame)

    def zero_idle(self, instructions: int) -> None:
        """Every CPU idles for `instructions`: zero free frames into the pre-zeroed pool meanwhile, one per
        IDLE_ZERO_INSTRUCTIONS, up to the cap (FreeBSD's vm_page_zero_idle, on while the machine has nothing
        else to do)."""
        pages = min(instructions // IDLE_ZERO_INSTRUCTIONS, self.prezero_cap - len(self._zeroed), len(self._free))
        for _ in range(max(0, pages)):
            frame = self._free.pop()
            self.machine.fill_frame(frame, b"")
            self._zeroed.append(frame)
            self.recorder.event("page", "zero-idle", frame=frame)

    def free(self, page: VMPage) -> None:
        """Return a page to the free queue. It must no longer be mapped anywhere."""
        if self.free_untallied(page):
            self.recorder.event("page", "free", frame=page.frame)

    def free_untallied(self, page: VMPage) -> bool:
        """free() without its event, for a caller that tallies the pages it frees at once (an object
        terminating in an untraced run, Recorder.tally); False if the page was orphaned instead (a sink holds
        it), which is recorded as free() records it."""
        if page.pv:
            raise RuntimeError(f"freeing frame {page.frame} while it is still mapped")
        if page.hold_count:
            page.object = None
            self.orphans.add(page)
            self.queues[WIRED].insert(page)     # nothing can reclaim it until the sink lets it go
            self.recorder.event("page", "orphan", frame=page.frame)
            return False
        page.object = None
        page.queue.remove(page)
        self._pages[page.frame] = None
        self._free.append(page.frame)
        return True

    def hold(self, page: VMPage, cow: bool) -> None:
        """A sink takes the page in flight (vm_page_hold; with `cow`, also vm_page_cowsetup)."""
        page.hold_count += 1
        if cow:
            page.cow += 1

    def unhold(self, page: VMPage, cow: bool) -> None:
        """The sink is done with the page; an orphan is freed now."""
        page.hold_count -= 1
        if cow:
            page.cow -= 1
        if page.hold_count == 0 and page in self.orphans:
            self.orphans.discard(page)
            self.free(page)

    def page_of(self, frame: int) -> VMPage:
        page = self._pages[frame]
        if page is None:
            raise RuntimeError(f"frame {frame} is not allocated")
        return page

    def copy(self, dst: VMPage, src: VMPage, reason: str) -> None:
        self.machine.copy_frame(dst.frame, src.frame)
        self.recorder.event("page", "copy", frame=dst.frame, source=src.frame, reason=reason)
