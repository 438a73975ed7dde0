"""Open files: what a file descriptor refers to."""

from __future__ import annotations

import errno as host_errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.fs import HostDirectory, HostFile
from kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from kernel.proc import Process

CHUNK = 64 << 10    # bytes moved between user memory and a file at a time


class OpenFile:
    """Base of everything an fd can name; the defaults refuse the operation."""

    readable = False
    writable = False

    def __init__(self) -> None:
        self.references = 1   # descriptors, in all processes, that name this open file
        self.nonblocking = False   # O_NONBLOCK: a status of the open file, so dup and fork share it

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EBADF)

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

    def close(self) -> None:
        """Called when the last descriptor naming this open file is closed."""

    def detach(self, proc: Process) -> None:
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

    def read_to_user(self, proc: Process, buf: int, count: int) -> int:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if count and self.before_read is not None and not self.before_read(self.stream):
            return 0    # the reader sleeps instead: the call is made again if it is ever woken
        return super().read_to_user(proc, buf, count)

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


def _descriptor(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class Directory(OpenFile):
    """A directory opened read-only (O_RDONLY, O_DIRECTORY): it holds a descriptor; read(2) says EISDIR."""

    readable = True

    def __init__(self, directory: HostDirectory) -> None:
        super().__init__()
        self.directory = directory

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EISDIR)


class RegularFile(OpenFile):
    """A file of the guest filesystem, opened read-only."""

    readable = True

    def __init__(self, file: HostFile) -> None:
        super().__init__()
        self.file = file
        self.offset = 0

    def read(self, length: int) -> bytes:
        data = self.file.read(self.offset, length)
        self.offset += len(data)
        return data
