"""Syscalls about who a process is and what it may use: identity, umask, resource limits, random bytes,
the machine (sysinfo, CPU affinity), and the wall clock of time and gettimeofday.

Nothing here reads the host: the identity is the run's (`vmgames run --uid N --gid N`, root by default),
the limits are Linux's defaults for a fresh process, the random bytes come from the run's --seed, and the
clock is virtual time (kernel/sysproc.py's, the one clock_gettime reads).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.sysproc import CLOCK_BOOTTIME, CLOCK_REALTIME, _now_ns
from vmgames.kernel.uaccess import MAX_RW_COUNT, access_ok, copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

RLIM_INFINITY = (1 << 64) - 1
(RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS, RLIMIT_NPROC, RLIMIT_NOFILE,
 RLIMIT_MEMLOCK, RLIMIT_AS, RLIMIT_LOCKS, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_RTPRIO,
 RLIMIT_RTTIME, RLIM_NLIMITS) = range(17)
NR_OPEN = 1 << 20                # sysctl fs.nr_open: no RLIMIT_NOFILE above it, even for root
# Linux's INIT_RLIMITS (include/asm-generic/resource.h): what the first process has, and so every process
# that never called setrlimit.  RLIMIT_NPROC and RLIMIT_SIGPENDING are set at boot from the RAM (`_threads`).
DEFAULT_RLIMITS = {
    RLIMIT_STACK: (8 << 20, RLIM_INFINITY),          # _STK_LIM
    RLIMIT_CORE: (0, RLIM_INFINITY),
    RLIMIT_NOFILE: (1024, 4096),                     # INR_OPEN_CUR, INR_OPEN_MAX
    RLIMIT_MEMLOCK: (8 << 20, 8 << 20),              # MLOCK_LIMIT since Linux 5.16
    RLIMIT_MSGQUEUE: (819200, 819200),               # MQ_BYTES_MAX
    RLIMIT_NICE: (0, 0),
    RLIMIT_RTPRIO: (0, 0),
}
THREAD_SIZE = 16 << 10           # x86-64's kernel stacks: Linux allows threads using at most 1/8 of RAM for them
MIN_THREADS, MAX_THREADS = 20, 0x3FFF_FFFF

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
NR_CPU_IDS = 1                   # the machine has one CPU
CPUMASK_SIZE = 8                 # bytes of the kernel's cpumask for one CPU: one unsigned long


# Identity: every process runs as the run's uid and gid; there are no supplementary groups.

def sys_getuid(kernel: Kernel, proc: Process, *_: int) -> int:
    return kernel.credentials[0]


def sys_getgid(kernel: Kernel, proc: Process, *_: int) -> int:
    return kernel.credentials[1]


def sys_getresuid(kernel: Kernel, proc: Process, ruid: int, euid: int, suid: int, *_: int) -> int:
    for address in (ruid, euid, suid):
        copyout(proc, address, struct.pack("<I", kernel.credentials[0]))
    return 0


def sys_getresgid(kernel: Kernel, proc: Process, rgid: int, egid: int, sgid: int, *_: int) -> int:
    for address in (rgid, egid, sgid):
        copyout(proc, address, struct.pack("<I", kernel.credentials[1]))
    return 0


def sys_getgroups(kernel: Kernel, proc: Process, size: int, groups: int, *_: int) -> int:
    if size < 0:
        raise SyscallError(errno.EINVAL)
    return 0


def sys_umask(kernel: Kernel, proc: Process, mask: int, *_: int) -> int:
    old, proc.umask = proc.umask, mask & 0o777
    return old


# Resource limits.

def _threads(kernel: Kernel) -> int:
    """Linux's set_max_threads: the threads whose kernel stacks fit in an eighth of RAM."""
    frames = kernel.allocator.total
    return min(max(frames * PAGE_SIZE // (THREAD_SIZE * 8), MIN_THREADS), MAX_THREADS)


def rlimit(proc: Process, resource: int) -> tuple[int, int]:
    """(soft, hard) of `resource` for `proc`: what it set, or Linux's default."""
    limit = proc.rlimits.get(resource)
    if limit is not None:
        return limit
    if resource in (RLIMIT_NPROC, RLIMIT_SIGPENDING):
        threads = _threads(proc.kernel) // 2
        return threads, threads
    return DEFAULT_RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))


def _prlimit(kernel: Kernel, proc: Process, resource: int, new: tuple[int, int] | None) -> tuple[int, int]:
    """Linux's do_prlimit: the old limit; the new one set if it is valid and allowed."""
    if resource >= RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)
    old = rlimit(proc, resource)
    if new is not None:
        soft, hard = new
        if soft > hard:
            raise SyscallError(errno.EINVAL)
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise SyscallError(errno.EPERM)
        if hard > old[1] and kernel.credentials[0] != 0:     # raising a hard limit takes CAP_SYS_RESOURCE
            raise SyscallError(errno.EPERM)
        proc.rlimits[resource] = new
    return old


def sys_getrlimit(kernel: Kernel, proc: Process, resource: int, limit: int, *_: int) -> int:
    copyout(proc, limit, struct.pack("<QQ", *_prlimit(kernel, proc, resource, None)))
    return 0


def sys_setrlimit(kernel: Kernel, proc: Process, resource: int, limit: int, *_: int) -> int:
    _prlimit(kernel, proc, resource, struct.unpack("<QQ", copyin(proc, limit, 16)))
    return 0


def sys_prlimit64(kernel: Kernel, proc: Process, pid: int, resource: int, new: int, old: int, *_: int) -> int:
    """Any process's limits (pid 0: the caller's): the new one read first (EFAULT), then ESRCH, EINVAL, EPERM;
    the old one written last, after the new one is set."""
    limit = struct.unpack("<QQ", copyin(proc, new, 16)) if new else None
    target = proc if pid == 0 else kernel.processes.get(pid)
    if target is None:
        raise SyscallError(errno.ESRCH)
    previous = _prlimit(kernel, target, resource, limit)
    if old:
        copyout(proc, old, struct.pack("<QQ", *previous))
    return 0


# Random bytes.

def sys_getrandom(kernel: Kernel, proc: Process, buf: int, count: int, flags: int, *_: int) -> int:
    """Bytes from the run's seed (a stream of its own, so rdrand's values do not change); the pool is
    always ready, so GRND_NONBLOCK and GRND_RANDOM change nothing.  A fault after some bytes returns
    their count, as Linux's get_random_bytes_user."""
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise SyscallError(errno.EINVAL)
    if flags & (GRND_INSECURE | GRND_RANDOM) == GRND_INSECURE | GRND_RANDOM:
        raise SyscallError(errno.EINVAL)
    count = min(count, MAX_RW_COUNT)
    if not access_ok(buf, count):
        raise SyscallError(errno.EFAULT)
    done = 0
    while done < count:
        length = min(count - done, PAGE_SIZE - ((buf + done) & (PAGE_SIZE - 1)))
        words = (length + 7) // 8
        data = struct.pack(f"<{words}Q", *(kernel.entropy.next() for _ in range(words)))[:length]
        try:
            copyout(proc, buf + done, data)
        except SyscallError:
            if done:
                return done
            raise
        done += length
    return done


# The machine.

def sys_sysinfo(kernel: Kernel, proc: Process, info: int, *_: int) -> int:
    """struct sysinfo: uptime in virtual time (rounded up, as Linux), the machine's RAM, the frames free."""
    ns = _now_ns(kernel, proc, CLOCK_BOOTTIME)
    uptime = ns // 1_000_000_000 + (1 if ns % 1_000_000_000 else 0)
    allocator = kernel.allocator
    copyout(proc, info, struct.pack("<q3Q6QHH4xQQI4x", uptime, 0, 0, 0, allocator.total * PAGE_SIZE,
                                    allocator.free_count * PAGE_SIZE, 0, 0, 0, 0, len(kernel.processes), 0,
                                    0, 0, 1))
    return 0


def sys_sched_getaffinity(kernel: Kernel, proc: Process, pid: int, size: int, mask: int, *_: int) -> int:
    """The one CPU: mask 1, in the kernel's cpumask of one unsigned long; EINVAL for a size that is not a
    multiple of it (or too small for the CPU), ESRCH for no such process."""
    if size * 8 < NR_CPU_IDS or size % 8:
        raise SyscallError(errno.EINVAL)
    if pid != 0 and pid not in kernel.processes:
        raise SyscallError(errno.ESRCH)
    length = min(size, CPUMASK_SIZE)
    copyout(proc, mask, (1).to_bytes(CPUMASK_SIZE, "little")[:length])
    return length


# The wall clock: the same virtual clock as clock_gettime(CLOCK_REALTIME).

def sys_time(kernel: Kernel, proc: Process, tloc: int, *_: int) -> int:
    seconds = _now_ns(kernel, proc, CLOCK_REALTIME) // 1_000_000_000
    if tloc:
        copyout(proc, tloc, struct.pack("<q", seconds))
    return seconds


def sys_gettimeofday(kernel: Kernel, proc: Process, tv: int, tz: int, *_: int) -> int:
    """The time in seconds and microseconds; the timezone is UTC with no DST (Linux's sys_tz unset)."""
    if tv:
        ns = _now_ns(kernel, proc, CLOCK_REALTIME)
        copyout(proc, tv, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000 // 1000))
    if tz:
        copyout(proc, tz, struct.pack("<ii", 0, 0))
    return 0
