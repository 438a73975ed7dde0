"""Pipes: a bounded byte buffer between a read end and a write end.

A syscall that must wait cannot stay inside the kernel here: it sleeps and is
made again from the start once woken.  So reads are "take what is there, or
EOF, or sleep", and a blocking write that has to wait part-way records how
much it already wrote (keyed by the writer), so that the restarted call goes
on from there and returns the full count once everything is in, as Linux's
blocking write does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.file import OpenFile
from kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from kernel.proc import Process

PIPE_CAPACITY = 65536    # bytes a Linux pipe holds by default (16 pages)
PIPE_BUF = 4096          # writes of at most this many bytes are atomic (POSIX)


class Pipe:
    """The buffer: chunks in write order, and how many ends of each kind are open.

    The buffer is a deque of chunks (one per write) rather than one bytearray
    so that a chunk can later be a reference to a page instead of a copy.  The
    pipe wakes whoever sleeps on it when its state changes that way.
    """

    def __init__(self, wakeup: Callable[[object], None]) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0                 # bytes buffered
        self.readers = 1              # open read ends
        self.writers = 1              # open write ends
        self.readable_channel = ("pipe-readable", id(self))    # channels sleepers wait on
        self.writable_channel = ("pipe-writable", id(self))
        self.written_before_sleep: dict[object, int] = {}   # blocked writer -> bytes of its write already in
        self._wakeup = wakeup

    def room(self) -> int:
        return PIPE_CAPACITY - self.size

    def push(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self._wakeup(self.readable_channel)

    def peek(self, length: int) -> bytes:
        """The first `length` buffered bytes (at most), left in the pipe."""
        out = bytearray()
        for chunk in self.chunks:
            if len(out) >= length:
                break
            out += chunk[:length - len(out)]
        return bytes(out)

    def drop(self, length: int) -> None:
        """Discard the first `length` bytes, once the reader has them."""
        self.size -= length
        while length:
            chunk = self.chunks.popleft()
            if len(chunk) > length:
                self.chunks.appendleft(chunk[length:])
                break
            length -= len(chunk)
        self._wakeup(self.writable_channel)

    def close_reader(self) -> None:
        self.readers -= 1
        if self.readers == 0:
            self._wakeup(self.writable_channel)     # blocked writers must now get EPIPE

    def close_writer(self) -> None:
        self.writers -= 1
        if self.writers == 0:
            self._wakeup(self.readable_channel)     # blocked readers must now see EOF


class PipeReadEnd(OpenFile):
    readable = True

    def __init__(self, pipe: Pipe) -> None:
        super().__init__()
        self.pipe = pipe

    def read_to_user(self, proc: Process, buf: int, count: int) -> int:
        """Take what is buffered (up to count); EOF once no writer is left; else wait.

        The bytes leave the pipe only once they are copied out, so a bad
        buffer gets EFAULT and loses nothing, as on Linux.
        """
        pipe = self.pipe
        if count == 0:
            return 0
        if pipe.size:
            data = pipe.peek(min(count, pipe.size))
            copyout(proc, buf, data)
            pipe.drop(len(data))
            return len(data)
        if pipe.writers == 0:
            return 0
        if self.nonblocking:
            raise SyscallError(errno.EAGAIN)
        proc.kernel.sleep(proc, pipe.readable_channel)
        return 0

    def close(self) -> None:
        self.pipe.close_reader()


class PipeWriteEnd(OpenFile):
    writable = True

    def __init__(self, pipe: Pipe) -> None:
        super().__init__()
        self.pipe = pipe

    def write_from_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        """Write the segments' bytes; a write of at most PIPE_BUF bytes goes in whole or not at all.

        Blocking: returns the whole count once everything is in.  Non-blocking:
        what fits (EAGAIN if nothing does).  No reader left: SIGPIPE, EPIPE.
        """
        pipe = self.pipe
        total = sum(length for _, length in segments)
        if total == 0:
            return 0
        written = pipe.written_before_sleep.pop(proc, 0)
        if pipe.readers == 0:
            _kill_by_sigpipe(proc)
            raise SyscallError(errno.EPIPE)
        fits = min(pipe.room(), total - written)
        if total <= PIPE_BUF and fits < total:
            fits = 0
        for base, length in _pieces(segments, written, fits):
            try:
                pipe.push(copyin(proc, base, length))
            except SyscallError:
                if written:
                    return written
                raise
            written += length
        if written == total:
            return total
        if self.nonblocking:
            if written:
                return written
            raise SyscallError(errno.EAGAIN)
        pipe.written_before_sleep[proc] = written
        proc.kernel.sleep(proc, pipe.writable_channel)
        return 0

    def close(self) -> None:
        self.pipe.close_writer()


def _pieces(segments: list[tuple[int, int]], skip: int, length: int) -> list[tuple[int, int]]:
    """The (address, length) pieces of the segments' bytes [skip, skip + length)."""
    pieces = []
    for base, size in segments:
        if skip >= size:
            skip -= size
            continue
        n = min(size - skip, length)
        if n == 0:
            break
        pieces.append((base + skip, n))
        length -= n
        skip = 0
    return pieces


def _kill_by_sigpipe(proc: Process) -> None:
    """SIGPIPE's default action: the writer dies (signal handlers are not modelled)."""
    death = f"{proc.name}[{proc.pid}]: killed by SIGPIPE: write to a pipe with no reader"
    proc.kernel.recorder.event("proc", "signal", target=proc.pid, signal=signals.SIGPIPE)
    proc.kernel.exit(proc, 0, signals.SIGPIPE, death)


def open_pipe(wakeup: Callable[[object], None], nonblocking: bool) -> tuple[PipeReadEnd, PipeWriteEnd]:
    pipe = Pipe(wakeup)
    ends = PipeReadEnd(pipe), PipeWriteEnd(pipe)
    for end in ends:
        end.nonblocking = nonblocking
    return ends
