"""The x86-64 signal frame, laid out as Linux's (arch/x86/kernel/signal.c), so a handler reads what it would
read on Linux and returns through the C library's restorer into rt_sigreturn.

From the interrupted stack pointer down: 128 bytes of red zone (or the top of
the alternate stack), the FPU state in FXSAVE's layout aligned to 64 bytes,
then struct rt_sigframe { pretcode; struct ucontext uc; siginfo_t info; },
placed so that the handler starts as a function just called (rsp + 8 aligned
to 16).  The handler gets rdi = signal, rsi = &info, rdx = &uc; its `ret`
pops pretcode (the sa_restorer), which calls rt_sigreturn with rsp just past
pretcode.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vmgames.emulator.cpu import FXSAVE_SIZE
from vmgames.kernel import signal_delivery, signals
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

RED_ZONE = 128
PAGE_FAULT_VECTOR = 14
UC_FLAGS = 0x2 | 0x4            # UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, as Linux sets them
UCONTEXT_SIZE = 304             # uc_flags, uc_link, uc_stack (24), uc_mcontext (256), uc_sigmask (8)
SIGINFO_SIZE = 128
FRAME_SIZE = 8 + UCONTEXT_SIZE + SIGINFO_SIZE
MCONTEXT = 40                   # offset of uc_mcontext in struct ucontext
SIGMASK = MCONTEXT + 256
# struct sigcontext_64's general registers, in its order.
SIGCONTEXT_REGISTERS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx",
                        "rax", "rcx", "rsp", "rip", "eflags")
USER_CS, USER_DS = 0x33, 0x2B
# Flags a sigreturn may restore (Linux's FIX_EFLAGS: the arithmetic flags, TF, DF, OF, RF, AC and ID).
FIX_EFLAGS = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x200000


def siginfo(signal: int, code: int, *, pid: int = 0, uid: int = 0, address: int | None = None,
            status: int | None = None) -> bytes:
    """siginfo_t: si_signo, si_errno, si_code, then the union: si_addr for a fault; si_pid, si_uid (and
    si_status for SIGCHLD) for a signal a process sent."""
    head = struct.pack("<iii4x", signal, 0, code)
    if address is not None:
        body = struct.pack("<Q", address)
    elif status is not None:
        body = struct.pack("<iIi4xqq", pid, uid, status, 0, 0)
    else:
        body = struct.pack("<iI", pid, uid)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")


def push(kernel: Kernel, proc: Process, signal: int, info: bytes, handler: int, restorer: int, old_mask: int,
         on_altstack: bool) -> None:
    """Save the running task's registers and FPU state in a frame on its stack (or its alternate stack) and
    start the handler.  A stack it cannot write raises SyscallError (EFAULT): the caller kills with SIGSEGV."""
    cpu = kernel.machine.cpu
    registers = {name: cpu.get(name) for name in SIGCONTEXT_REGISTERS}
    stack_sp, stack_flags, stack_size = proc.altstack
    sp = stack_sp + stack_size if on_altstack else registers["rsp"] - RED_ZONE
    fpstate = (sp - FXSAVE_SIZE) & ~63
    frame = ((fpstate - FRAME_SIZE) & ~15) - 8
    mcontext = struct.pack("<18Q", *(registers[name] for name in SIGCONTEXT_REGISTERS))
    mcontext += struct.pack("<HHHH", USER_CS, 0, 0, USER_DS)                  # cs, gs, fs, ss
    _, _, code = struct.unpack_from("<iii", info)
    trapno = PAGE_FAULT_VECTOR if signal == signals.SIGSEGV and code else 0
    mcontext += struct.pack("<QQQQQ", 0, trapno, old_mask, _fault_address(info), fpstate)
    mcontext = mcontext.ljust(256, b"\0")
    uc_stack = struct.pack("<Qi4xQ", stack_sp, stack_flags | (1 if on_altstack else 0), stack_size)
    ucontext = struct.pack("<QQ", UC_FLAGS, 0) + uc_stack + mcontext + struct.pack("<Q", old_mask)
    copyout(proc, fpstate, cpu.fxsave())
    copyout(proc, frame, struct.pack("<Q", restorer) + ucontext + info)
    cpu.set("rsp", frame)
    cpu.set("rip", handler)
    cpu.set("rdi", signal)
    cpu.set("rsi", frame + 8 + UCONTEXT_SIZE)
    cpu.set("rdx", frame + 8)
    cpu.set("rax", 0)
    cpu.set("eflags", registers["eflags"] & ~(0x100 | 0x400 | 0x40000))      # TF, DF and AC cleared


def _fault_address(info: bytes) -> int:
    """cr2 in the frame: si_addr of a SIGSEGV's or SIGBUS's siginfo, else 0."""
    if struct.unpack_from("<i", info)[0] in (signals.SIGSEGV, signals.SIGBUS):
        return struct.unpack_from("<Q", info, 16)[0]
    return 0


def pop(kernel: Kernel, proc: Process) -> int:
    """rt_sigreturn: restore the registers, FPU state, mask and alternate stack from the frame at rsp - 8;
    the result is the restored rax, so the interrupted code goes on as if nothing happened."""
    cpu = kernel.machine.cpu
    frame = cpu.get("rsp") - 8
    ucontext = copyin(proc, frame + 8, UCONTEXT_SIZE)
    registers = dict(zip(SIGCONTEXT_REGISTERS, struct.unpack_from("<18Q", ucontext, MCONTEXT), strict=True))
    fpstate = struct.unpack_from("<Q", ucontext, MCONTEXT + 184)[0]
    mask = struct.unpack_from("<Q", ucontext, SIGMASK)[0]
    stack_sp, stack_flags, stack_size = struct.unpack_from("<Qi4xQ", ucontext, 16)
    state = copyin(proc, fpstate, FXSAVE_SIZE) if fpstate else None
    for name in SIGCONTEXT_REGISTERS:
        if name == "eflags":
            cpu.set(name, (cpu.get(name) & ~FIX_EFLAGS) | (registers[name] & FIX_EFLAGS))
        elif name != "rip":
            cpu.set(name, registers[name])
    if state is not None:
        cpu.fxrstor(state)
    signal_delivery.set_blocked(proc, mask)
    if not signal_delivery.on_altstack(proc, cpu.get("rsp")):
        proc.altstack = (stack_sp, stack_flags & ~1, stack_size)
    cpu.return_to(registers["rip"])
    kernel.machine.stop()       # the next slice starts from the restored registers
    return registers["rax"]
