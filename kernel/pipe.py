"""Pipes: a ring of page-sized buffers between a read end and a write end.

The buffer is laid out as Linux's (fs/pipe.c): 16 slots, each holding at
most a page of bytes and the offset the reader has got to.  A write first
tops up the last slot with the write's tail (`count % PAGE_SIZE` bytes, if
they fit there), then fills fresh slots a page at a time; a slot is free again
only once it has been read to its end.  So a pipe holds 65536 bytes when
writes merge, fewer when they do not, and a write of at most PIPE_BUF bytes,
fitting either in the last slot or in a free one, is never split: exactly
Linux's capacities and EAGAINs.  A slot can also hold part of a user's
page instead of a copy: a copy-on-write send or a vmsplice (kernel/sink.py);
such slots never take merged bytes, as Linux's gifted and spliced buffers
do not.

A syscall that must wait cannot stay inside the kernel here: it sleeps and is
made again from the start once woken.  So a read is "take what is there, or
EOF, or sleep", and a blocking write that has to wait records how much of it
is already in (keyed by the writer), so that the call made again goes on from
there and returns the full count once everything is in, as Linux's does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, OpenFile
from vmgames.kernel.fs import Stat
from vmgames.kernel.sink import COPY, Segment, SinkEnd
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

PIPE_SLOTS = 16                           # Linux's PIPE_DEF_BUFFERS
PIPE_CAPACITY = PIPE_SLOTS * PAGE_SIZE    # 65536 bytes
PIPE_BUF = 4096                           # writes of at most this many bytes are atomic (POSIX)
PIPEFS_DEV = 0x0D                         # st_dev of every pipe: an anonymous device, as Linux's pipefs (0:13)


class Pipe:
    """The ring of slots and how many ends of each kind are open.

    The pipe wakes whoever sleeps on it when its state changes their way:
    readers when bytes arrive or the last writer goes, writers when a slot
    frees up or the last reader goes.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.slots: deque[Segment] = deque()
        self.size = 0                 # unread bytes
        self.readers = 1              # open read ends
        self.writers = 1              # open write ends
        self.readable_channel = ("pipe-readable", id(self))    # channels sleepers wait on
        self.writable_channel = ("pipe-writable", id(self))
        self._wakeup = kernel.wakeup
        self.ino = kernel.new_inode_number()
        self.created_ns = kernel.realtime_ns()

    def stat(self) -> Stat:
        """What fstat says of either end: a FIFO of pipefs, owned by the caller, read and written by it only."""
        uid, gid = self.kernel.credentials
        times = self.created_ns
        return Stat(0o010600, self.ino, PIPEFS_DEV, 1, uid, gid, 0, 0, PAGE_SIZE, 0, times, times, times)

    def full(self) -> bool:
        return len(self.slots) == PIPE_SLOTS

    def room_in_last_slot(self) -> int:
        if not self.slots or self.slots[-1].mode != COPY:
            return 0
        return PAGE_SIZE - len(self.slots[-1].data)

    def merge(self, data: bytes) -> None:
        """Add bytes to the last slot (the caller checked they fit)."""
        last = self.slots[-1]
        last.data += data
        last.length += len(data)
        self._added(len(data))

    def push(self, segment: Segment) -> None:
        """Fill a free slot with at most a page of bytes (the caller checked there is one)."""
        self.slots.append(segment)
        self._added(segment.length)

    def _added(self, length: int) -> None:
        self.size += length
        self._wakeup(self.readable_channel)

    def consume(self, data: bytes) -> None:
        """The reader took `data`, the first unread bytes: free the slots read to their end."""
        self.size -= len(data)
        freed = False
        while data:
            slot = self.slots[0]
            taken = min(len(data), slot.unread)
            slot.taken(data[:taken], self.kernel.recorder)
            data = data[taken:]
            if slot.unread == 0:
                self.slots.popleft().release(self.kernel.allocator)
                freed = True
        if freed:
            self._wakeup(self.writable_channel)

    def drop(self) -> None:
        """No reader is left: what is in the pipe will never be read, so the pages held go back."""
        while self.slots:
            self.slots.popleft().release(self.kernel.allocator)
        self.size = 0

    def close_reader(self) -> None:
        self.readers -= 1
        if self.readers == 0:
            self.drop()
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

    def stat(self) -> Stat:
        return self.pipe.stat()

    def poll(self) -> int:
        """Linux's pipe_poll for a read end: readable with bytes in; hung up once no writer is left."""
        return (POLLIN | POLLRDNORM if self.pipe.size else 0) | (POLLHUP if self.pipe.writers == 0 else 0)

    def poll_channels(self) -> tuple[object, ...]:
        return (self.pipe.readable_channel,)

    def read_to_user(self, proc: Process, buf: int, count: int) -> int:
        """read(2): take what is there (up to count); EOF once no writer is left; else wait, or EAGAIN."""
        if count == 0:
            return 0
        return self._take(proc, [(buf, count)], blocking=not self.nonblocking)

    def readv_to_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        return self._take(proc, segments, blocking=not self.nonblocking)

    def splice_to_user(self, proc: Process, segments: list[tuple[int, int]], blocking: bool) -> int:
        """vmsplice(2) on the read end: Linux's vmsplice_to_user, a read into the segments.

        Whether it waits is the caller's (SPLICE_F_NONBLOCK), not the file's O_NONBLOCK.
        """
        return self._take(proc, segments, blocking)

    def _take(self, proc: Process, segments: list[tuple[int, int]], blocking: bool) -> int:
        """Copy the unread bytes out to the segments, slot by slot, as Linux's pipe_read does.

        A slot leaves the pipe only once its bytes are copied out, so a bad
        buffer loses nothing: the call returns what the slots before it gave,
        or EFAULT.
        """
        pipe = self.pipe
        if not pipe.size:
            if pipe.writers == 0:
                return 0
            if not blocking:
                raise SyscallError(errno.EAGAIN)
            proc.kernel.sleep(proc, pipe.readable_channel)
            return 0
        ram = proc.kernel.machine.ram.bytes
        total = sum(length for _, length in segments)
        done = 0
        while pipe.slots and done < total:
            data = pipe.slots[0].peek(ram, total - done)
            try:
                _scatter(proc, segments, done, data)
            except SyscallError:
                if done:
                    return done
                raise
            pipe.consume(data)
            done += len(data)
        return done

    def close(self) -> None:
        self.pipe.close_reader()


class PipeWriteEnd(SinkEnd):
    def __init__(self, pipe: Pipe) -> None:
        super().__init__(pipe.kernel)
        self.pipe = pipe

    def stat(self) -> Stat:
        return self.pipe.stat()

    def poll(self) -> int:
        """Linux's pipe_poll for a write end: writable while a slot is free; an error once no reader is left."""
        return (0 if self.pipe.full() else POLLOUT | POLLWRNORM) | (POLLERR if self.pipe.readers == 0 else 0)

    def poll_channels(self) -> tuple[object, ...]:
        return (self.pipe.writable_channel,)

    def room(self) -> int:
        return 0 if self.pipe.full() else PAGE_SIZE

    def accept(self, segment: Segment) -> None:
        self.pipe.push(segment)

    def sleep_for_room(self, proc: Process) -> None:
        proc.kernel.sleep(proc, self.pipe.writable_channel)

    def check_receiver(self, proc: Process) -> None:
        if self.pipe.readers == 0:
            _kill_by_sigpipe(proc)
            raise SyscallError(errno.EPIPE)

    def write_from_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        """Write the segments' bytes as Linux's pipe_write does (or send their pages, once zerocopy is on).

        Blocking: returns the whole count once everything is in.  Non-blocking:
        what went in (EAGAIN if nothing could).  No reader left: SIGPIPE, EPIPE.
        """
        if self.zerocopy:
            return super().write_from_user(proc, segments)
        pipe = self.pipe
        total = sum(length for _, length in segments)
        if total == 0:
            return 0
        resumed = proc in self.written_before_sleep
        written = self.written_before_sleep.pop(proc, 0)
        self.check_receiver(proc)
        try:
            tail = total % PAGE_SIZE
            if not resumed and tail and tail <= pipe.room_in_last_slot():
                pipe.merge(_gather(proc, segments, 0, tail))
                written = tail
            while written < total and not pipe.full():
                length = min(PAGE_SIZE, total - written)
                pipe.push(Segment(COPY, length, data=bytearray(_gather(proc, segments, written, length))))
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
        self.written_before_sleep[proc] = written
        self.sleep_for_room(proc)
        return 0

    def close(self) -> None:
        self.pipe.close_writer()


def _gather(proc: Process, segments: list[tuple[int, int]], skip: int, length: int) -> bytes:
    """The segments' bytes [skip, skip + length), copied in from user memory (and counted)."""
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
    proc.kernel.recorder.event("sink", "copy", bytes=len(out))
    return bytes(out)


def _scatter(proc: Process, segments: list[tuple[int, int]], skip: int, data: bytes) -> None:
    """Copy `data` out to the segments' bytes [skip, skip + len(data))."""
    for base, size in segments:
        if skip >= size:
            skip -= size
            continue
        n = min(size - skip, len(data))
        copyout(proc, base + skip, data[:n])
        data = data[n:]
        skip = 0
        if not data:
            return


def _kill_by_sigpipe(proc: Process) -> None:
    """The writing thread's SIGPIPE: by default it ends the process; with a handler, the write gives EPIPE."""
    proc.kernel.send_signal(proc, signals.SIGPIPE, "write to a pipe with no reader", thread=True)


def open_pipe(kernel: Kernel, nonblocking: bool) -> tuple[PipeReadEnd, PipeWriteEnd]:
    pipe = Pipe(kernel)
    ends = PipeReadEnd(pipe), PipeWriteEnd(pipe)
    for end in ends:
        end.nonblocking = nonblocking
    return ends
