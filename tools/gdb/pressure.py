"""gdb's `monitor queues` and `monitor swap`: memory pressure as the kernel sees it at one moment.

The page queues with their oldest pages (the pageout daemon's next
candidates), its thresholds and what it has done so far; swap space, its
fragmentation and which objects hold it.  Nothing here changes anything.
"""

from __future__ import annotations

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE
from vmgames.kernel.vm.object import VMObject
from vmgames.kernel.vm.pageout import ACCESSED_BIT, FIFO, UNMAP
from vmgames.kernel.vm.pagequeue import ACTIVE, CACHE, INACTIVE, QUEUES
from vmgames.tools import vmstat

OLDEST = 5       # pages shown from the head of each queue
USED = {ACCESSED_BIT: "the accessed bits of their PTEs", UNMAP: "unmapping them (page-used emulation)",
        FIFO: "nothing: the oldest goes first (FIFO)"}


def queues(kernel: Kernel) -> str:
    allocator = kernel.allocator
    recorder = kernel.recorder
    lengths = ", ".join(f"{len(allocator.queues[name]):,} {name}" for name in QUEUES)
    lines = [f"page queues: {lengths}, {allocator.free_count:,} free "
             f"({allocator.prezeroed_count:,} of them pre-zeroed)",
             f"the pageout daemon wakes when fewer than free_min {allocator.free_min} frames are to be had (free "
             f"or cache) beyond a fault's worth, and works towards free_target {allocator.free_target}; "
             f"{allocator.available:,} are to be had now",
             f"it tells used pages by {USED[kernel.pageout.page_used]}"]
    names = {stat.name: stat.text for stat in vmstat.FREEBSD}
    figures = vmstat.freebsd(lambda type_, kind, reason: recorder.count(type_, kind) if reason is None
                             else recorder.count_reason(type_, kind, reason))
    lines.append("so far: " + ", ".join(f"{names[name]} {figures[name]:,}" for name in
                                        ("pdwakeups", "pdpages", "reactivated", "tcached", "dfree")))
    for name in (ACTIVE, INACTIVE, CACHE):
        oldest = list(allocator.queues[name].pages)[:OLDEST]
        if oldest:
            lines.append(f"{name}, oldest first:")
            lines += [f"  frame {page.frame:#x}: object {page.object.id} page {page.pindex}, act_count "
                      f"{page.act_count}, {'dirty' if page.dirty else 'clean'}, mapped {len(page.pv)} time"
                      f"{'s' * (len(page.pv) != 1)}{', held by a sink' if page.hold_count else ''}"
                      for page in oldest]
    return "\n".join(lines)


def swap(kernel: Kernel) -> str:
    pager = kernel.vm.swap_pager
    if pager is None:
        return "no swap (vmgames run --swap SIZE gives some)"
    blist = pager.blist
    runs = blist.free_runs()
    lines = [f"swap: {pager.blocks:,} blocks of 4 KiB, {pager.used:,} in use (peak {pager.peak:,}), "
             f"{blist.free_blocks:,} free in {sum(runs.values()):,} runs, the longest {max(runs, default=0):,} "
             f"(fragmentation {blist.fragmentation():.3f})",
             f"so far: {_count(kernel.recorder.count('swap', 'write'), 'write')} of "
             f"{_count(kernel.recorder.count('swap', 'out'), 'page')}, "
             f"{_count(kernel.recorder.count('swap', 'in'), 'page')} read back"]
    holders = sorted((obj for obj in _live_objects(kernel) if obj.swap_blocks), key=lambda obj: obj.id)
    for obj in holders:
        blocks = sorted(obj.swap_blocks.values())
        lines.append(f"  object {obj.id} ({obj.kind}): {_count(len(blocks), 'page')} on swap, "
                     f"blocks {blocks[0]}-{blocks[-1]}")
    return "\n".join(lines)


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'s' * (n != 1)}"


def _live_objects(kernel: Kernel) -> list[VMObject]:
    objects = {obj.id: obj for proc in kernel.processes.values() if proc.state != ZOMBIE
               for obj in proc.vmspace.objects()}
    return list(objects.values())
