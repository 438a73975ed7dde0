"""`vmgames run --break-on fault[:KIND]|syscall:NAME`: stop in Python's debugger inside the kernel.

The kernel's fault handler is Python, so pdb (or whatever PYTHONBREAKPOINT
names) can walk it line by line.  The break is taken in an observer's
`before_fault` (kernel/observer.py), just before vm_fault runs, with the fault in local
variables; `step` from there enters vm_fault and its chain lookup
(docs/gdb-tutorial.md shows a session).
"""

from __future__ import annotations

from vmgames.emulator import mmu
from vmgames.kernel import syscall
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import Process
from vmgames.kernel.vm import fault


def parse(spec: str) -> tuple[str, str] | str:
    """('fault', KIND or 'any') or ('syscall', NAME as syscall_name gives it); else what is wrong."""
    what, _, name = spec.partition(":")
    if what == "fault":
        kind = name or "any"
        if kind not in (*fault.KINDS, "any"):
            return f"unknown fault kind {kind!r}; kinds: {', '.join(fault.KINDS)}"
        return what, kind
    if what == "syscall":
        # Linux's name, strace's syscall_0x1f4 for a number Linux never assigned, or the number itself.
        canonical = syscall.canonical_name(name)
        return (what, canonical) if canonical is not None else syscall.unknown_name_message(name)
    return f"--break-on takes fault, fault:KIND or syscall:NAME, not {spec!r}"


class BreakOn(Observer):
    """Stops in pdb before each fault of one kind, or each call of one syscall."""

    def __init__(self, what: str, name: str) -> None:
        self.what, self.name = what, name

    def before_fault(self, kernel: Kernel, proc: Process, va: int, access: int, error_code: int,
                     user: bool) -> None:
        if self.what == "fault":
            _fault(proc, va, access, error_code, user, self.name)

    def before_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if self.what == "syscall":
            _syscall(proc, number, self.name)


def _fault(proc: Process, va: int, access: int, error_code: int, user: bool, wanted: str) -> None:
    kind = fault.predict_kind(proc.vmspace, va, access, error_code)
    if wanted not in ("any", kind):
        return
    entry = proc.vmspace.map.lookup(va)
    where = fault.find_page(entry, va) if entry is not None else None   # (object, pindex, level, page)
    rip = proc.kernel.machine.cpu.rip
    found = "in no object yet"
    if where is not None and where[3] is not None:
        found = f"in object {where[0].id}, level {where[2]} of the chain"
        if entry.needs_copy and access == mmu.WRITE:
            found += " (one level down once the handler pushes a shadow: the entry is needs-copy)"
    who = "" if user else " in the kernel (copyin/copyout of the syscall there)"
    print(f"vmgames: process {proc.pid} faults{who} at rip {rip:#x}: {mmu.ACCESS_NAMES[access]} of {va:#x}, "
          f"kind {kind}, the page is {found}.\nvmgames: in scope: proc, va, access, error_code, user, kind, entry, "
          "where (object, index, level, page); 'step' walks on into vm_fault, 'continue' runs on.")
    breakpoint()


def _syscall(proc: Process, number: int, wanted: str) -> None:
    name = syscall.syscall_name(number)
    if name != wanted:
        return
    print(f"vmgames: process {proc.pid} calls {name}; in scope: proc, number, name. "
          "'step' walks on into the kernel's dispatch, 'continue' runs on.")
    breakpoint()
