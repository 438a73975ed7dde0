"""Traps: every way user code enters the kernel, and the signal each fatal one sends.

The machine calls in from inside the running engine: `_syscall` on a
syscall instruction, `_page_fault` on a TLB miss the walk could not
satisfy.  Every page fault, the user's and the kernel's own (copyin and
copyout inside a syscall), goes through `page_fault`, where a debugger's
hooks see it.  When a run stops on a trap the kernel could not resolve,
`_handle_trap` kills the process with the signal Linux would send; the
table of which signal is here, once, for the kernel and the debugger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator import mmu, traps
from vmgames.emulator.cpu import REGISTER_IDS
from vmgames.emulator.disasm import instruction_at, memory_operands
from vmgames.emulator.machine import Machine
from vmgames.kernel import sigframe, signal_delivery, signals
from vmgames.kernel.callout import CalloutQueue
from vmgames.kernel.proc import RUNNABLE, Process
from vmgames.kernel.signal_delivery import BUS_ADRERR, SEGV_ACCERR, SEGV_MAPERR
from vmgames.kernel.syscall import dispatch, record_woken
from vmgames.kernel.uaccess import peek
from vmgames.kernel.vm import fault
from vmgames.kernel.vm.fault import FaultResult, vm_fault
from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vm.prefault import FAULT_AROUND, fault_around
from vmgames.kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from vmgames.kernel.observer import Observer

SIGNAL_OF_TRAP = {
    traps.INVALID_OPCODE: signals.SIGILL,
    traps.DIVIDE_ERROR: signals.SIGFPE,
    traps.BREAKPOINT: signals.SIGTRAP,
    traps.GENERAL_PROTECTION: signals.SIGSEGV,
}
# (si_code, whether si_addr is the faulting instruction) of each trap's signal: ILL_ILLOPN, FPE_INTDIV, and
# SI_KERNEL for int3 and a general protection fault (whose address Linux does not give).
SIGINFO_OF_TRAP = {traps.INVALID_OPCODE: (2, True), traps.DIVIDE_ERROR: (1, True), traps.BREAKPOINT: (0x80, False),
                   traps.GENERAL_PROTECTION: (0x80, False)}
_SIGNAL_OF_FAULT = {fault.NOMEM: signals.SIGKILL, fault.BUSERR: signals.SIGBUS, fault.IOERR: signals.SIGBUS}


def signal_of_fault(reason: str) -> int:
    """The signal a fatal page fault sends: SIGSEGV, SIGBUS past the end of a file, SIGKILL when RAM ran out."""
    return _SIGNAL_OF_FAULT.get(reason, signals.SIGSEGV)


class Traps:
    """The trap half of the Kernel (kernel/kernel.py puts the halves together)."""

    machine: Machine
    recorder: Recorder
    allocator: PageAllocator
    callout: CalloutQueue
    prefault: str | None
    current: Process | None
    observers: tuple[Observer, ...]

    def _page_fault(self, va: int, access: int, error_code: int) -> FaultResult | None:
        """A fault user code took (from the machine's TLB-fill hook): None if resolved, else the fatal verdict."""
        proc = self.current
        if self.callout.devices:
            self.callout.run_due()    # a write to a page in flight copies it only if it is still in flight
        result = self.page_fault(proc, va, access, error_code, user=True)
        # An observer may have ended the process meanwhile (the TLB sanitizer, a run limit): its tables are gone,
        # and the run must end here, not retry the walk.
        return result if result.fatal or proc.state != RUNNABLE else None

    def page_fault(self, proc: Process, va: int, access: int, error_code: int, user: bool) -> FaultResult:
        """Every page fault comes through here, so that a debugger's fault hooks see them all: the user's
        (`user`), and the kernel's own, taken by copyin/copyout inside a syscall."""
        # Reading rip costs about as much as a page walk; only a trace needs it.  A kernel fault has no user rip.
        rip = self.machine.cpu.rip if user and self.recorder.sink is not None else None
        for observer in self.observers:
            observer.before_fault(self, proc, va, access, error_code, user)
        result = vm_fault(proc.vmspace, self.allocator, va, access, error_code, rip)
        if self.prefault == FAULT_AROUND and result.kind in (fault.FILE, fault.RESIDENT) and access != mmu.WRITE:
            fault_around(proc.vmspace, va)
        for observer in self.observers:
            observer.after_fault(self, proc, va, result, user)
        return result

    def _syscall(self) -> None:
        proc = self.current
        if self.callout.devices:
            self.callout.run_due()
        number, *args = self.machine.cpu.syscall_registers()
        for observer in self.observers:
            observer.before_syscall(self, proc, number)
        if proc.restart_result is not None:
            # Woken with its result (a futex wake, a timeout, vfork's end): the call is over, not made again.
            result, proc.restart_result = proc.restart_result, None
            record_woken(self, number, tuple(args), result)
        else:
            result = dispatch(self, proc, number, tuple(args))
        if proc.state == RUNNABLE:
            self.machine.cpu.set_result(result)
            if proc.pending and signal_delivery.deliverable(proc):
                self.machine.stop()     # the scheduler starts the handler before the next instruction
        for observer in self.observers:
            observer.after_syscall(self, proc, number)

    def _handle_trap(self, proc: Process, trap: traps.Trap) -> None:
        if trap.kind in (traps.QUANTUM, traps.STOPPED):
            return
        if trap.kind == traps.PAGE_FAULT:
            if trap.verdict is not None:
                reason = trap.verdict.reason
            else:
                # A jump into the kernel half: the machine caught it before any walk.
                reason = fault.MAPERR
                self.recorder.event("fault", fault.FATAL, address=trap.address, access=mmu.ACCESS_NAMES[trap.access],
                                    error_code=trap.error_code, rip=trap.rip, reason=reason)
            signal = signal_of_fault(reason)
            address = self._exact_address(proc, trap)
            what = f"{mmu.ACCESS_NAMES[trap.access]} of {address:#x} ({reason})"
            code = SEGV_MAPERR if reason == fault.MAPERR else BUS_ADRERR if signal == signals.SIGBUS else SEGV_ACCERR
            info = sigframe.siginfo(signal, code, address=address)
        else:
            signal = SIGNAL_OF_TRAP[trap.kind]
            what = trap.kind.replace("-", " ")
            code, address = SIGINFO_OF_TRAP[trap.kind]
            info = sigframe.siginfo(signal, code, address=trap.rip if address else 0)
        reason = f"{what} at {trap.rip:#x}: {self._instruction(proc, trap.rip)}"
        signal_delivery.fault(self, proc, signal, info, reason)

    def _exact_address(self, proc: Process, trap: traps.Trap) -> int:
        """The faulting byte's address (CR2), where the instruction shows it; else the page's."""
        if trap.access == mmu.FETCH:
            # The fetch faulted at rip, unless the instruction began on the page before.
            return trap.rip if trap.rip & ~0xFFF == trap.address else trap.address
        cpu = self.machine.cpu
        code = peek(proc, trap.rip, 16)
        for address in memory_operands(code, trap.rip, lambda name: cpu.read(REGISTER_IDS[name])):
            if address is not None and address & ~0xFFF == trap.address:
                return address
        return trap.address

    def _instruction(self, proc: Process, rip: int) -> str:
        code = peek(proc, rip, 16)
        return instruction_at(code, rip) if code else "(no code mapped there)"
