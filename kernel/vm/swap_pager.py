"""swap_pager: backing store for anonymous memory, allocated from a blist.

A page of an anonymous object has nowhere to go when memory is short but
swap.  Which swap block holds which page is swap metadata kept per object as
a hash from page index to block (`VMObject.swap_blocks`; the paper's hash
table is keyed by object and index, FreeBSD 12 keeps a trie per object), so
that an object pays only for the pages it has on swap.  Blocks come from the
radix-tree bitmap (kernel/vm/blist.py), a run at a time: the pageout daemon
hands over the dirty pages of an object with consecutive indexes together,
and they go to consecutive blocks in one write (FreeBSD's swap_pager_putpages
clustering).

A page read back in keeps its block while it stays clean, so that paging it
out again costs no write; a page found dirty is written to its block again.
The store is a buffer of the host's (anonymous mmap), nothing of the host's
own swap.
"""

from __future__ import annotations

import mmap
import sys
from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.vm.blist import MAX_RUN, Blist, SwapFull

if TYPE_CHECKING:
    from vmgames.emulator.machine import Machine
    from vmgames.kernel.vm.object import VMObject
    from vmgames.kernel.vm.page import VMPage
    from vmgames.kernel.vmmeter import Recorder

CLUSTER_PAGES = 16     # the most pages one swap write takes (FreeBSD's nsw_cluster_max is MAXPHYS's 32)
# Linux's MAP_NORESERVE (Python's mmap module names it only from 3.13 on).
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)
MAX_SWAP = 1 << 40     # 1 TiB: the blist's bitmaps for that are 32 MiB of the host's memory


class SwapUnavailable(Exception):
    """The host would not give a buffer of that size."""


class SwapPager:
    """`size` bytes of swap, in blocks of a page."""

    def __init__(self, size: int, machine: Machine, recorder: Recorder) -> None:
        if size > MAX_SWAP:
            raise SwapUnavailable(f"at most {MAX_SWAP >> 30}G")
        self.blocks = size // PAGE_SIZE
        self.blist = Blist(self.blocks)
        try:
            # Reserved as it is written: swap the guest never fills costs the host nothing.
            self.store = mmap.mmap(-1, self.blocks * PAGE_SIZE,
                                   flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
        except OSError as error:
            raise SwapUnavailable(f"the host cannot give that much memory ({error.strerror})") from None
        self.ram = machine.ram.bytes
        self.machine = machine
        self.recorder = recorder
        self.peak = 0

    @property
    def used(self) -> int:
        return self.blocks - self.blist.free_blocks

    def putpages(self, obj: VMObject, pages: list[VMPage]) -> list[VMPage]:
        """Write `pages` of `obj` (sorted by index) to swap; returns those written (the rest found no room).

        A page with a block already is written there again; the others go out
        in runs of consecutive indexes, each run to consecutive blocks.
        """
        written = [page for page in pages if page.pindex in obj.swap_blocks]
        for page in written:
            self._write(obj, [page], obj.swap_blocks[page.pindex])
        fresh = [page for page in pages if page.pindex not in obj.swap_blocks]
        for run in _runs(fresh):
            written += self._put_run(obj, run)
        return written

    def _put_run(self, obj: VMObject, run: list[VMPage]) -> list[VMPage]:
        """One run to one run of blocks; halved until it fits, and what still does not fit stays behind."""
        try:
            first = self.blist.alloc(len(run))
        except SwapFull:
            if len(run) == 1:
                return []
            half = len(run) // 2
            return self._put_run(obj, run[:half]) + self._put_run(obj, run[half:])
        for offset, page in enumerate(run):
            obj.swap_blocks[page.pindex] = first + offset
        self.peak = max(self.peak, self.used)
        self._write(obj, run, first)
        return run

    def _write(self, obj: VMObject, run: list[VMPage], first: int) -> None:
        self.recorder.event("swap", "write", block=first, pages=len(run))
        for offset, page in enumerate(run):
            at = (first + offset) * PAGE_SIZE
            self.store[at:at + PAGE_SIZE] = self.ram[page.paddr:page.paddr + PAGE_SIZE]
            self.recorder.event("swap", "out", frame=page.frame, object=obj.id, pindex=page.pindex,
                                block=first + offset)

    def getpage(self, obj: VMObject, pindex: int, page: VMPage) -> None:
        """Read the page at `pindex` of `obj` from its block into `page` (a swap-in); the block stays."""
        block = obj.swap_blocks[pindex]
        at = block * PAGE_SIZE
        self.machine.fill_frame(page.frame, self.store[at:at + PAGE_SIZE])
        self.recorder.event("swap", "in", frame=page.frame, object=obj.id, pindex=pindex, block=block)

    def read(self, obj: VMObject, pindex: int, offset: int, length: int) -> bytes:
        """Bytes of a swapped page, for a debugger that must not fault it in."""
        at = obj.swap_blocks[pindex] * PAGE_SIZE + offset
        return bytes(self.store[at:at + length])

    def free(self, obj: VMObject, pindex: int, reason: str) -> None:
        """The object no longer needs the copy on swap of its page at `pindex`; a `dead` page's (one a shadow
        hid, found by a collapse) is counted apart: the swap the paper says dead pages eat."""
        block = obj.swap_blocks.pop(pindex)
        self.blist.free(block)
        if reason == "dead":
            self.recorder.event("swap", "dead", object=obj.id, pindex=pindex, block=block)
        else:
            self.recorder.event("swap", "free", object=obj.id, pindex=pindex, block=block, reason=reason)

    def free_range(self, obj: VMObject, start: int, end: int, reason: str) -> None:
        """swap_pager_freespace: free the blocks of the pages at indexes [start, end)."""
        for pindex in [p for p in obj.swap_blocks if start <= p < end]:
            self.free(obj, pindex, reason)

    def transfer(self, source: VMObject, pindex: int, target: VMObject, to: int) -> None:
        """swap_pager_copy, one page: the block of `source`'s page now holds `target`'s page at `to`."""
        target.swap_blocks[to] = source.swap_blocks.pop(pindex)


def _runs(pages: list[VMPage]) -> list[list[VMPage]]:
    """Split pages sorted by index into runs of consecutive indexes, each at most a cluster."""
    runs: list[list[VMPage]] = []
    for page in pages:
        if runs and page.pindex == runs[-1][-1].pindex + 1 and len(runs[-1]) < min(CLUSTER_PAGES, MAX_RUN):
            runs[-1].append(page)
        else:
            runs.append([page])
    return runs
