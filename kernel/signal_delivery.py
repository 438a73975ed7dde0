"""Signals: what each does to the process it is sent to (Linux's kernel/signal.c, FreeBSD's kern_sig.c).

A signal sent to a process is ignored, ends the process (its default action,
or a fault the process cannot take), or is left pending on one of its
threads that does not block it, until that thread next returns to user mode:
then the scheduler calls `deliver`, which starts the handler on a frame
(kernel/sigframe.py).  A thread asleep in a syscall is woken by a signal it
will handle: the call fails with EINTR, or is made again after the handler
if the handler was installed with SA_RESTART and the call is one Linux
restarts.  Actions are shared by the threads of a process (CLONE_SIGHAND);
the mask of blocked signals, the pending set and the alternate stack are each
thread's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmgames.emulator.cpu import SYSCALL_LENGTH
from vmgames.kernel import errno, sigframe, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.proc import RUNNABLE, SLEEPING, ZOMBIE

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_RESTORER = 0x1, 0x2, 0x4, 0x04000000
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000
SS_ONSTACK, SS_DISABLE = 1, 2
SI_USER, SI_TKILL, SI_KERNEL = 0, -6, 0x80
SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR = 1, 2, 2
UNBLOCKABLE = (1 << (signals.SIGKILL - 1)) | (1 << (signals.SIGSTOP - 1))
# Job control is not modelled: stopping signals are ignored rather than stopping anyone.
IGNORED = signals.IGNORED_BY_DEFAULT | {signals.SIGSTOP, signals.SIGTSTP, signals.SIGTTIN, signals.SIGTTOU}
# Calls a handler never restarts, SA_RESTART or not (signal(7)): they fail with EINTR.
NEVER_RESTARTED = frozenset({"pause", "rt_sigsuspend", "nanosleep", "clock_nanosleep", "poll", "ppoll",
                             "select", "pselect6"})


@dataclass(frozen=True)
class SigAction:
    """struct sigaction as the kernel keeps it."""

    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


def bit(signal: int) -> int:
    return 1 << (signal - 1)


def action(proc: Process, signal: int) -> SigAction:
    return proc.sigactions.get(signal, DEFAULT)


DEFAULT = SigAction()


def ignored(proc: Process, signal: int) -> bool:
    """Sending it would do nothing (SIG_IGN, or a default action of nothing), unless it is blocked."""
    handler = action(proc, signal).handler
    return handler == SIG_IGN or handler == SIG_DFL and signal in IGNORED


def set_blocked(proc: Process, mask: int) -> None:
    """The thread's new signal mask (SIGKILL and SIGSTOP can never be blocked)."""
    proc.blocked = mask & ~UNBLOCKABLE & ((1 << signals.NSIG) - 1)


def on_altstack(proc: Process, sp: int) -> bool:
    stack_sp, flags, size = proc.altstack
    return not flags & SS_DISABLE and stack_sp < sp <= stack_sp + size


def deliverable(proc: Process) -> bool:
    return any(not proc.blocked & bit(signal) for signal in proc.pending)


def send(kernel: Kernel, target: Process, signal: int, info: bytes, reason: str, thread: bool = False) -> None:
    """Send `signal` to `target`'s process (to the thread `target` itself if `thread`, as tgkill does)."""
    if ignored(target, signal) or target.state == ZOMBIE:
        return
    kernel.recorder.event("proc", "signal", target=target.pid, signal=signal, reason=reason)
    if not thread:
        threads = kernel.threads(target)
        target = next((t for t in threads if not t.blocked & bit(signal)), threads[0] if threads else target)
    if action(target, signal).handler == SIG_DFL and not target.blocked & bit(signal):
        kill(kernel, target, signal, reason)
        return
    target.pending.setdefault(signal, info)
    if target.state == SLEEPING and not target.blocked & bit(signal) and not _killable_only(target.channel):
        target.state, target.channel, target.interrupted = RUNNABLE, None, True
        kernel.enqueue(target)


def _killable_only(channel: object) -> bool:
    """A vfork parent waits for its child killably, as Linux's wait_for_vfork_done: only a fatal signal ends
    that wait; a handled one waits until the child has exec'd or exited."""
    return isinstance(channel, tuple) and channel[0] == "vfork"


def kill(kernel: Kernel, proc: Process, signal: int, reason: str) -> None:
    """The default action: the whole process ends, killed by `signal`."""
    kernel.exit(proc, 0, signal, f"{proc.name}[{proc.tgid}]: killed by {signals.name(signal)}: {reason}")


def fault(kernel: Kernel, proc: Process, signal: int, info: bytes, reason: str) -> None:
    """A fault the running thread took (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP): its handler runs now, on
    the faulting instruction; blocked or ignored, the process dies of it, as Linux's force_sig_fault does."""
    kernel.recorder.event("proc", "signal", target=proc.pid, signal=signal, reason=reason)
    if action(proc, signal).handler in (SIG_DFL, SIG_IGN) or proc.blocked & bit(signal):
        kill(kernel, proc, signal, reason)
        return
    proc.pending[signal] = info
    deliver(kernel, proc, fault_signal=signal)


def deliver(kernel: Kernel, proc: Process, fault_signal: int = 0) -> None:
    """The running (loaded) thread returns to user mode with signals pending: finish an interrupted syscall,
    then start a handler for each deliverable signal, or take its default action.  `fault_signal` is the
    signal of a fault the thread just took: its handler's start is counted as a fault handled (a write
    barrier's), the others' as signals handled."""
    from vmgames.kernel.syscall import syscall_name

    cpu = kernel.machine.cpu
    if proc.restart_result is not None:
        # Woken with its result (a vfork's end, a futex wake) but not yet back in user mode: the call is over,
        # and the handler returns to just after it, as Linux finishes a syscall before delivering.
        cpu.rip = cpu.rip + SYSCALL_LENGTH
        cpu.set_result(proc.restart_result)
        proc.restart_result = None
    if proc.interrupted:
        proc.interrupted = False
        # It slept in a syscall, rip on the syscall instruction and rax its number: fail it with EINTR, or
        # leave it to be made again once the handler returns.
        first = min((s for s in proc.pending if not proc.blocked & bit(s)), default=None)
        restart = (first is not None and action(proc, first).flags & SA_RESTART
                   and syscall_name(cpu.rax) not in NEVER_RESTARTED)
        if not restart:
            cpu.rip = cpu.rip + SYSCALL_LENGTH
            cpu.set_result(-errno.EINTR)
    while proc.state == RUNNABLE:
        signal = min((s for s in proc.pending if not proc.blocked & bit(s)), default=None)
        if signal is None:
            break
        info = proc.pending.pop(signal)
        handler = action(proc, signal)
        if handler.handler == SIG_IGN or handler.handler == SIG_DFL and signal in IGNORED:
            continue
        if handler.handler == SIG_DFL:
            kill(kernel, proc, signal, "sent earlier, delivered once unblocked")
            return
        old_mask = proc.saved_mask if proc.saved_mask is not None else proc.blocked
        proc.saved_mask = None
        use_altstack = bool(handler.flags & SA_ONSTACK) and not proc.altstack[1] & SS_DISABLE \
            and not on_altstack(proc, cpu.get("rsp"))
        try:
            if not handler.flags & SA_RESTORER:
                raise SyscallError(errno.EFAULT)     # x86-64 has no vdso restorer to fall back on
            sigframe.push(kernel, proc, signal, info, handler.handler, handler.restorer, old_mask, use_altstack)
        except SyscallError:
            kill(kernel, proc, signals.SIGSEGV, f"no room for the {signals.name(signal)} handler's frame")
            return
        kernel.recorder.event("proc", "fault-handler" if signal == fault_signal else "handler", signal=signal)
        set_blocked(proc, proc.blocked | handler.mask | (0 if handler.flags & SA_NODEFER else bit(signal)))
        if handler.flags & SA_RESETHAND:
            proc.sigactions[signal] = DEFAULT
