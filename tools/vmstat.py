"""The names FreeBSD and Linux give to what vmgames counts, so figures can be compared.

FreeBSD's `vmstat -s` prints the counters of struct vmmeter (sys/sys/vmmeter.h,
also sysctl vm.stats.vm.v_NAME), and its x86 code counts each CPU's shootdown
IPIs by handler; Linux's tlb:tlb_flush tracepoint tags each TLB flush with a
reason (include/trace/events/tlb.h), and /proc/vmstat counts them
(nr_tlb_*).  The values are sums of
event counts: the recorder's after a run (`--stats`), a trace's in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import NamedTuple

from vmgames.kernel.vm import fault, shootdown

# count(type, kind, reason) -> events; a kind or reason of None matches any.
Count = Callable[[str, "str | None", "str | None"], int]


class VMStat(NamedTuple):
    name: str                                                # struct vmmeter's field, without its v_ prefix
    text: str                                                # what `vmstat -s` prints beside the number
    events: tuple[tuple[str, str | None, str | None], ...]   # the (type, kind, reason) it adds up


FREEBSD = (
    # Switches of address space (a CR3 load): one between two threads of a process is not counted.
    VMStat("swtch", "cpu context switches", (("tlb", "invalidate-all", "context-switch"),)),
    VMStat("swapin", "swap pager pageins", (("swap", "in", None),)),
    VMStat("swappgsin", "swap pager pages paged in", (("swap", "in", None),)),
    VMStat("swapout", "swap pager pageouts", (("swap", "write", None),)),
    VMStat("swappgsout", "swap pager pages paged out", (("swap", "out", None),)),
    VMStat("pdwakeups", "page daemon wakeups", (("pageout", "wakeup", None),)),
    VMStat("pdpages", "pages examined by the page daemon", (("pageout", "scan", None),)),
    VMStat("reactivated", "pages reactivated", (("page", "reactivate", None),)),
    VMStat("vm_faults", "total VM faults taken", (("fault", None, None),)),
    VMStat("zfod", "zero fill pages zeroed", (("fault", fault.ZERO_FILL, None),)),
    VMStat("ozfod", "zero fill pages prezeroed", (("page", "prezeroed", None),)),
    VMStat("cow_faults", "copy-on-write faults", (("fault", fault.COW_COPY, None), ("fault", fault.COW_MOVE, None))),
    VMStat("cow_optim", "copy-on-write optimized faults", (("fault", fault.COW_MOVE, None),)),
    VMStat("vnodepgsin", "vnode pager pages paged in", (("page", "pagein", None),)),
    VMStat("forks", "fork() calls", (("proc", "fork", None),)),
    VMStat("forkpages", "pages affected by fork()", (("pte", "write", "fork"),)),
    VMStat("vforks", "vfork() calls", (("proc", "vfork", None),)),
    VMStat("tcached", "pages cached", (("page", "cache", None), ("page", "launder", None))),
    VMStat("tfree", "pages freed", (("page", "free", None),)),
    VMStat("dfree", "pages freed by daemon", (("pageout", "free", None),)),
    VMStat("syscall", "system calls", (("syscall", None, None),)),
)


def freebsd(count: Count) -> dict[str, int]:
    """Our counters under their struct vmmeter names, in `vmstat -s` order."""
    return {stat.name: sum(count(*event) for event in stat.events) for stat in FREEBSD}


def traced(stat: VMStat, kept: Collection[str] | None) -> bool:
    """Whether a trace that kept only the event types `kept` (None: all) holds every event `stat` adds up."""
    return kept is None or all(type_ in kept for type_, _, _ in stat.events)


def linux_tlb_reason(kind: str, reason: str) -> str:
    """Linux's tlb_flush reason for one of our TLB events.

    A CR3 load is a task switch.  Every other local invalidation is of a
    range of an address space this CPU has loaded, which Linux's
    flush_tlb_mm_range traces as a local mm shootdown; the IPIs it sends to
    the other CPUs that have it loaded are a remote send, and each target's
    flush a remote shootdown.
    """
    if kind == "shootdown":
        return "TLB_REMOTE_SEND_IPI"
    if kind in IPI_KINDS:
        return "TLB_REMOTE_SHOOTDOWN"
    return linux_local_tlb_reason(reason)


def linux_local_tlb_reason(reason: str) -> str:
    """Linux's tlb_flush reason for an invalidation a CPU makes of its own TLB, for one of our reasons."""
    return "TLB_FLUSH_ON_TASK_SWITCH" if reason in ("context-switch", "leave-mm") else "TLB_LOCAL_MM_SHOOTDOWN"


# The shootdown interrupts a CPU takes (kernel/vm/shootdown.py), by the counter FreeBSD keeps of each
# (sys/x86/x86/mp_x86.c, under COUNT_IPIS: one counter per CPU and handler).
IPI_KINDS = {shootdown.IPI_INVLPG: "ipi_invlpg_counts", shootdown.IPI_INVLRNG: "ipi_invlrng_counts",
             shootdown.IPI_INVLTLB: "ipi_invltlb_counts"}


def linux_tlb_counters(count: Count) -> dict[str, int]:
    """/proc/vmstat's TLB counters (x86's arch/x86/mm/tlb.c counts them): a task switch's CR3 load is none
    of them; nr_tlb_local_flush_one counts pages."""
    local_all = (count("tlb", "invalidate-all", None) - count("tlb", "invalidate-all", "context-switch")
                 - count("tlb", "invalidate-all", "leave-mm"))
    return {"nr_tlb_remote_flush": count("tlb", "shootdown", None),
            "nr_tlb_remote_flush_received": sum(count("tlb", kind, None) for kind in IPI_KINDS),
            "nr_tlb_local_flush_all": local_all,
            "nr_tlb_local_flush_one": count("tlb", "invalidate-page", None)}
