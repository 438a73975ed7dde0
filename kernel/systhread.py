"""Syscalls that make and end tasks, and the futex: clone, clone3, fork, vfork, exit, exit_group, gettid,
tgkill, set_tid_address, set_robust_list, futex.

glibc and musl fork with clone(SIGCHLD | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID), vfork and
posix_spawn with clone(CLONE_VM | CLONE_VFORK) (or clone3), and make threads with clone(CLONE_VM |
CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS |
CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID) on a stack they mapped.  kernel/proc.py's `clone` makes the
task; this file reads the arguments as Linux does (kernel/fork.c) and does what the flags ask around it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vmgames.kernel import errno, futex, sigframe, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.proc import (
    CLONE_FILES,
    CLONE_FS,
    CLONE_PARENT,
    CLONE_SETTLS,
    CLONE_SIGHAND,
    CLONE_THREAD,
    CLONE_VFORK,
    CLONE_VM,
    ZOMBIE,
)
from vmgames.kernel.signal_delivery import SI_TKILL
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

CSIGNAL = 0xFF                     # the low byte: the signal the parent gets when the child exits
CLONE_PTRACE, CLONE_PIDFD, CLONE_SYSVSEM = 0x2000, 0x1000, 0x40000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_IO = 0x800000, 0x1000000, 0x8000_0000
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# What vmgames does: the rest (namespaces, pidfds) is EINVAL rather than silently not done.
SUPPORTED = (CSIGNAL | CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_PTRACE | CLONE_VFORK
             | CLONE_PARENT | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID
             | CLONE_CHILD_CLEARTID | CLONE_DETACHED | CLONE_UNTRACED | CLONE_CHILD_SETTID | CLONE_IO)
CLONE_ARGS_SIZE_VER0 = 64          # struct clone_args up to tls
CLONE_ARGS_SIZE_VER2 = 88          # and set_tid, set_tid_size, cgroup (Linux 5.7)
ROBUST_LIST_HEAD_SIZE = 24


def _check_flags(flags: int) -> None:
    """Linux's copy_process checks, in its order, then what vmgames does not model."""
    if flags & (CLONE_NEWNS | CLONE_FS) == CLONE_NEWNS | CLONE_FS:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if flags & ~SUPPORTED:
        raise SyscallError(errno.EINVAL)


def do_clone(kernel: Kernel, proc: Process, flags: int, stack: int, parent_tid: int, child_tid: int,
             tls: int) -> int:
    """kernel_clone: make the task, write its tid where asked, and put a vfork parent to sleep."""
    _check_flags(flags)
    child = kernel.clone(proc, flags, stack, tls)
    tid = struct.pack("<i", child.pid)
    if flags & CLONE_PARENT_SETTID:
        copyout(proc, parent_tid, tid)
    if flags & CLONE_CHILD_SETTID:
        copyout(child, child_tid, tid)     # into the child's memory: a copy-on-write fault there after a fork
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    if flags & CLONE_VFORK:
        child.vfork_parent = proc
        kernel.sleep(proc, ("vfork", child.pid))    # until the child execs or exits: end_vfork gives its pid
    return child.pid


def sys_clone(kernel: Kernel, proc: Process, flags: int, stack: int, parent_tid: int, child_tid: int,
              tls: int, *_: int) -> int:
    return do_clone(kernel, proc, flags, stack, parent_tid, child_tid, tls)


def sys_clone3(kernel: Kernel, proc: Process, uargs: int, size: int, *_: int) -> int:
    """clone3(struct clone_args *, size): the same, with the stack given as its lowest address and size."""
    if size < CLONE_ARGS_SIZE_VER0 or size > 4096:
        raise SyscallError(errno.EINVAL)
    raw = copyin(proc, uargs, size)
    if any(raw[CLONE_ARGS_SIZE_VER2:]):        # a newer struct's fields this kernel does not know
        raise SyscallError(errno.E2BIG)
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
     cgroup) = struct.unpack("<11Q", raw[:CLONE_ARGS_SIZE_VER2].ljust(CLONE_ARGS_SIZE_VER2, b"\0"))
    if set_tid or set_tid_size:                # choosing the child's pid: not modelled
        raise SyscallError(errno.EINVAL)
    if flags & CSIGNAL or exit_signal & ~CSIGNAL or exit_signal > signals.NSIG:
        raise SyscallError(errno.EINVAL)
    if (stack == 0) != (stack_size == 0):
        raise SyscallError(errno.EINVAL)
    return do_clone(kernel, proc, flags | exit_signal, stack + stack_size if stack else 0, parent_tid, child_tid,
                    tls)


def sys_fork(kernel: Kernel, proc: Process, *_: int) -> int:
    return kernel.fork(proc).pid


def sys_vfork(kernel: Kernel, proc: Process, *_: int) -> int:
    return do_clone(kernel, proc, CLONE_VM | CLONE_VFORK | signals.SIGCHLD, 0, 0, 0, 0)


def sys_exit(kernel: Kernel, proc: Process, code: int, *_: int) -> int:
    """exit(2): this thread ends; the process ends with its last one."""
    kernel.exit_thread(proc, code & 0xFF)
    return 0


def sys_exit_group(kernel: Kernel, proc: Process, code: int, *_: int) -> int:
    kernel.exit(proc, code & 0xFF)
    return 0


def sys_gettid(kernel: Kernel, proc: Process, *_: int) -> int:
    return proc.pid


def sys_set_tid_address(kernel: Kernel, proc: Process, tidptr: int, *_: int) -> int:
    proc.clear_child_tid = tidptr
    return proc.pid


def sys_set_robust_list(kernel: Kernel, proc: Process, head: int, length: int, *_: int) -> int:
    if length != ROBUST_LIST_HEAD_SIZE:
        raise SyscallError(errno.EINVAL)
    proc.robust_list = head
    return 0


def _signal_task(kernel: Kernel, proc: Process, target: Process | None, signal: int) -> int:
    if not 0 <= signal <= signals.NSIG:
        raise SyscallError(errno.EINVAL)
    if target is None or target.state == ZOMBIE:
        raise SyscallError(errno.ESRCH)
    if signal:
        kernel.send_signal(target, signal, f"sent by {proc.name}[{proc.tgid}]",
                           sigframe.siginfo(signal, SI_TKILL, pid=proc.tgid, uid=kernel.credentials[0]), thread=True)
    return 0


def sys_tgkill(kernel: Kernel, proc: Process, tgid: int, tid: int, signal: int, *_: int) -> int:
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    target = kernel.processes.get(tid)
    return _signal_task(kernel, proc, target if target is not None and target.tgid == tgid else None, signal)


def sys_tkill(kernel: Kernel, proc: Process, tid: int, signal: int, *_: int) -> int:
    if tid <= 0:
        raise SyscallError(errno.EINVAL)
    return _signal_task(kernel, proc, kernel.processes.get(tid), signal)


def sys_futex(kernel: Kernel, proc: Process, uaddr: int, op: int, value: int, timeout: int, uaddr2: int,
              value3: int, *_: int) -> int:
    """futex(2), the operations glibc and musl use; Linux's do_futex order of checks."""
    from vmgames.kernel.sysproc import CLOCK_MONOTONIC, CLOCK_REALTIME, deadline_of, read_timespec

    command = op & ~(futex.FUTEX_PRIVATE_FLAG | futex.FUTEX_CLOCK_REALTIME)
    private = bool(op & futex.FUTEX_PRIVATE_FLAG)
    if op & futex.FUTEX_CLOCK_REALTIME and command != futex.FUTEX_WAIT_BITSET:
        raise SyscallError(errno.ENOSYS)
    if command in (futex.FUTEX_WAIT, futex.FUTEX_WAIT_BITSET):
        deadline = None
        if timeout:
            ns = read_timespec(proc, timeout)
            if command == futex.FUTEX_WAIT:
                deadline = deadline_of(kernel, proc, CLOCK_MONOTONIC, ns, absolute=False)
            else:
                clock = CLOCK_REALTIME if op & futex.FUTEX_CLOCK_REALTIME else CLOCK_MONOTONIC
                deadline = deadline_of(kernel, proc, clock, ns, absolute=True)
        bitset = futex.FUTEX_BITSET_MATCH_ANY if command == futex.FUTEX_WAIT else value3
        return futex.wait(kernel, proc, uaddr, value, deadline, bitset, private)
    if command in (futex.FUTEX_WAKE, futex.FUTEX_WAKE_BITSET):
        bitset = futex.FUTEX_BITSET_MATCH_ANY if command == futex.FUTEX_WAKE else value3
        return futex.wake(kernel, proc, uaddr, _as_int(value), bitset, private)
    if command in (futex.FUTEX_REQUEUE, futex.FUTEX_CMP_REQUEUE):
        move = _as_int(timeout & 0xFFFF_FFFF)       # val2 travels in the timeout argument
        if _as_int(value) < 0 or move < 0:
            raise SyscallError(errno.EINVAL)
        expected = value3 if command == futex.FUTEX_CMP_REQUEUE else None
        return futex.requeue(kernel, proc, uaddr, _as_int(value), move, uaddr2, expected, private)
    raise SyscallError(errno.ENOSYS)


def _as_int(value: int) -> int:
    """A u32 argument Linux reads as an int."""
    return value - (1 << 32) if value & 0x8000_0000 else value
