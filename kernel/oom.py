"""The out-of-memory killer: when RAM and swap are both full, the process using the most memory dies.

Both kernels do it as a last resort (Linux's oom_kill.c, FreeBSD's
vm_pageout_oom): the pageout daemon calls it once it can make no more room.
A process's size is what killing it may give back, as Linux's oom_badness
counts it: its anonymous pages in memory and on swap, and its page-table
pages.  The pages are counted in its objects, not its page tables, which the
pageout daemon may have thrown away; pages a fork shares count for each
process, as in Linux's rss.
The kernel says whom it killed, in the words of Linux's log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel import sigframe, signal_delivery, signals
from vmgames.kernel.proc import ZOMBIE
from vmgames.kernel.vm.object import ANONYMOUS

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process


def footprint(proc: Process) -> tuple[int, int, int]:
    """(anonymous pages in memory, on swap, page-table pages) of `proc`'s address space."""
    anonymous = [obj for obj in proc.vmspace.objects() if obj.kind == ANONYMOUS]
    resident = sum(len(obj.pages) for obj in anonymous)
    swapped = sum(len(obj.swap_blocks) for obj in anonymous)
    return resident, swapped, len(proc.vmspace.pmap.tables)


def oom_kill(kernel: Kernel, pages: int) -> bool:
    """Kill the largest processes until `pages` frames are to be had; False if the largest is the one the
    kernel works for now (its fault then fails, and it dies of it)."""
    allocator = kernel.allocator
    while allocator.available < pages:
        live = [p for p in kernel.processes.values() if p.is_leader and p.state != ZOMBIE and p.vmspace is not None]
        if not live:
            return False
        victim = max(live, key=lambda p: (sum(footprint(p)), -p.pid))
        resident, swapped, tables = footprint(victim)
        vmspace = victim.vmspace
        total = sum(entry.end - entry.start for entry in vmspace.map.entries) >> 10
        kernel.log(f"Out of memory: Killed process {victim.pid} ({victim.name}) total-vm:{total}kB, "
                   f"anon-rss:{resident * 4}kB, swap:{swapped * 4}kB, pgtables:{tables * 4}kB")
        kernel.recorder.event("proc", "oom-kill", target=victim.pid, resident=resident, swapped=swapped)
        current = kernel.current
        if current is not None and current.tgid == victim.tgid:
            # It is in the middle of a fault: the fault fails, and the SIGKILL, which nothing blocks or catches,
            # ends it on its way back to user mode (a kernel fault's syscall returns ENOMEM first).
            current.pending.setdefault(signals.SIGKILL, sigframe.siginfo(signals.SIGKILL, signal_delivery.SI_KERNEL))
            return False
        kernel.kill_process(victim, signals.SIGKILL, "out of memory")
    return True
