"""`vmgames run --check-tlb`: the TLB sanitizer.

Whenever a CPU is about to run user code (a slice starts, a syscall or a
page fault returns), every translation its TLB may still hold
(emulator/tlb.py: the pages filled since the last flush) must agree with
the PTE in RAM: the same frame, no more rights.  One that does not
is a PTE the kernel changed without invalidating it, the bug real kernels
dread (on several CPUs, a missing shootdown).  The run then stops, every
process killed, with one line per stale translation naming the PTE write
that lacked its invalidation: when, on which CPU, by which process, why,
and the PTE before and after.  The PTE writes are followed through the
recorder, so this costs what a trace costs.
"""

from __future__ import annotations

from typing import Any

from vmgames.emulator import pte
from vmgames.kernel import signals
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import RUNNABLE, Process

STATUS = 3         # vmgames' exit status when the sanitizer stopped the run


def _rights(unicorn_rights: int) -> str:
    return "".join(letter if unicorn_rights & bit else "-" for bit, letter in ((1, "r"), (2, "w"), (4, "x")))


def _pte_text(entry: int) -> str:
    if not entry & pte.P:
        return "not present"
    rights = "r" + ("w" if entry & pte.RW else "-") + ("-" if entry & pte.NX else "x")
    return f"frame {pte.frame_of(entry):#x} {rights}"


class TLBCheck(Observer):
    """Checks the TLB against the page tables before every run of user code."""

    def __init__(self, kernel: Kernel) -> None:
        self.problems: list[str] = []
        self.last_write: dict[int, tuple[int, int, int, str, int, int]] = {}   # page -> (t, cpu, pid, reason, old, new)
        recorder = kernel.recorder
        self._forward = recorder.sink
        recorder.sink = self._see

    def _see(self, t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        if type_ == "pte" and kind == "write":
            self.last_write[fields["address"] & ~0xFFF] = (t, cpu, pid, fields["reason"], fields["old"],
                                                           fields["new"])
        if self._forward is not None:
            self._forward(t, cpu, pid, type_, kind, fields)

    def before_run(self, kernel: Kernel) -> None:
        self._check(kernel, kernel.current)

    # After a syscall or a fault, only a thread that goes back to user code now can use a stale entry: one
    # that exited or sleeps runs again only after the next slice's check.

    def after_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if proc.state == RUNNABLE:
            self._check(kernel, proc)

    def after_fault(self, kernel: Kernel, proc: Process, va: int, result: Any, user: bool) -> None:
        if proc.state == RUNNABLE:
            self._check(kernel, proc)

    def _check(self, kernel: Kernel, proc: Process) -> None:
        machine = kernel.machine
        if self.problems or machine.tlb.pending or kernel.active_vmspace is not proc.vmspace:
            return      # a flush comes first (asked for, or the CR3 load of an exec's new image): nothing survives it
        here = machine.selected.index
        whose = f"CPU {here}'s TLB" if len(machine.processors) > 1 else "the TLB"
        for page, frame, rights, now in machine.stale_translations():
            line = (f"{whose} may still translate {page:#x} to frame {frame >> 12:#x} ({_rights(rights)}), "
                    f"but the PTE is now {_pte_text(now)}")
            written = self.last_write.get(page)
            if written is not None:
                t, cpu, pid, reason, old, new = written
                where = f" on CPU {cpu}" if len(machine.processors) > 1 else ""
                missing = "invalidation" if cpu == here else f"shootdown IPI to CPU {here}"
                line += (f": the PTE write at t = {t:,}{where} by process {pid} (reason {reason}: "
                         f"{_pte_text(old)} -> {_pte_text(new)}) had no {missing}")
            self.problems.append(line)
        if self.problems:
            kernel.terminate_all(signals.SIGKILL, "--check-tlb found a stale TLB entry")
