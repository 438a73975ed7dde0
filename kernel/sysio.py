"""Syscalls on open files beyond read and write: lseek, pread64, readv, fcntl, poll, ppoll, and ioctl's
generic requests.

poll sleeps as a pipe read does: on the channels of every file it watches
at once (`AnyOf`), and is made again from the start when one of them is
woken.  A finite timeout is a callout (`PollTimer`, kernel/callout.py) that
wakes the poller at its virtual deadline; the call made again finds it
fired and returns 0.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import CHUNK, O_NOATIME, POLLERR, POLLHUP, POLLNVAL, SETFL_MASK, Console, OpenFile
from vmgames.kernel.namei import descriptor
from vmgames.kernel.proc import MAX_FDS, SLEEPING, ZOMBIE
from vmgames.kernel.sysinfo import RLIMIT_NOFILE, rlimit
from vmgames.kernel.uaccess import access_ok, copyin, copyout, import_iovec

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

SEEK_MAX = 4                         # SEEK_HOLE
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 1030
FD_CLOEXEC = 1
FIONBIO, FIONCLEX, FIOCLEX = 0x5421, 0x5450, 0x5451
POLLFD_SIZE = 8                      # struct pollfd { int fd; short events, revents; }
SIGSET_SIZE = 8                      # the kernel's sigset_t: 64 signals
NS_PER_MS = 1_000_000


def sys_lseek(kernel: Kernel, proc: Process, fd: int, offset: int, whence: int, *_: int) -> int:
    """The file's new offset; EINVAL for a whence Linux does not know (before ESPIPE), ESPIPE for a pipe."""
    file = descriptor(proc, fd)
    if whence > SEEK_MAX:
        raise SyscallError(errno.EINVAL)
    return file.seek(offset, whence)


def sys_pread64(kernel: Kernel, proc: Process, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    """Read at `offset`, leaving the file's offset alone: EINVAL for a negative offset, then EBADF,
    ESPIPE for what has no offset (a pipe), EISDIR for a directory, then EFAULT."""
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    file = descriptor(proc, fd)
    data = file.pread(offset, min(count, CHUNK))
    if not access_ok(buf, count):
        raise SyscallError(errno.EFAULT)
    copyout(proc, buf, data)
    return len(data)


def sys_readv(kernel: Kernel, proc: Process, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    file = descriptor(proc, fd)
    if not file.readable:
        raise SyscallError(errno.EBADF)
    segments = [(base, length) for base, length in import_iovec(proc, iov, iovcnt) if length]
    if not segments:
        return 0
    return file.readv_to_user(proc, segments)


def _install(proc: Process, file: OpenFile, lowest: int, cloexec: bool) -> int:
    """Another descriptor for `file`, the lowest free one from `lowest` (F_DUPFD); EINVAL at or past
    RLIMIT_NOFILE, EMFILE when none is free below it."""
    most = rlimit(proc, RLIMIT_NOFILE)[0]
    if lowest >= most:
        raise SyscallError(errno.EINVAL)
    for fd in range(lowest, min(most, MAX_FDS)):
        if fd not in proc.files:
            proc.files[fd] = file
            file.references += 1
            if cloexec:
                proc.cloexec.add(fd)
            return fd
    raise SyscallError(errno.EMFILE)


def sys_fcntl(kernel: Kernel, proc: Process, fd: int, command: int, arg: int, *_: int) -> int:
    """Descriptor flags (FD_CLOEXEC), the open file's status flags (O_NONBLOCK, O_APPEND, ...), F_DUPFD."""
    file = descriptor(proc, fd)
    if command in (F_DUPFD, F_DUPFD_CLOEXEC):
        return _install(proc, file, arg & 0xFFFF_FFFF, command == F_DUPFD_CLOEXEC)
    if command == F_GETFD:
        return FD_CLOEXEC if fd in proc.cloexec else 0
    if command == F_SETFD:
        if arg & FD_CLOEXEC:
            proc.cloexec.add(fd)
        else:
            proc.cloexec.discard(fd)
        return 0
    if command == F_GETFL:
        return file.flags
    if command == F_SETFL:
        if arg & O_NOATIME and not file.flags & O_NOATIME and kernel.credentials[0] not in (0, file.stat().uid):
            raise SyscallError(errno.EPERM)
        file.flags = (file.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    raise SyscallError(errno.EINVAL)


def ioctl(kernel: Kernel, proc: Process, fd: int, request: int, arg: int) -> int:
    """ioctl(2) on any file: the requests Linux's do_vfs_ioctl answers for every file, then the file's own
    (a console on a terminal: TCGETS, TIOCGWINSZ; anything else ENOTTY)."""
    file = descriptor(proc, fd)
    if request == FIOCLEX:
        proc.cloexec.add(fd)
        return 0
    if request == FIONCLEX:
        proc.cloexec.discard(fd)
        return 0
    if request == FIONBIO:
        file.nonblocking = bool(struct.unpack("<i", copyin(proc, arg, 4))[0])
        return 0
    return file.ioctl(proc, request, arg)


class AnyOf:
    """A sleep channel made of several: wakeup() of any of them wakes the sleeper.

    The kernel wakes a sleeper whose channel equals the one woken, and this
    one equals each channel it holds.  It remembers having been woken so: a
    poll made again can tell its wait ended by a wakeup, not by anything
    else that ends a sleep (a signal).
    """

    def __init__(self, channels: list[object]) -> None:
        self.channels = channels
        self.woken = False

    def __eq__(self, other: object) -> bool:
        if other is self or other in self.channels:
            self.woken = True       # wakeup() compares only a sleeper's channel, and wakes it when equal
            return True
        return False

    __hash__ = object.__hash__


class PollTimer:
    """A poll's finite timeout, on the callout queue: at the deadline it wakes the poller, and stays (fired)
    until the poll made again has seen it, so that the poll returns 0 instead of starting a new wait."""

    def __init__(self, kernel: Kernel, proc: Process, deadline: int) -> None:
        self.kernel = kernel
        self.proc = proc
        self.due = deadline
        self.fired = False
        self.done = False
        self.channel = ("poll-timeout", id(self))
        self.sleep: AnyOf | None = None       # the poller's last sleep

    def deadline(self) -> int | None:
        return None if self.fired else self.due

    def advance(self, now: int) -> None:
        if not self.fired and now >= self.due:
            self.fired = True
            self.kernel.wakeup(self.channel)

    def finished(self) -> bool:
        return self.done or self.proc.state == ZOMBIE


def _timer_of(kernel: Kernel, proc: Process) -> PollTimer | None:
    """The timeout of the poll `proc` is making again, if it has one.  A timer whose sleep ended otherwise
    than by a wakeup belongs to a poll that is over (a signal ended it): it is dropped."""
    for device in kernel.callout.devices:
        if isinstance(device, PollTimer) and device.proc is proc and not device.done:
            if device.sleep is not None and not device.sleep.woken:
                device.done = True
                return None
            return device
    return None


def sys_poll(kernel: Kernel, proc: Process, fds: int, nfds: int, timeout_ms: int, *_: int) -> int:
    return _poll(kernel, proc, fds, nfds, None if timeout_ms < 0 else timeout_ms * NS_PER_MS)


def sys_ppoll(kernel: Kernel, proc: Process, fds: int, nfds: int, timeout: int, sigmask: int, sigsetsize: int,
              *_: int) -> int:
    """poll with a timespec (NULL: no timeout) and a signal mask, which is checked (its size must be the
    kernel's sigset_t) but changes nothing: there are no signal handlers."""
    wait_ns = None
    if timeout:
        seconds, nanoseconds = struct.unpack("<qq", copyin(proc, timeout, 16))
        if seconds < 0 or not 0 <= nanoseconds < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        wait_ns = seconds * 1_000_000_000 + nanoseconds
    if sigmask:
        if sigsetsize != SIGSET_SIZE:
            raise SyscallError(errno.EINVAL)
        copyin(proc, sigmask, SIGSET_SIZE)
    timer = _timer_of(kernel, proc)
    result = _poll(kernel, proc, fds, nfds, wait_ns)
    if wait_ns and proc.state != SLEEPING:
        # As Linux's poll_select_finish: the time left is written back (never a fault for it).
        left = max(0, timer.due - kernel.machine.now) if timer is not None else wait_ns
        try:
            copyout(proc, timeout, struct.pack("<qq", left // 1_000_000_000, left % 1_000_000_000))
        except SyscallError:
            pass
    return result


def _poll(kernel: Kernel, proc: Process, fds: int, nfds: int, wait_ns: int | None) -> int:
    """Linux's do_sys_poll: the events that hold now, or a wait for one (none: forever) and then again."""
    if nfds > rlimit(proc, RLIMIT_NOFILE)[0]:
        raise SyscallError(errno.EINVAL)
    entries = list(struct.iter_unpack("<ihh", copyin(proc, fds, POLLFD_SIZE * nfds)))
    while True:
        revents, files = _events(proc, entries)
        ready = sum(1 for events in revents if events)
        timer = _timer_of(kernel, proc)
        timed_out = wait_ns == 0 or (timer is not None and timer.fired)
        if ready or timed_out:
            if timer is not None:
                timer.done = True
            copyout(proc, fds, b"".join(struct.pack("<ihh", fd, events, result)
                                        for (fd, events, _), result in zip(entries, revents, strict=True)))
            return ready
        channels = [channel for file in files for channel in file.poll_channels()]
        if wait_ns is None and not channels:
            consoles = [file for file in files if isinstance(file, Console)]
            if consoles:
                # Only the host can make these ready: wait for it there, as a console read does.
                if not consoles[0].wait_ready():
                    return 0
                continue
        sleep = AnyOf(channels)
        if wait_ns is not None:
            if timer is None:
                timer = PollTimer(kernel, proc, kernel.machine.now + wait_ns)
                kernel.callout.register(timer)
            channels.append(timer.channel)
            timer.sleep = sleep
        kernel.sleep(proc, sleep)
        return 0


def _events(proc: Process, entries: list[tuple[int, int, int]]) -> tuple[list[int], list[OpenFile]]:
    """Each entry's revents (what holds of what it asked, and errors and hang-ups always), and the files."""
    revents, files = [], []
    for fd, events, _ in entries:
        if fd < 0:
            revents.append(0)
            continue
        file = proc.files.get(fd)
        if file is None:
            revents.append(POLLNVAL)
            continue
        files.append(file)
        revents.append(file.poll() & ((events & 0xFFFF) | POLLERR | POLLHUP))
    return revents, files
