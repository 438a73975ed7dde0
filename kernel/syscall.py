"""The syscall table: Linux x86-64 numbers, names and handlers.

An unknown number returns -ENOSYS and is counted under its number; it never
stops the process.  A handler raises SyscallError to return -errno.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel import errno, sysfile, sysmem, sysproc, syszerocopy
from kernel.errno import SyscallError
from kernel.proc import SLEEPING
from kernel.vm.page import OutOfMemory

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.proc import Process

Handler = Callable[..., int]

TABLE: dict[int, tuple[str, Handler]] = {
    0: ("read", sysfile.sys_read),
    1: ("write", sysfile.sys_write),
    2: ("open", sysfile.sys_open),
    3: ("close", sysfile.sys_close),
    9: ("mmap", sysmem.sys_mmap),
    10: ("mprotect", sysmem.sys_mprotect),
    11: ("munmap", sysmem.sys_munmap),
    12: ("brk", sysmem.sys_brk),
    16: ("ioctl", syszerocopy.sys_ioctl),
    20: ("writev", sysfile.sys_writev),
    22: ("pipe", sysfile.sys_pipe),
    24: ("sched_yield", sysproc.sys_sched_yield),
    32: ("dup", sysfile.sys_dup),
    33: ("dup2", sysfile.sys_dup2),
    39: ("getpid", sysproc.sys_getpid),
    57: ("fork", sysproc.sys_fork),
    58: ("vfork", sysproc.sys_fork),
    59: ("execve", sysproc.sys_execve),
    60: ("exit", sysproc.sys_exit),
    61: ("wait4", sysproc.sys_wait4),
    62: ("kill", sysproc.sys_kill),
    63: ("uname", sysproc.sys_uname),
    98: ("getrusage", sysproc.sys_getrusage),
    110: ("getppid", sysproc.sys_getppid),
    158: ("arch_prctl", sysproc.sys_arch_prctl),
    186: ("gettid", sysproc.sys_getpid),
    228: ("clock_gettime", sysproc.sys_clock_gettime),
    231: ("exit_group", sysproc.sys_exit),
    257: ("openat", sysfile.sys_openat),
    292: ("dup3", sysfile.sys_dup3),
    278: ("vmsplice", syszerocopy.sys_vmsplice),
    293: ("pipe2", sysfile.sys_pipe2),
    1000: ("zc_reap", syszerocopy.sys_zc_reap),     # vmgames' own (kernel/syszerocopy.py)
}


def dispatch(kernel: Kernel, proc: Process, number: int, args: tuple[int, ...]) -> int:
    """Run one syscall; returns the value for rax (a result or -errno)."""
    entry = TABLE.get(number)
    if entry is None:
        kernel.recorder.event("syscall", f"unknown({number})", number=number, args=args, result=-errno.ENOSYS,
                              blocked=False)
        return -errno.ENOSYS
    name, handler = entry
    try:
        result = handler(kernel, proc, *args)
    except SyscallError as error:
        result = -error.errno
    except OutOfMemory:
        result = -errno.ENOMEM
    # A call that went to sleep is made again when woken: each attempt is a kernel entry.
    blocked = proc.state == SLEEPING
    kernel.recorder.event("syscall", name, args=args, result=None if blocked else result, blocked=blocked)
    return result
