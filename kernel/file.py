"""Open files: what a file descriptor refers to."""

from __future__ import annotations

import errno as host_errno
import fcntl
import os
import select
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from vmgames.kernel import errno, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.fs import DirectoryEntry, HostFile, Inode, Stat
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.proc import Process

CHUNK = 64 << 10    # bytes moved between user memory and a file at a time

# open(2)'s flags that an open file keeps (asm-generic/fcntl.h).
O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_APPEND, O_NONBLOCK, FASYNC, O_DIRECT, O_LARGEFILE, O_DIRECTORY = 0o2000, 0o4000, 0o20000, 0o40000, 0o100000, 0o200000
O_NOATIME = 0o1000000
SETFL_MASK = O_APPEND | O_NONBLOCK | FASYNC | O_DIRECT | O_NOATIME      # the flags F_SETFL may change
SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
# poll(2)'s events (asm-generic/poll.h).
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM = 0x40, 0x100
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM    # a file that never makes anyone wait
# The two terminal requests a console passes to the host's terminal (asm-generic/ioctls.h); any other is ENOTTY.
TCGETS, TIOCGWINSZ = 0x5401, 0x5413
TERMINAL_ANSWERS = {TCGETS: 36, TIOCGWINSZ: 8}      # bytes of Linux's struct termios, struct winsize
MAX_OFFSET = (1 << 63) - 1                           # loff_t


class OpenFile(ABC):
    """Base of everything an fd can name; the defaults refuse the operation, and each kind says what it is."""

    readable = False
    writable = False

    def __init__(self, flags: int = O_RDONLY) -> None:
        self.references = 1   # descriptors, in all processes, that name this open file
        # f_flags: the access mode and the status flags F_GETFL shows, shared by dup and fork (O_NONBLOCK, ...).
        self.flags = flags

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    @nonblocking.setter
    def nonblocking(self, value: bool) -> None:
        self.flags = self.flags | O_NONBLOCK if value else self.flags & ~O_NONBLOCK

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EBADF)

    @abstractmethod
    def stat(self) -> Stat:
        """fstat(2): what the file is."""

    def seek(self, offset: int, whence: int) -> int:
        """lseek(2): the new offset.  Nothing seekable by default: ESPIPE, as Linux's no_llseek."""
        raise SyscallError(errno.ESPIPE)

    def pread(self, offset: int, length: int) -> bytes:
        """pread64(2): bytes at `offset`, the file's offset unchanged; ESPIPE where there is no offset."""
        raise SyscallError(errno.ESPIPE)

    def ioctl(self, proc: Process, request: int, arg: int) -> int:
        """ioctl(2): no request is known to a file that is not a terminal."""
        raise SyscallError(errno.ENOTTY)

    def poll(self) -> int:
        """The poll(2) events that hold now; a file that never makes anyone wait is always ready."""
        return DEFAULT_POLLMASK

    def poll_channels(self) -> tuple[object, ...]:
        """The channels whose wakeups may change what poll() says: a poller sleeps on them."""
        return ()

    def read_to_user(self, proc: Process, buf: int, count: int) -> int:
        """read(2): one read() of up to CHUNK bytes, copied out to `buf`."""
        data = self.read(min(count, CHUNK))
        copyout(proc, buf, data)
        return len(data)

    def write_from_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        """write(2)/writev(2) of the (address, length) segments, in order.

        A bad address after some bytes were written ends the write with their
        count; before any, with EFAULT (as Linux does).
        """
        written = 0
        for base, length in segments:
            done = 0
            while done < length:
                try:
                    data = copyin(proc, base + done, min(CHUNK, length - done))
                except SyscallError:
                    if written:
                        return written
                    raise
                accepted = self.write(data)
                done += accepted
                written += accepted
        return written

    def readv_to_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        """readv(2): the segments filled in order, until a read comes back short.

        A bad address after some bytes were read ends the call with their count; before any, EFAULT.
        """
        done = 0
        for base, length in segments:
            try:
                got = self.read_to_user(proc, base, length)
            except SyscallError:
                if done:
                    return done
                raise
            done += got
            if got < length:
                break
        return done

    # Hooks with nothing to do for most files (a pipe end wakes its peer, a wire drains): not abstract.
    def close(self) -> None:  # noqa: B027
        """Called when the last descriptor naming this open file is closed."""

    def detach(self, proc: Process) -> None:  # noqa: B027
        """Called when one of `proc`'s descriptors naming this open file is closed."""


class Console(OpenFile):
    """One of the host's standard streams (fds 0-2).

    The host side failing is the guest's problem, never the kernel's: a write
    to a host pipe whose reader has gone is SIGPIPE for the writer (and EPIPE),
    as a pipe of the guest's own; a full device is ENOSPC; any other host
    error is EIO.  A stream with a descriptor is read and written through it,
    unbuffered, so a failed write leaves nothing behind in Python's buffers.
    """

    def __init__(self, stream: BinaryIO, readable: bool, writable: bool,
                 before_read: Callable[[BinaryIO], bool] | None = None,
                 before_write: Callable[[BinaryIO], bool] | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.readable = readable
        self.writable = writable
        # The kernel's: they wait until the host can take the call without blocking, as a debugger or a
        # run limit may want; False if the caller was put to sleep meanwhile, so nothing must move now.
        # (A write of more than the host's pipe can take at once may still block the host part way.)
        self.before_read = before_read
        self.before_write = before_write
        self.fd = _descriptor(stream)     # None for a stream without one (a test's BytesIO)
        self.flags = _host_flags(self.fd) if self.fd is not None else (O_RDONLY if readable else O_WRONLY)

    def stat(self) -> Stat:
        """What the host's stream is: a terminal, a pipe, a file.  A stream without a descriptor is a pipe."""
        if self.fd is None:
            return Stat(stat.S_IFIFO | 0o600, 0, 0, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0)
        try:
            return Stat.of_host(os.fstat(self.fd))
        except OSError as error:
            raise SyscallError(_HOST_READ_ERRORS.get(error.errno, errno.EIO)) from None

    def seek(self, offset: int, whence: int) -> int:
        """The host's answer: a file there has an offset (shared with the host, as a shell's would be)."""
        if self.fd is None:
            raise SyscallError(errno.ESPIPE)
        try:
            return os.lseek(self.fd, offset, whence)
        except (OSError, OverflowError) as error:
            raise SyscallError(_host_seek_error(error)) from None

    def pread(self, offset: int, length: int) -> bytes:
        """The host's pread: ESPIPE for a pipe or a terminal there; EBADF for a stream the guest only writes."""
        if self.fd is None:
            raise SyscallError(errno.ESPIPE)
        try:
            if not self.readable:
                os.lseek(self.fd, 0, SEEK_CUR)
                raise SyscallError(errno.EBADF)
            return os.pread(self.fd, length, offset)
        except (OSError, OverflowError) as error:
            raise SyscallError(_host_seek_error(error)) from None

    def ioctl(self, proc: Process, request: int, arg: int) -> int:
        """TCGETS and TIOCGWINSZ get the host terminal's answer; nothing else reaches the host (ENOTTY)."""
        size = TERMINAL_ANSWERS.get(request)
        if self.fd is None or size is None or not os.isatty(self.fd):
            raise SyscallError(errno.ENOTTY)
        try:
            answer = fcntl.ioctl(self.fd, request, bytes(size))
        except OSError:
            raise SyscallError(errno.ENOTTY) from None
        copyout(proc, arg, answer)
        return 0

    def poll(self) -> int:
        """The host's own poll of its stream, without waiting."""
        if self.fd is None:
            return DEFAULT_POLLMASK
        poller = select.poll()
        poller.register(self.fd, POLLIN | POLLOUT | POLLPRI)
        return sum(events for _, events in poller.poll(0))

    def wait_ready(self) -> bool:
        """Block the host until its stream can be read (a poll of the console only, with nothing else to
        wait for), letting a debugger or a run limit step in; False if the poller was put to sleep instead."""
        if self.fd is None:
            return True
        if self.before_read is not None and not self.before_read(self.stream):
            return False
        select.select([self.fd], [], [])
        return True

    def read_to_user(self, proc: Process, buf: int, count: int) -> int:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if count and self.before_read is not None and not self.before_read(self.stream):
            return 0    # the reader sleeps instead: the call is made again if it is ever woken
        return super().read_to_user(proc, buf, count)

    def readv_to_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        """One read, into the first segment: another could block the host for input that is not there."""
        return self.read_to_user(proc, *segments[0])

    def read(self, length: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        try:
            if self.fd is None:
                return getattr(self.stream, "read1", self.stream.read)(length)
            return os.read(self.fd, length)
        except OSError as error:
            raise SyscallError(_HOST_READ_ERRORS.get(error.errno, errno.EIO)) from None

    def write_from_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if self.before_write is not None and not self.before_write(self.stream):
            return 0    # the writer sleeps instead: the call is made again if it is ever woken
        try:
            return super().write_from_user(proc, segments)
        except SyscallError as error:
            if error.errno == errno.EPIPE:
                # The writing thread's SIGPIPE: by default it ends the process.
                proc.kernel.send_signal(proc, signals.SIGPIPE, "write to a host pipe with no reader", thread=True)
            raise

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        try:
            if self.fd is None:
                self.stream.write(data)
                self.stream.flush()
                return len(data)
            return os.write(self.fd, data)
        except OSError as error:
            raise SyscallError(_HOST_WRITE_ERRORS.get(error.errno, errno.EIO)) from None


# What the guest sees when the host's stream fails; anything else is EIO.
_HOST_READ_ERRORS = {host_errno.EISDIR: errno.EISDIR, host_errno.EAGAIN: errno.EAGAIN, host_errno.EBADF: errno.EBADF}
_HOST_WRITE_ERRORS = {host_errno.EPIPE: errno.EPIPE, host_errno.ENOSPC: errno.ENOSPC,
                      host_errno.EAGAIN: errno.EAGAIN, host_errno.EBADF: errno.EBADF}


def _host_seek_error(error: Exception) -> int:
    """lseek and pread on the host's stream: its ESPIPE and EINVAL are the guest's, anything else EIO."""
    number = getattr(error, "errno", None) or host_errno.EINVAL      # OverflowError: past what loff_t holds
    return {host_errno.ESPIPE: errno.ESPIPE, host_errno.EINVAL: errno.EINVAL, host_errno.ENXIO: errno.ENXIO,
            host_errno.EISDIR: errno.EISDIR, host_errno.EBADF: errno.EBADF}.get(number, errno.EIO)


def _host_flags(fd: int) -> int:
    """F_GETFL of the host's descriptor: the access mode and status flags the guest sees too."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return O_RDONLY


def _descriptor(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class Directory(OpenFile):
    """A directory opened read-only (O_RDONLY, O_DIRECTORY): read(2) says EISDIR, getdents64 lists it.

    The position is an index into the listing, which is taken when a read
    starts from the beginning and kept until the directory is rewound, so a
    listing read in several calls is one listing.
    """

    readable = True

    def __init__(self, directory: Inode, flags: int = O_RDONLY | O_DIRECTORY | O_LARGEFILE) -> None:
        super().__init__(flags)
        self.directory = directory
        self.position = 0
        self._listing: list[DirectoryEntry] | None = None

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def pread(self, offset: int, length: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def stat(self) -> Stat:
        return self.directory.stat()

    def listing(self, context: Any) -> list[DirectoryEntry]:
        if self._listing is None or self.position == 0:
            self._listing = self.directory.entries(context)
        return self._listing

    def seek(self, offset: int, whence: int) -> int:
        """Positions are entry numbers (d_off): SEEK_SET and SEEK_CUR; SEEK_END means nothing here (EINVAL)."""
        if whence == SEEK_CUR:
            offset += self.position
        elif whence != SEEK_SET:
            raise SyscallError(errno.EINVAL)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        self.position = offset
        return offset


class RegularFile(OpenFile):
    """A file of the guest filesystem, opened read-only."""

    readable = True

    def __init__(self, file: HostFile, flags: int = O_RDONLY | O_LARGEFILE) -> None:
        super().__init__(flags)
        self.file = file
        self.offset = 0

    def read(self, length: int) -> bytes:
        data = self.file.read(self.offset, length)
        self.offset += len(data)
        return data

    def pread(self, offset: int, length: int) -> bytes:
        return self.file.read(offset, length)

    def stat(self) -> Stat:
        return self.file.stat()

    def seek(self, offset: int, whence: int) -> int:
        """Linux's generic_file_llseek: SEEK_DATA and SEEK_HOLE see one extent of data, the whole file."""
        size = self.file.size
        if whence == SEEK_SET:
            position = offset
        elif whence == SEEK_CUR:
            position = self.offset + offset
        elif whence == SEEK_END:
            position = size + offset
        elif whence in (SEEK_DATA, SEEK_HOLE):
            if not 0 <= offset < size:
                raise SyscallError(errno.ENXIO)
            position = offset if whence == SEEK_DATA else size
        else:
            raise SyscallError(errno.EINVAL)
        if not 0 <= position <= MAX_OFFSET:
            raise SyscallError(errno.EINVAL)
        self.offset = position
        return position


class MemoryFile(RegularFile):
    """A file whose bytes the kernel makes when it is opened (/proc/self/maps).

    It may be opened for writing, as Linux's may, but nothing can be written (EINVAL).
    """

    def __init__(self, inode: Inode, data: bytes, flags: int = O_RDONLY | O_LARGEFILE) -> None:
        OpenFile.__init__(self, flags)
        self.readable = flags & O_ACCMODE != O_WRONLY
        self.writable = flags & O_ACCMODE != O_RDONLY
        self.inode = inode
        self.data = data
        self.offset = 0

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)

    def read(self, length: int) -> bytes:
        data = self.pread(self.offset, length)
        self.offset += len(data)
        return data

    def pread(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def stat(self) -> Stat:
        return self.inode.stat()

    def seek(self, offset: int, whence: int) -> int:
        """Linux's seq_lseek: SEEK_SET and SEEK_CUR only."""
        if whence == SEEK_CUR:
            offset += self.offset
        elif whence != SEEK_SET:
            raise SyscallError(errno.EINVAL)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        self.offset = offset
        return offset
