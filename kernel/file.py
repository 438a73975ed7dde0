"""Open files: what a file descriptor refers to."""

from __future__ import annotations

from typing import BinaryIO

from kernel import errno
from kernel.errno import SyscallError
from kernel.fs import HostFile


class OpenFile:
    """Base of everything an fd can name; the defaults refuse the operation."""

    readable = False
    writable = False

    def __init__(self) -> None:
        self.references = 1   # descriptors, in all processes, that name this open file

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EBADF)

    def close(self) -> None:
        """Called when the last descriptor naming this open file is closed."""


class Console(OpenFile):
    """One of the host's standard streams (fds 0-2)."""

    def __init__(self, stream: BinaryIO, readable: bool, writable: bool) -> None:
        super().__init__()
        self.stream = stream
        self.readable = readable
        self.writable = writable

    def read(self, length: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
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
