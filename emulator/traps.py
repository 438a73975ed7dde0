"""Why the CPU stopped running user code: the traps a kernel must handle."""

from __future__ import annotations

from dataclasses import dataclass

# Trap kinds.
QUANTUM = "quantum"               # the instruction budget ran out
STOPPED = "stopped"               # the kernel asked the machine to stop (e.g. a blocking syscall)
PAGE_FAULT = "page-fault"         # a fault the kernel's handler could not resolve
INVALID_OPCODE = "invalid-opcode"  # #UD
DIVIDE_ERROR = "divide-error"     # #DE
BREAKPOINT = "breakpoint"         # int3 (#BP)
GENERAL_PROTECTION = "general-protection"  # a privileged instruction (hlt, ...) in user mode


@dataclass(frozen=True)
class Trap:
    """One stop of the CPU. `rip` is where execution would resume, or the
    faulting instruction for faults; `address`/`error_code`/`access` are set
    for page faults (CR2, the x86 error code, read/write/fetch), and
    `verdict` is what the kernel's fault handler answered when it could not
    resolve the fault (None when no handler was asked: an address the
    machine refuses before any walk)."""

    kind: str
    rip: int
    address: int | None = None
    error_code: int | None = None
    access: int | None = None
    verdict: object = None
