"""vm_pageout: the pageout daemon, which chooses the pages to reuse when memory runs short.

Dillon calls choosing which pages to free "possibly the single-most
important function any VM system can perform".  The daemon here follows the
paper's design (FreeBSD 4):

- Every page in use is on a queue (kernel/vm/pagequeue.py).  The daemon
  sweeps the active queue like a clock: each page's activity count
  (`act_count`) rises when the accessed bit of a PTE mapping it was set
  since the last sweep, read and cleared through its pv entries
  (pmap_ts_referenced; each cleared bit a TLB may cache costs an
  invalidation, reason "aging"), and falls when none was.
- A page whose count reaches 0 is a candidate: it is unmapped everywhere
  (the dirty bits of its PTEs say whether it was written) and goes to the
  cache queue if clean (a file's page, or an anonymous page whose copy on
  swap is good), or to the inactive queue if dirty.
- Dirty candidates are laundered: written to swap in clusters
  (kernel/vm/swap_pager.py), then they are clean and go to the cache queue.
- Cache pages are as good as free: the allocator reuses the oldest when the
  free list is empty, and the daemon frees some to keep `free_min` truly
  free.  A fault on an inactive or cache page just takes it back (a
  reactivation, far cheaper than reading it in again).

How the daemon learns that a page was used (`page_used`) can be changed, to
measure what aging buys: with UNMAP it does without the accessed bit, as the
paper describes for hardware that has none (it unmaps the page instead, and
the fault the next touch takes marks it used); with FIFO it learns nothing,
and the oldest page on the active queue is the candidate.

How it finds the PTEs mapping a page (`rmap`): through the page's pv entries
(PV, FreeBSD's way), or, for the rmap experiment, by probing every PTE of
every address space as a kernel without a reverse map must (SCAN, Linux 2.4's
situation).  Each unmapping records how many PTEs it probed.

It is woken (pagedaemon_wakeup) when the frames to be had fall below
`free_min`; one pass then works towards `free_target`.  A fault that finds
too few frames to proceed waits for it (vm_wait): the daemon makes pass
after pass, and only when it can make no more room, RAM and swap both full,
is the out-of-memory killer called.  It runs at the virtual time it is
woken, in no process's name (its events carry pid 0).  Before that killer,
the page tables of the address spaces no CPU has loaded are thrown away:
they are a cache of the objects, rebuilt by faults when the process runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vmgames.kernel.vm import pmap
from vmgames.kernel.vm.page import ACT_ADVANCE, ACT_DECLINE, ACT_MAX, VMPage
from vmgames.kernel.vm.pagequeue import ACTIVE, CACHE, INACTIVE, WIRED
from vmgames.kernel.vm.swap_pager import CLUSTER_PAGES

if TYPE_CHECKING:
    from vmgames.kernel.vm.context import VMContext
    from vmgames.kernel.vm.object import VMObject

PAGEDAEMON_PID = 0
ACCESSED_BIT, UNMAP, FIFO = "accessed-bit", "unmap", "fifo"
PAGE_USED = (ACCESSED_BIT, UNMAP, FIFO)
PV, SCAN = "pv", "scan"
RMAPS = (PV, SCAN)
# A waiting fault lets the daemon sweep until every page it may take has declined to 0.
MAX_PASSES = ACT_MAX // ACT_DECLINE + 2


class PageoutDaemon:
    """The daemon, called by the allocator's vm_wait (`__call__`) when frames run short."""

    def __init__(self, vm: VMContext) -> None:
        self.vm = vm
        self.allocator = vm.allocator
        self.recorder = vm.recorder
        self.page_used = ACCESSED_BIT      # vmgames run --page-used
        self.rmap = PV                     # vmgames run --rmap
        # Every address space's pmap, for the SCAN reverse map and the throw-away of idle page tables.
        self.address_spaces: Callable[[], list[pmap.Pmap]] = lambda: list(self.allocator.pmaps)
        # The out-of-memory killer (kernel/oom.py): called with the frames wanted, it says whether they are
        # there now.
        self.oom: Callable[[int], bool] | None = None
        self._running = False   # a fault while the daemon or the killer works (a victim's exit) waits for neither

    def __call__(self, pages: int) -> bool:
        """Woken because fewer than free_min + `pages` frames are to be had; whether `pages` are, after."""
        allocator = self.allocator
        if self._running:
            return allocator.available >= pages
        self._running = True
        try:
            return self._run(pages)
        finally:
            self._running = False

    def _run(self, pages: int) -> bool:
        allocator = self.allocator
        blocked = allocator.available < pages
        previous, self.recorder.pid = self.recorder.pid, PAGEDAEMON_PID
        try:
            queues = allocator.queues
            swap = self.vm.swap_pager
            self.recorder.event("pageout", "wakeup", shortage=allocator.free_target - allocator.available,
                                blocked=blocked, active=len(queues[ACTIVE]), inactive=len(queues[INACTIVE]),
                                cache=len(queues[CACHE]), wired=len(queues[WIRED]), free=allocator.free_count,
                                swap_used=swap.used if swap is not None else 0)
            self._passes(MAX_PASSES if blocked else 1)
            if allocator.available < pages and self._throw_away_tables():
                self._passes(MAX_PASSES)
        finally:
            self.recorder.pid = previous
        if allocator.available >= pages:
            return True
        return self.oom is not None and self.oom(pages)

    def _passes(self, most: int) -> None:
        for _ in range(most):
            if not self.scan() or self.allocator.available >= self.allocator.free_target:
                return

    def _throw_away_tables(self) -> bool:
        """The last resort before the out-of-memory killer: the page tables of every address space no CPU has
        loaded are a cache of its objects (the paper's throw-away page tables), so they go, with every
        mapping in them; the pages stay in their objects, and the faults of the process's next run map them
        again.  Whether any table was freed."""
        freed = 0
        for target in self.address_spaces():
            if target.active_cpus or not target.resident:
                continue
            tables = len(target.tables)
            target.remove(0, 1 << 47, "pageout")
            self.recorder.event("pageout", "drop-tables", tables=tables - len(target.tables))
            freed += tables - len(target.tables)
        return freed > 0

    def scan(self) -> bool:
        """vm_pageout_scan, one pass: launder, sweep the active queue, keep free_min free; whether anything
        changed."""
        allocator = self.allocator
        swap = self.vm.swap_pager
        changed = False
        if swap is not None and len(allocator.queues[INACTIVE]):
            changed |= self._launder(allocator.free_target - allocator.available) > 0
        # Inactive pages will be frames once laundered, if there is swap to launder them to.
        can_launder = swap is not None and swap.blist.free_blocks > 0
        shortage = allocator.free_target - allocator.available - (len(allocator.queues[INACTIVE]) if can_launder
                                                                   else 0)
        if shortage > 0:
            changed |= self._sweep_active(shortage, can_launder)
        cache = allocator.queues[CACHE]
        while allocator.free_count < allocator.free_min and len(cache):
            page = next(iter(cache.pages))
            self.recorder.event("pageout", "free", frame=page.frame)
            allocator.free_cached(page)
            changed = True
        return changed

    def _sweep_active(self, shortage: int, can_launder: bool) -> bool:
        """Age the active queue from its head until `shortage` candidates are found or every page was seen
        once (a dirty one is no candidate unless it `can_launder`); whether any page's count moved."""
        active = self.allocator.queues[ACTIVE]
        stale: dict[pmap.Pmap, list[int]] = {}
        moved = False
        for page in active:
            if shortage <= 0:
                break
            if page.hold_count:
                continue            # in flight in a sink: it stays where it is
            refs = self._referenced(page, stale)
            self.recorder.event("pageout", "scan", frame=page.frame, act_count=page.act_count, references=refs)
            if refs:
                moved |= page.act_count < ACT_MAX
                page.act_count = min(page.act_count + ACT_ADVANCE + refs, ACT_MAX)
            elif self.page_used == FIFO:
                page.act_count = 0
            elif page.act_count:
                page.act_count = max(page.act_count - ACT_DECLINE, 0)
                moved = True
            if page.act_count or refs or (not can_launder and (page.dirty or pmap.is_modified(page))):
                # To the tail: the clock hand moves on.  A dirty page with no swap to go to stays too: unmapped,
                # it would only come back by a fault, with nothing freed.
                active.insert(page)
            else:
                self._deactivate(page)
                shortage -= 1
                moved = True
        for target, addresses in stale.items():
            target.shootdown.invalidate(target.active_cpus, addresses, "aging")
        return moved

    def _referenced(self, page: VMPage, stale: dict[pmap.Pmap, list[int]]) -> int:
        """References to `page` since the last look: accessed bits, or (page-used emulation) the faults its
        unmapping caused; either way it is looked at afresh from now on."""
        refs = int(page.referenced)
        page.referenced = False
        if self.page_used == FIFO:
            return 0
        if self.page_used == UNMAP:
            self._unmap(page)
            return refs
        return refs + pmap.ts_referenced(page, stale)

    def _unmap(self, page: VMPage) -> None:
        """Unmap `page` everywhere (the dirty bits of its PTEs go to page.dirty), finding its PTEs as `rmap`
        says; records how many PTEs that probed."""
        mappings = len(page.pv)
        if not mappings:
            return
        if self.rmap == PV:
            probes = len(page.pv)
            pmap.remove_all(page, "pageout")
        else:
            probes = pmap.remove_all_by_scan(page, "pageout", self.address_spaces())
        self.recorder.event("pageout", "unmap", frame=page.frame, mappings=mappings, probes=probes)

    def _deactivate(self, page: VMPage) -> None:
        """A candidate: unmap it everywhere; clean pages go to the cache queue, dirty ones to the inactive
        queue to be laundered."""
        self._unmap(page)
        if page.dirty:
            self.allocator.queues[INACTIVE].insert(page)
            self.recorder.event("page", "deactivate", frame=page.frame)
        else:
            self.allocator.queues[CACHE].insert(page)
            self.recorder.event("page", "cache", frame=page.frame)

    def _launder(self, shortage: int) -> int:
        """Write the oldest dirty candidates (up to `shortage`, at least a cluster's worth) to swap, an object's
        pages together; those written are clean and go to the cache queue.  How many were."""
        inactive = self.allocator.queues[INACTIVE]
        batch: dict[VMObject, list[VMPage]] = {}
        taken = 0
        for page in inactive:
            if taken >= max(shortage, CLUSTER_PAGES):
                break
            if not page.hold_count:
                batch.setdefault(page.object, []).append(page)
                taken += 1
        laundered = 0
        for obj, pages in batch.items():
            pages.sort(key=lambda page: page.pindex)
            for page in self.vm.swap_pager.putpages(obj, pages):
                page.dirty = False
                self.allocator.queues[CACHE].insert(page)
                self.recorder.event("page", "launder", frame=page.frame)
                laundered += 1
        return laundered
