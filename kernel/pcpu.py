"""Per-CPU data: what the kernel keeps for each processor (FreeBSD's struct pcpu, Linux's per-cpu variables).

The kernel works on one processor at a time, the one the scheduler selected
(`Kernel.pcpu`); `Kernel.current` and the rest are that processor's.  A
processor that goes idle keeps its last address space loaded (lazy TLB, as
Linux does): it stays in that pmap's `active_cpus` until the first shootdown
IPI of that address space reaches it, and then leaves it (Linux's leave_mm,
kernel/sched.py: _take_ipis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator.processor import Processor

if TYPE_CHECKING:
    from vmgames.kernel.proc import Process
    from vmgames.kernel.vm.map import VMSpace


class ShootdownIPI:
    """An invalidation another CPU asked of this one, taken at its next instruction boundary in the schedule.

    `kind` is the interrupt, named as FreeBSD's handlers are: ipi-invlpg (one page), ipi-invlrng (a range of
    `pages`), ipi-invltlb (the whole TLB, past Linux's single-page ceiling: `pages` is None).
    """

    __slots__ = ("kind", "sender", "reason", "pages")

    def __init__(self, kind: str, sender: int, reason: str, pages: int | None) -> None:
        self.kind, self.sender, self.reason, self.pages = kind, sender, reason, pages


class PerCPU:
    """One processor's kernel state."""

    def __init__(self, processor: Processor) -> None:
        self.index = processor.index
        self.processor = processor
        self.current: Process | None = None         # the task running here (curthread)
        self.loaded: Process | None = None          # whose registers are in this processor's engine
        self.active_vmspace: VMSpace | None = None  # whose page tables its CR3 points at (kept while idle)
        self.slice_end = 0                          # when the current task's quantum ends, in this CPU's time
        self.ipis: list[ShootdownIPI] = []          # sent here, not taken yet
        self.woken: list[Process] = []              # woken while this CPU was idle: it takes them first

    def __repr__(self) -> str:
        return f"<cpu {self.index}>"
