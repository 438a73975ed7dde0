"""Open files: what a file descriptor refers to."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from kernel import errno
from kernel.errno import SyscallError
from kernel.fs import HostFile
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
    """One of the host's standard streams (fds 0-2)."""

    def __init__(self, stream: BinaryIO, readable: bool, writable: bool,
                 before_read: Callable[[BinaryIO], None] | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.readable = readable
        self.writable = writable
        self.before_read = before_read     # the kernel's: a debugger may wait for the input itself

    def read(self, length: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if self.before_read is not None and length > 0:
            self.before_read(self.stream)
        reader = getattr(self.stream, "read1", self.stream.read)
        return reader(length)

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        self.stream.write(data)
        self.stream.flush()
        return len(data)


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
