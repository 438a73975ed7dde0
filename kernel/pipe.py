"""Pipes: a ring of page-sized buffers between a read end and a write end.

The buffer is laid out as Linux's (fs/pipe.c): 16 slots, each holding at
most a page of bytes and the offset the reader has got to.  A write first
tops up the last slot with the write's tail (`count % PAGE_SIZE` bytes, if
they fit there), then fills fresh slots a page at a time; a slot is free again
only once it has been read to its end.  So a pipe holds 65536 bytes when
writes merge, fewer when they do not, and a write of at most PIPE_BUF bytes,
fitting either in the last slot or in a free one, is never split: exactly
Linux's capacities and EAGAINs.  A slot will later be able to hold a
reference to a user's page instead of a copy (the zero-copy experiment).

A syscall that must wait cannot stay inside the kernel here: it sleeps and is
made again from the start once woken.  So a read is "take what is there, or
EOF, or sleep", and a blocking write that has to wait records how much of it
is already in (keyed by the writer), so that the call made again goes on from
there and returns the full count once everything is in, as Linux's does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emulator.ram import PAGE_SIZE
from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.file import OpenFile
from kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from kernel.proc import Process

PIPE_SLOTS = 16                           # Linux's PIPE_DEF_BUFFERS
PIPE_CAPACITY = PIPE_SLOTS * PAGE_SIZE    # 65536 bytes
PIPE_BUF = 4096                           # writes of at most this many bytes are atomic (POSIX)


@dataclass
class PipeBuffer:
    """One slot: the bytes written into its page, and how many of them were read."""

    data: bytearray
    offset: int = 0

    @property
    def unread(self) -> int:
        return len(self.data) - self.offset


class Pipe:
    """The ring of slots and how many ends of each kind are open.

    The pipe wakes whoever sleeps on it when its state changes their way:
    readers when bytes arrive or the last writer goes, writers when a slot
    frees up or the last reader goes.
    """

    def __init__(self, wakeup: Callable[[object], None]) -> None:
        self.slots: deque[PipeBuffer] = deque()
        self.size = 0                 # unread bytes
        self.readers = 1              # open read ends
        self.writers = 1              # open write ends
        self.readable_channel = ("pipe-readable", id(self))    # channels sleepers wait on
        self.writable_channel = ("pipe-writable", id(self))
        self.written_before_sleep: dict[object, int] = {}   # blocked writer -> bytes of its write already in
        self._wakeup = wakeup

    def full(self) -> bool:
        return len(self.slots) == PIPE_SLOTS

    def room_in_last_slot(self) -> int:
        return PAGE_SIZE - len(self.slots[-1].data) if self.slots else 0

    def merge(self, data: bytes) -> None:
        """Add bytes to the last slot (the caller checked they fit)."""
        self.slots[-1].data += data
        self._added(len(data))

    def push(self, data: bytes) -> None:
        """Fill a free slot with at most a page of bytes (the caller checked there is one)."""
        self.slots.append(PipeBuffer(bytearray(data)))
        self._added(len(data))

    def _added(self, length: int) -> None:
        self.size += length
        self._wakeup(self.readable_channel)

    def peek(self, length: int) -> bytes:
        """The first `length` unread bytes (at most), left in the pipe."""
        out = bytearray()
        for slot in self.slots:
            if len(out) >= length:
                break
            out += slot.data[slot.offset:slot.offset + length - len(out)]
        return bytes(out)

    def consume(self, length: int) -> None:
        """Mark the first `length` unread bytes read, freeing the slots read to their end."""
        self.size -= length
        freed = False
        while length:
            slot = self.slots[0]
            taken = min(length, slot.unread)
            slot.offset += taken
            length -= taken
            if slot.unread == 0:
                self.slots.popleft()
                freed = True
        if freed:
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
        """Take what is there (up to count); EOF once no writer is left; else wait.

        The bytes leave the pipe only once they are copied out, so a bad
        buffer gets EFAULT and loses nothing, as on Linux.
        """
        pipe = self.pipe
        if count == 0:
            return 0
        if pipe.size:
            data = pipe.peek(count)
            copyout(proc, buf, data)
            pipe.consume(len(data))
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
        """Write the segments' bytes as Linux's pipe_write does.

        Blocking: returns the whole count once everything is in.  Non-blocking:
        what went in (EAGAIN if nothing could).  No reader left: SIGPIPE, EPIPE.
        """
        pipe = self.pipe
        total = sum(length for _, length in segments)
        if total == 0:
            return 0
        resumed = proc in pipe.written_before_sleep
        written = pipe.written_before_sleep.pop(proc, 0)
        if pipe.readers == 0:
            _kill_by_sigpipe(proc)
            raise SyscallError(errno.EPIPE)
        try:
            tail = total % PAGE_SIZE
            if not resumed and tail and tail <= pipe.room_in_last_slot():
                pipe.merge(_gather(proc, segments, 0, tail))
                written = tail
            while written < total and not pipe.full():
                length = min(PAGE_SIZE, total - written)
                pipe.push(_gather(proc, segments, written, length))
                written += length
        except SyscallError:
            if written:
                return written
            raise
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


def _gather(proc: Process, segments: list[tuple[int, int]], skip: int, length: int) -> bytes:
    """The segments' bytes [skip, skip + length), copied in from user memory."""
    out = bytearray()
    for base, size in segments:
        if skip >= size:
            skip -= size
            continue
        n = min(size - skip, length - len(out))
        out += copyin(proc, base + skip, n)
        skip = 0
        if len(out) == length:
            break
    return bytes(out)


def _kill_by_sigpipe(proc: Process) -> None:
    """SIGPIPE's default action: the writer dies (signal handlers are not modelled)."""
    proc.kernel.send_signal(proc, signals.SIGPIPE, "write to a pipe with no reader")


def open_pipe(wakeup: Callable[[object], None], nonblocking: bool) -> tuple[PipeReadEnd, PipeWriteEnd]:
    pipe = Pipe(wakeup)
    ends = PipeReadEnd(pipe), PipeWriteEnd(pipe)
    for end in ends:
        end.nonblocking = nonblocking
    return ends
