"""The syscall table: Linux x86-64 numbers, names, argument types and handlers.

Linux takes the syscall number as the low 32 bits of rax, as an int, and
each argument as its prototype declares it: an `int` or `unsigned int`
argument (an fd, a dirfd, flags, a pid, a signal number) is only the low 32
bits of its register, sign-extended where it is signed.  The dispatcher
converts every argument once, from the types listed here, so that no handler
sees the junk a caller may leave in the upper half (glibc passes AT_FDCWD
as 0x00000000ffffff9c).

A number the kernel does not implement returns -ENOSYS and is counted
under its Linux name (kernel/linux_syscalls.py); it never stops the process.
A handler raises SyscallError to return -errno.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import call
from typing import TYPE_CHECKING, NamedTuple

from vmgames.kernel import errno, sysfile, sysinfo, sysio, sysmem, sysproc, syssignal, sysstat, systhread, syszerocopy
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.linux_syscalls import LINUX_SYSCALLS
from vmgames.kernel.proc import SLEEPING
from vmgames.kernel.vm.page import OutOfMemory

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

Handler = Callable[..., int]


def _int(value: int) -> int:
    """C's int: the low 32 bits, sign-extended."""
    return ((value & 0xFFFF_FFFF) ^ 0x8000_0000) - 0x8000_0000


def _uint(value: int) -> int:
    """C's unsigned int: the low 32 bits."""
    return value & 0xFFFF_FFFF


def _ulong(value: int) -> int:
    """unsigned long, size_t, a pointer: the whole register."""
    return value


def _long(value: int) -> int:
    """long, off_t, loff_t: the whole register, signed."""
    return (value ^ (1 << 63)) - (1 << 63)


INT, UINT, ULONG, LONG = _int, _uint, _ulong, _long


class Syscall(NamedTuple):
    name: str
    handler: Handler
    args: tuple[Callable[[int], int], ...]   # one conversion per argument of Linux's prototype


# Argument types from the SYSCALL_DEFINE of each call in Linux (fs/read_write.c, mm/mmap.c, ...).
TABLE: dict[int, Syscall] = {
    0: Syscall("read", sysfile.sys_read, (UINT, ULONG, ULONG)),
    1: Syscall("write", sysfile.sys_write, (UINT, ULONG, ULONG)),
    2: Syscall("open", sysfile.sys_open, (ULONG, INT, UINT)),
    3: Syscall("close", sysfile.sys_close, (UINT,)),
    4: Syscall("stat", sysstat.sys_stat, (ULONG, ULONG)),
    5: Syscall("fstat", sysstat.sys_fstat, (UINT, ULONG)),
    6: Syscall("lstat", sysstat.sys_lstat, (ULONG, ULONG)),
    7: Syscall("poll", sysio.sys_poll, (ULONG, UINT, INT)),
    8: Syscall("lseek", sysio.sys_lseek, (UINT, LONG, UINT)),
    # x86's sys_mmap takes unsigned longs; the fd reaches fget() as an unsigned int.
    9: Syscall("mmap", sysmem.sys_mmap, (ULONG, ULONG, ULONG, ULONG, UINT, ULONG)),
    10: Syscall("mprotect", sysmem.sys_mprotect, (ULONG, ULONG, ULONG)),
    11: Syscall("munmap", sysmem.sys_munmap, (ULONG, ULONG)),
    12: Syscall("brk", sysmem.sys_brk, (ULONG,)),
    13: Syscall("rt_sigaction", syssignal.sys_rt_sigaction, (INT, ULONG, ULONG, ULONG)),
    14: Syscall("rt_sigprocmask", syssignal.sys_rt_sigprocmask, (INT, ULONG, ULONG, ULONG)),
    15: Syscall("rt_sigreturn", syssignal.sys_rt_sigreturn, ()),
    16: Syscall("ioctl", syszerocopy.sys_ioctl, (UINT, UINT, ULONG)),
    17: Syscall("pread64", sysio.sys_pread64, (UINT, ULONG, ULONG, LONG)),
    # readv's fd and count are unsigned longs that fdget() and import_iovec() take as unsigned ints.
    19: Syscall("readv", sysio.sys_readv, (UINT, ULONG, UINT)),
    # writev's fd and count are unsigned longs that fdget() and import_iovec() take as unsigned ints.
    20: Syscall("writev", sysfile.sys_writev, (UINT, ULONG, UINT)),
    21: Syscall("access", sysstat.sys_access, (ULONG, INT)),
    22: Syscall("pipe", sysfile.sys_pipe, (ULONG,)),
    24: Syscall("sched_yield", sysproc.sys_sched_yield, ()),
    25: Syscall("mremap", sysmem.sys_mremap, (ULONG, ULONG, ULONG, ULONG, ULONG)),
    26: Syscall("msync", sysmem.sys_msync, (ULONG, ULONG, INT)),
    28: Syscall("madvise", sysmem.sys_madvise, (ULONG, ULONG, INT)),
    32: Syscall("dup", sysfile.sys_dup, (UINT,)),
    34: Syscall("pause", syssignal.sys_pause, ()),
    35: Syscall("nanosleep", sysproc.sys_nanosleep, (ULONG, ULONG)),
    33: Syscall("dup2", sysfile.sys_dup2, (UINT, UINT)),
    39: Syscall("getpid", sysproc.sys_getpid, ()),
    56: Syscall("clone", systhread.sys_clone, (ULONG, ULONG, ULONG, ULONG, ULONG)),
    57: Syscall("fork", systhread.sys_fork, ()),
    58: Syscall("vfork", systhread.sys_vfork, ()),
    59: Syscall("execve", sysproc.sys_execve, (ULONG, ULONG, ULONG)),
    60: Syscall("exit", systhread.sys_exit, (INT,)),
    61: Syscall("wait4", sysproc.sys_wait4, (INT, ULONG, INT, ULONG)),
    62: Syscall("kill", sysproc.sys_kill, (INT, INT)),
    63: Syscall("uname", sysproc.sys_uname, (ULONG,)),
    72: Syscall("fcntl", sysio.sys_fcntl, (UINT, UINT, ULONG)),
    79: Syscall("getcwd", sysstat.sys_getcwd, (ULONG, ULONG)),
    80: Syscall("chdir", sysstat.sys_chdir, (ULONG,)),
    81: Syscall("fchdir", sysstat.sys_fchdir, (UINT,)),
    89: Syscall("readlink", sysstat.sys_readlink, (ULONG, ULONG, INT)),
    95: Syscall("umask", sysinfo.sys_umask, (INT,)),
    96: Syscall("gettimeofday", sysinfo.sys_gettimeofday, (ULONG, ULONG)),
    97: Syscall("getrlimit", sysinfo.sys_getrlimit, (UINT, ULONG)),
    98: Syscall("getrusage", sysproc.sys_getrusage, (INT, ULONG)),
    99: Syscall("sysinfo", sysinfo.sys_sysinfo, (ULONG,)),
    102: Syscall("getuid", sysinfo.sys_getuid, ()),
    104: Syscall("getgid", sysinfo.sys_getgid, ()),
    107: Syscall("geteuid", sysinfo.sys_getuid, ()),
    108: Syscall("getegid", sysinfo.sys_getgid, ()),
    110: Syscall("getppid", sysproc.sys_getppid, ()),
    115: Syscall("getgroups", sysinfo.sys_getgroups, (INT, ULONG)),
    118: Syscall("getresuid", sysinfo.sys_getresuid, (ULONG, ULONG, ULONG)),
    120: Syscall("getresgid", sysinfo.sys_getresgid, (ULONG, ULONG, ULONG)),
    127: Syscall("rt_sigpending", syssignal.sys_rt_sigpending, (ULONG, ULONG)),
    130: Syscall("rt_sigsuspend", syssignal.sys_rt_sigsuspend, (ULONG, ULONG)),
    131: Syscall("sigaltstack", syssignal.sys_sigaltstack, (ULONG, ULONG)),
    158: Syscall("arch_prctl", sysproc.sys_arch_prctl, (INT, ULONG)),
    160: Syscall("setrlimit", sysinfo.sys_setrlimit, (UINT, ULONG)),
    186: Syscall("gettid", systhread.sys_gettid, ()),
    200: Syscall("tkill", systhread.sys_tkill, (INT, INT)),
    201: Syscall("time", sysinfo.sys_time, (ULONG,)),
    202: Syscall("futex", systhread.sys_futex, (ULONG, INT, UINT, ULONG, ULONG, UINT)),
    204: Syscall("sched_getaffinity", sysinfo.sys_sched_getaffinity, (INT, UINT, ULONG)),
    217: Syscall("getdents64", sysstat.sys_getdents64, (UINT, ULONG, UINT)),
    218: Syscall("set_tid_address", systhread.sys_set_tid_address, (ULONG,)),
    228: Syscall("clock_gettime", sysproc.sys_clock_gettime, (INT, ULONG)),
    230: Syscall("clock_nanosleep", sysproc.sys_clock_nanosleep, (INT, INT, ULONG, ULONG)),
    231: Syscall("exit_group", systhread.sys_exit_group, (INT,)),
    234: Syscall("tgkill", systhread.sys_tgkill, (INT, INT, INT)),
    257: Syscall("openat", sysfile.sys_openat, (INT, ULONG, INT, UINT)),
    262: Syscall("newfstatat", sysstat.sys_newfstatat, (INT, ULONG, ULONG, INT)),
    267: Syscall("readlinkat", sysstat.sys_readlinkat, (INT, ULONG, ULONG, INT)),
    269: Syscall("faccessat", sysstat.sys_faccessat, (INT, ULONG, INT)),
    271: Syscall("ppoll", sysio.sys_ppoll, (ULONG, UINT, ULONG, ULONG, ULONG)),
    273: Syscall("set_robust_list", systhread.sys_set_robust_list, (ULONG, ULONG)),
    278: Syscall("vmsplice", syszerocopy.sys_vmsplice, (INT, ULONG, ULONG, UINT)),
    292: Syscall("dup3", sysfile.sys_dup3, (UINT, UINT, INT)),
    293: Syscall("pipe2", sysfile.sys_pipe2, (ULONG, INT)),
    302: Syscall("prlimit64", sysinfo.sys_prlimit64, (INT, UINT, ULONG, ULONG)),
    318: Syscall("getrandom", sysinfo.sys_getrandom, (ULONG, ULONG, UINT)),
    332: Syscall("statx", sysstat.sys_statx, (INT, ULONG, UINT, UINT, ULONG)),
    435: Syscall("clone3", systhread.sys_clone3, (ULONG, ULONG)),
    439: Syscall("faccessat2", sysstat.sys_faccessat2, (INT, ULONG, INT, INT)),
    1000: Syscall("zc_reap", syszerocopy.sys_zc_reap, (UINT, ULONG, UINT, UINT)),  # vmgames' own (syszerocopy)
}

NAMES: dict[str, int] = {**{name: n for n, name in LINUX_SYSCALLS.items()}, **{s.name: n for n, s in TABLE.items()}}


def syscall_name(rax: int) -> str:
    """Linux's name for the syscall number in `rax` (vmgames' own for its own); strace's syscall_0x... for none."""
    number = rax & 0xFFFF_FFFF
    entry = TABLE.get(number)
    if entry is not None:
        return entry.name
    return LINUX_SYSCALLS.get(number) or f"syscall_{number:#x}"


def canonical_name(text: str) -> str | None:
    """The syscall a user names: a Linux name, vmgames' own, strace's syscall_0x1f4, or a number; None if none."""
    if text in NAMES:
        return text
    if re.fullmatch(r"syscall_0x[0-9a-f]+", text):
        number = int(text.removeprefix("syscall_"), 16)
    elif re.fullmatch(r"[0-9]+", text):
        number = int(text)
    else:
        return None
    return syscall_name(number) if number < 1 << 32 else None


def implemented(name: str) -> bool:
    return NAMES.get(name) in TABLE


def describe(name: str) -> str:
    """A syscall's name as shown to people: Linux's, marked when vmgames does not implement it."""
    return name if implemented(name) else f"{name} (not implemented)"


def unknown_name_message(name: str) -> str:
    """What to say of a syscall name that neither Linux's x86-64 table nor vmgames has."""
    return (f"unknown syscall {name!r}: not in Linux's x86-64 table (vmgames implements "
            f"{', '.join(sorted(s.name for s in TABLE.values()))})")


def record_woken(kernel: Kernel, rax: int, registers: tuple[int, ...], result: int) -> None:
    """A call that slept returns what its waker decided (a futex wake, a timeout, vfork's end) without being made
    again: its return is recorded as dispatch records one, so that a trace sees every call end."""
    entry = TABLE[rax & 0xFFFF_FFFF]
    args = tuple(map(call, entry.args, registers)) if entry.args else ()
    kernel.recorder.event("syscall", entry.name, args=args, result=result, blocked=False)


def dispatch(kernel: Kernel, proc: Process, rax: int, registers: tuple[int, ...]) -> int:
    """Run one syscall; returns the value for rax (a result or -errno)."""
    number = rax & 0xFFFF_FFFF
    entry = TABLE.get(number)
    if entry is None:
        kernel.recorder.event("syscall", syscall_name(number), number=number, args=registers, result=-errno.ENOSYS,
                              blocked=False)
        return -errno.ENOSYS
    # One conversion per declared argument (map stops at the shorter): the cheapest way Python has.
    args = tuple(map(call, entry.args, registers)) if entry.args else ()
    try:
        result = entry.handler(kernel, proc, *args)
    except SyscallError as error:
        result = -error.errno
    except OutOfMemory:
        result = -errno.ENOMEM
    # A call that went to sleep is made again when woken: each attempt is a kernel entry.
    blocked = proc.state == SLEEPING
    kernel.recorder.event("syscall", entry.name, args=args, result=None if blocked else result, blocked=blocked)
    return result
