"""Syscalls about signals: rt_sigaction, rt_sigprocmask, rt_sigreturn, rt_sigpending, rt_sigsuspend, pause,
sigaltstack.  Arguments are checked in Linux's order (kernel/signal.c); what a signal does once sent is
kernel/signal_delivery.py, the frame kernel/sigframe.py."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vmgames.kernel import errno, sigframe, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.signal_delivery import (
    SIG_IGN,
    SS_DISABLE,
    SS_ONSTACK,
    SigAction,
    bit,
    deliverable,
    ignored,
    on_altstack,
    set_blocked,
)
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

SIGSET_SIZE = 8
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_AUTODISARM = 1 << 31
MINSIGSTKSZ = 2048
KERNEL_ONLY = (signals.SIGKILL, signals.SIGSTOP)


def sys_rt_sigaction(kernel: Kernel, proc: Process, signal: int, act: int, oldact: int, size: int,
                     *_: int) -> int:
    if size != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    new = None
    if act:
        handler, flags, restorer, mask = struct.unpack("<QQQQ", copyin(proc, act, 32))
        new = SigAction(handler, flags, restorer, mask & ~(bit(signals.SIGKILL) | bit(signals.SIGSTOP)))
    if not 1 <= signal <= signals.NSIG or new is not None and signal in KERNEL_ONLY:
        raise SyscallError(errno.EINVAL)
    old = proc.sigactions.get(signal, SigAction())
    if new is not None:
        proc.sigactions[signal] = new
        if ignored(proc, signal):     # POSIX: setting an action of ignoring discards what is pending
            for thread in proc.kernel.threads(proc):
                thread.pending.pop(signal, None)
    if oldact:
        copyout(proc, oldact, struct.pack("<QQQQ", old.handler, old.flags, old.restorer, old.mask))
    return 0


def sys_rt_sigprocmask(kernel: Kernel, proc: Process, how: int, new: int, old: int, size: int, *_: int) -> int:
    if size != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    previous = proc.blocked
    if new:
        (mask,) = struct.unpack("<Q", copyin(proc, new, 8))
        if how == SIG_BLOCK:
            set_blocked(proc, previous | mask)
        elif how == SIG_UNBLOCK:
            set_blocked(proc, previous & ~mask)
        elif how == SIG_SETMASK:
            set_blocked(proc, mask)
        else:
            raise SyscallError(errno.EINVAL)
    if old:
        copyout(proc, old, struct.pack("<Q", previous))
    return 0


def sys_rt_sigpending(kernel: Kernel, proc: Process, set_address: int, size: int, *_: int) -> int:
    if size > SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    pending = sum(bit(signal) for signal in proc.pending) & proc.blocked
    copyout(proc, set_address, struct.pack("<Q", pending)[:size])
    return 0


def sys_rt_sigreturn(kernel: Kernel, proc: Process, *_: int) -> int:
    try:
        return sigframe.pop(kernel, proc)
    except SyscallError:
        # A frame that cannot be read back: Linux kills with SIGSEGV (the registers are lost).
        kernel.kill_process(proc, signals.SIGSEGV, "rt_sigreturn with no signal frame on the stack")
        return 0


def sys_pause(kernel: Kernel, proc: Process, *_: int) -> int:
    """Sleep until a signal is handled: always EINTR (the scheduler's delivery sets it)."""
    kernel.sleep(proc, ("pause", proc.pid))
    return 0


def sys_rt_sigsuspend(kernel: Kernel, proc: Process, mask_address: int, size: int, *_: int) -> int:
    """Sleep with the mask given until a signal is handled; the old mask returns with the handler's end."""
    if size != SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    (mask,) = struct.unpack("<Q", copyin(proc, mask_address, 8))
    proc.saved_mask = proc.blocked
    set_blocked(proc, mask)
    if deliverable(proc):
        raise SyscallError(errno.EINTR)      # already pending: the handler runs as the call returns
    kernel.sleep(proc, ("pause", proc.pid))
    return 0


def sys_sigaltstack(kernel: Kernel, proc: Process, new: int, old: int, *_: int) -> int:
    sp = kernel.machine.cpu.get("rsp")
    stack_sp, flags, size = proc.altstack
    was_on = on_altstack(proc, sp)
    if new:
        new_sp, new_flags, new_size = struct.unpack("<Qi4xQ", copyin(proc, new, 24))
        if was_on:
            raise SyscallError(errno.EPERM)
        mode = new_flags & ~SS_AUTODISARM
        if mode not in (0, SS_ONSTACK, SS_DISABLE):
            raise SyscallError(errno.EINVAL)
        if mode == SS_DISABLE:
            proc.altstack = (0, SS_DISABLE, 0)
        else:
            if new_size < MINSIGSTKSZ:
                raise SyscallError(errno.ENOMEM)
            proc.altstack = (new_sp, new_flags & SS_AUTODISARM, new_size)
    if old:
        shown = SS_ONSTACK if was_on else flags & SS_DISABLE
        copyout(proc, old, struct.pack("<Qi4xQ", stack_sp, shown | flags & SS_AUTODISARM, size))
    return 0


def reset_on_exec(proc: Process) -> None:
    """execve: caught signals go back to their default action (ignored ones stay ignored), in a table of the
    process's own; no alternate stack."""
    proc.sigactions = {signal: a for signal, a in proc.sigactions.items() if a.handler == SIG_IGN}
    proc.altstack = (0, SS_DISABLE, 0)
