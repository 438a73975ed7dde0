"""Syscalls about the process itself: exit, ids, time, identity, resource usage."""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from vmgames.kernel import errno, sigframe, syssignal
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.signal_delivery import SI_USER
from vmgames.kernel.uaccess import copyin, copyout
from vmgames.kernel.vm.map import USER_TOP

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_TAI = 11          # the realtime clock plus the TAI offset, which no one has set: 0
TIMER_ABSTIME = 1

# Virtual time runs at one instruction per nanosecond; the wall clock starts
# at the day of the 2006 zero-copy thread (2006-04-21 00:00:00 UTC).
NS_PER_INSTRUCTION = 1
EPOCH = 1145577600

UTSNAME = (b"Linux", b"vmgames", b"6.1.0-vmgames", b"#1 vmgames", b"x86_64", b"(none)")


def sys_getpid(kernel: Kernel, proc: Process, *_: int) -> int:
    return proc.tgid


def sys_getppid(kernel: Kernel, proc: Process, *_: int) -> int:
    return proc.ppid


def sys_sched_yield(kernel: Kernel, proc: Process, *_: int) -> int:
    kernel.machine.stop()
    return 0


def sys_uname(kernel: Kernel, proc: Process, buf: int, *_: int) -> int:
    copyout(proc, buf, b"".join(field.ljust(65, b"\0") for field in UTSNAME))
    return 0


def sys_arch_prctl(kernel: Kernel, proc: Process, code: int, addr: int, *_: int) -> int:
    cpu = kernel.machine.cpu
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= USER_TOP:      # TASK_SIZE_MAX
            raise SyscallError(errno.EPERM)
        cpu.set("fs_base" if code == ARCH_SET_FS else "gs_base", addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        value = cpu.get("fs_base" if code == ARCH_GET_FS else "gs_base")
        copyout(proc, addr, struct.pack("<Q", value))
        return 0
    raise SyscallError(errno.EINVAL)


def _now_ns(kernel: Kernel, proc: Process, clock: int) -> int:
    if clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        return proc.instructions * NS_PER_INSTRUCTION
    if kernel.machine.deterministic:
        ns = kernel.machine.determinism.tsc.now() * NS_PER_INSTRUCTION
    else:
        ns = time.monotonic_ns()
    if clock in (CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_TAI):
        return EPOCH * 1_000_000_000 + ns
    return ns


def sys_clock_gettime(kernel: Kernel, proc: Process, clock: int, tp: int, *_: int) -> int:
    if not 0 <= clock <= CLOCK_BOOTTIME and clock != CLOCK_TAI:
        raise SyscallError(errno.EINVAL)
    ns = _now_ns(kernel, proc, clock)
    copyout(proc, tp, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000))
    return 0


def read_timespec(proc: Process, address: int) -> int:
    """A struct timespec from user memory, in nanoseconds; EINVAL if it is not a valid one."""
    seconds, nanoseconds = struct.unpack("<qq", copyin(proc, address, 16))
    if seconds < 0 or not 0 <= nanoseconds < 1_000_000_000:
        raise SyscallError(errno.EINVAL)
    return seconds * 1_000_000_000 + nanoseconds


def deadline_of(kernel: Kernel, proc: Process, clock: int, ns: int, absolute: bool) -> int:
    """The virtual time at which `ns` (from now, or a time on `clock`) is reached."""
    if absolute:
        ns = max(0, ns - _now_ns(kernel, proc, clock))
    return kernel.machine.now + -(-ns // NS_PER_INSTRUCTION)


def sys_nanosleep(kernel: Kernel, proc: Process, request: int, remain: int, *_: int) -> int:
    return _sleep(kernel, proc, CLOCK_MONOTONIC, read_timespec(proc, request), absolute=False)


def sys_clock_nanosleep(kernel: Kernel, proc: Process, clock: int, flags: int, request: int, remain: int,
                        *_: int) -> int:
    """Sleeping lets virtual time pass for the sleeper; the others run meanwhile (or the CPU idles)."""
    if clock == CLOCK_THREAD_CPUTIME_ID:
        raise SyscallError(errno.EOPNOTSUPP)     # Linux's posix_cpu_nsleep for a thread's clock
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_PROCESS_CPUTIME_ID):
        raise SyscallError(errno.EINVAL)
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        raise SyscallError(errno.EOPNOTSUPP)    # a sleep until the process has run so long: not modelled
    return _sleep(kernel, proc, clock, read_timespec(proc, request), absolute=bool(flags & TIMER_ABSTIME))


def _sleep(kernel: Kernel, proc: Process, clock: int, ns: int, absolute: bool) -> int:
    deadline = deadline_of(kernel, proc, clock, ns, absolute)
    if deadline > kernel.machine.now:
        kernel.sleep(proc, ("sleep", proc.pid), deadline, 0)
    return 0


def sys_getrusage(kernel: Kernel, proc: Process, who: int, usage: int, *_: int) -> int:
    if who in (RUSAGE_SELF, RUSAGE_THREAD):
        pids = [proc.pid]
    elif who == RUSAGE_CHILDREN:
        pids = list(proc.reaped)
    else:
        raise SyscallError(errno.EINVAL)
    copyout(proc, usage, _rusage(kernel, pids))
    return 0


def _rusage(kernel: Kernel, pids: list[int]) -> bytes:
    """struct rusage for these processes: virtual time as user time, their non-fatal faults as ru_minflt."""
    ns = sum(kernel.instructions_of_pid(pid) for pid in pids) * NS_PER_INSTRUCTION
    minflt = sum(kernel.recorder.count("fault", pid=pid) - kernel.recorder.count("fault", "fatal", pid=pid)
                 for pid in pids)
    fields = [ns // 1_000_000_000, (ns % 1_000_000_000) // 1000, 0, 0,    # ru_utime, ru_stime
              kernel.max_rss_kib(pids), 0, 0, 0, minflt, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    return struct.pack("<18q", *fields)


INT_MIN = -(1 << 31)
WNOHANG, WUNTRACED, WCONTINUED = 1, 2, 8
__WNOTHREAD, __WALL, __WCLONE = 0x2000_0000, 0x4000_0000, 0x8000_0000
MAX_ARG_STRLEN = 128 << 10


def _string_array(proc: Process, address: int, most: int) -> list[str]:
    """A NULL-terminated array of string pointers (argv, envp); NULL means empty.  More than `most` is E2BIG.

    The pointers are read a page at a time, never past the page that holds the terminating NULL.
    """
    from vmgames.kernel.uaccess import copyin_u64s, copyinstr

    strings: list[str] = []
    if address == 0:
        return strings
    while True:
        at = address + 8 * len(strings)
        for pointer in copyin_u64s(proc, at, max(1, (4096 - (at & 0xFFF)) // 8)):
            if pointer == 0:
                return strings
            if len(strings) >= most:
                raise SyscallError(errno.E2BIG)
            try:
                strings.append(copyinstr(proc, pointer, MAX_ARG_STRLEN))
            except SyscallError as error:
                raise SyscallError(errno.E2BIG if error.errno == errno.ENAMETOOLONG else error.errno) from None


def sys_execve(kernel: Kernel, proc: Process, path: int, argv: int, envp: int, *_: int) -> int:
    from vmgames.kernel.exec import ARG_MAX, exec_image
    from vmgames.kernel.fs import PATH_MAX
    from vmgames.kernel.namei import lookup_executable
    from vmgames.kernel.uaccess import copyinstr

    name = copyinstr(proc, path, PATH_MAX)
    arguments = _string_array(proc, argv, ARG_MAX // 8)
    environment = _string_array(proc, envp, ARG_MAX // 8)
    # Linux 5.18 on: an empty argv becomes [""], so that argv[0] is never NULL.
    arguments = arguments or [""]
    exec_image(kernel, proc, lookup_executable(kernel, proc, name), arguments, environment)
    for thread in kernel.threads(proc):     # Linux's de_thread: the new image runs alone
        if thread is not proc:
            kernel.exit_thread(thread, 0)
    kernel.end_vfork(proc)
    syssignal.reset_on_exec(proc)
    proc.close_on_exec()
    # The new image starts with the next slice, from its fresh context.
    kernel.machine.stop()
    return 0


def sys_wait4(kernel: Kernel, proc: Process, pid: int, status: int, options: int, usage: int, *_: int) -> int:
    """Linux's kernel_wait4: pid > 0 that child, -1 or 0 any child (every process is in one process group),
    < -1 the children in process group -pid (only group 1 exists).  The child is reaped before its status
    and rusage are copied out: a bad pointer is EFAULT with the child gone, as on Linux."""
    from vmgames.kernel.proc import INIT_PID

    if options & 0xFFFF_FFFF & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE):
        raise SyscallError(errno.EINVAL)
    if pid == INT_MIN:
        raise SyscallError(errno.ESRCH)
    if pid < -1 and -pid != INIT_PID:
        raise SyscallError(errno.ECHILD)
    # A process's children are every one of its threads' (no __WNOTHREAD); threads are nobody's children.
    children = [p for p in kernel.processes.values()
                if p.ppid == proc.tgid and p.is_leader and (pid <= 0 or p.pid == pid)]
    if not children:
        raise SyscallError(errno.ECHILD)
    zombies = sorted((c for c in children if c.exit_order), key=lambda c: c.exit_order)
    if not zombies:
        if options & WNOHANG:
            return 0
        kernel.sleep(proc, ("wait", proc.tgid))
        return 0
    child = zombies[0]
    kernel.reap(proc, child)
    if status:
        copyout(proc, status, struct.pack("<i", child.wait_status))
    if usage:
        copyout(proc, usage, _rusage(kernel, [child.pid]))
    return child.pid


def sys_kill(kernel: Kernel, proc: Process, pid: int, signal: int, *_: int) -> int:
    """Linux's kill_something_info.  Every process is in one process group, numbered 1: pid 0 and -1 name
    it (-1 without process 1 and the caller), a pid below -1 names group -pid; signal 0 only checks."""
    from vmgames.kernel.proc import INIT_PID

    if not 0 <= signal <= 64:
        raise SyscallError(errno.EINVAL)
    processes = [p for p in kernel.processes.values() if p.is_leader]
    if pid > 0:
        targets = [kernel.processes[pid]] if pid in kernel.processes else []   # a thread's id names its process
    elif pid == 0 or pid == -INIT_PID:
        targets = processes
    elif pid == -1:
        targets = [p for p in processes if p.pid != INIT_PID and p.tgid != proc.tgid]
    else:
        targets = []        # INT_MIN, or a process group that does not exist
    if not targets:
        raise SyscallError(errno.ESRCH)
    for target in sorted(targets, key=lambda p: p.tgid == proc.tgid):    # the caller last: it may not come back
        if signal:
            kernel.send_signal(target, signal, f"sent by {proc.name}[{proc.pid}]",
                               sigframe.siginfo(signal, SI_USER, pid=proc.tgid, uid=kernel.credentials[0]))
    return 0
