"""TLB shootdown: invalidating a changed translation on every CPU that may cache it.

A PTE change that takes something away (another frame, fewer rights) must
reach every TLB that may hold the old entry.  The CPU making the change
invalidates its own (invlpg, or a full flush past Linux's single-page
ceiling); every other CPU with the address space loaded (the pmap's
`active_cpus`: FreeBSD's pm_active, Linux's mm_cpumask, an idle CPU that kept
it lazily included, until that IPI makes it leave) is sent one IPI for the whole batch, as Linux's
flush_tlb_mm_range and FreeBSD's pmap_invalidate_range do, and the sender
waits for every answer.  Targets do not run while the kernel works on the
sender (they run one at a time, kernel/sched.py), so each invalidation is
queued on the target's TLB at once and the interrupt is recorded when the
target takes it, at its next instruction boundary in the schedule.

Named by the recorder as Linux's tlb:tlb_flush tracepoint names its
reasons: a local invalidation of an address space's pages is
TLB_LOCAL_MM_SHOOTDOWN, a `shootdown` event is
TLB_REMOTE_SEND_IPI on the sender, and the interrupt each target takes is
TLB_REMOTE_SHOOTDOWN, named by the handler FreeBSD runs for it
(`ipi-invlpg`, `ipi-invlrng`, `ipi-invltlb`) and counted per CPU as
FreeBSD's ipi_invlpg_counts and the rest (tools/vmstat.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel.pcpu import ShootdownIPI

if TYPE_CHECKING:
    from vmgames.emulator.machine import Machine
    from vmgames.kernel.pcpu import PerCPU
    from vmgames.kernel.vmmeter import Recorder

# Changing more pages than this at once costs one full flush rather than one
# invalidation per page: Linux's tlb_single_page_flush_ceiling (x86, default 33).
TLB_SINGLE_PAGE_FLUSH_CEILING = 33
# Why a translation is invalidated: the `reason` of every tlb and pte event (docs/trace-format.md).
REASONS = {
    "fault": "a fault replaced a mapping",
    "cow": "a copy-on-write copy replaced a mapped frame",
    "cow-send": "a copy-on-write send write-protected a page, or a write to a page in flight got its copy",
    "fork": "fork write-protected the parent",
    "mprotect": "mprotect took rights away",
    "munmap": "munmap, mremap, or brk shrinking",
    "madvise": "madvise(MADV_DONTNEED)",
    "collapse": "a collapse moved a page between objects",
    "page-remove": "a page left its object",
    "terminate": "an object's last reference went",
    "aging": "the pageout daemon cleared an accessed bit, to see whether the page is used again",
    "pageout": "the pageout daemon unmapped a page, a candidate for reuse",
}
# Forgets every shootdown IPI, whatever the reason; the local invalidations are still made.
REMOTE = "remote-shootdown"
# The interrupts a target takes (event kinds, on the target's CPU).
IPI_INVLPG, IPI_INVLRNG, IPI_INVLTLB = "ipi-invlpg", "ipi-invlrng", "ipi-invltlb"


class TLBShootdown:
    """The kernel's one way to invalidate translations, on the CPU it works on and on the others."""

    def __init__(self, machine: Machine, recorder: Recorder, cpus: list[PerCPU]) -> None:
        self.machine = machine
        self.recorder = recorder
        self.cpus = cpus
        # Fault injection (vmgames run --skip-invalidation, to see what a missing shootdown does, and the
        # sanitizer's tests): the invalidations made for these reasons, or with REMOTE every IPI, are forgotten.
        self.skipped: set[str] = set()

    def invalidate(self, active_cpus: set[int], addresses: list[int], reason: str) -> None:
        """Invalidate `addresses` of an address space loaded on `active_cpus`, wherever it is loaded."""
        if not active_cpus or not addresses or reason in self.skipped:
            return
        here = self.machine.selected.index
        whole = len(addresses) > TLB_SINGLE_PAGE_FLUSH_CEILING
        if here in active_cpus:
            tlb = self.machine.tlb
            if whole:
                self.recorder.event("tlb", "invalidate-all", reason=reason)
                tlb.invalidate_all()
            else:
                for va in addresses:
                    self.recorder.event("tlb", "invalidate-page", address=va, reason=reason)
                    tlb.invalidate_page(va)
        if len(active_cpus) > (here in active_cpus) and REMOTE not in self.skipped:
            self._send(here, active_cpus, addresses, whole, reason)

    def _send(self, here: int, active_cpus: set[int], addresses: list[int], whole: bool, reason: str) -> None:
        """One IPI to each target for the whole batch; the sender waits for all (one `shootdown`).  A target
        that idles with the address space lazily loaded leaves it on this IPI (kernel/sched.py: _take_ipis):
        the next shootdowns pass it by."""
        targets = sorted(active_cpus - {here})
        pages = None if whole else len(addresses)
        kind = IPI_INVLTLB if whole else IPI_INVLPG if pages == 1 else IPI_INVLRNG
        self.recorder.event("tlb", "shootdown", targets=len(targets), pages=pages, reason=reason)
        for index in targets:
            pcpu = self.cpus[index]
            tlb = pcpu.processor.tlb
            if whole:
                tlb.invalidate_all()
            else:
                for va in addresses:
                    tlb.invalidate_page(va)
            pcpu.ipis.append(ShootdownIPI(kind, here, reason, pages))
            if pcpu.current is None:
                active_cpus.discard(index)
