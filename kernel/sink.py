"""What a sink (a wire or a pipe) holds in flight, and the three ways to send.

The 2006 argument between Linus Torvalds and the FreeBSD camp was about how
a user's buffer gets to a device that takes its time:
- copy: `write` copies the bytes into a kernel buffer at call time;
- cow: FreeBSD's zero-copy sockets: a page-aligned, page-sized part of the
  buffer is sent by holding the user's page and write-protecting every
  mapping of it; a write while the page is in flight faults and copies it
  (kernel/vm/fault.py), and write permission comes back lazily afterwards;
- lend: `vmsplice` lends the pages as they are; the user promised not to
  write to them until the receiver has taken them, and the receiver gets
  whatever the page holds when it takes it.

Every sink keeps what the sender's buffer held at send time (`intended`: the
experiment's bookkeeping, not counted as a copy), so that the bytes the
receiver gets can be checked: a broken vmsplice promise shows up as corrupt
bytes.  vmsplice calls are numbered per open file, and a call whose pages
have all been taken completes, as MSG_ZEROCOPY's sends do on Linux.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import O_WRONLY, OpenFile
from vmgames.kernel.uaccess import copyin, user_page
from vmgames.kernel.vm.pmap import remove_write

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process
    from vmgames.kernel.vm.page import PageAllocator, VMPage
    from vmgames.kernel.vmmeter import Recorder

COPY, COW, LEND = "copy", "cow", "lend"


class Completions:
    """The vmsplice calls of one open file that have been sent, and those whose pages were all taken."""

    def __init__(self, recorder: Recorder, wakeup: Callable[[object], None]) -> None:
        self.recorder = recorder
        self.next_id = 0
        self.outstanding = 0          # calls sent whose pages are not all taken yet
        self.ready: list[int] = []    # completed ids not reaped yet, oldest first
        self.channel = ("zerocopy-completion", id(self))
        self._wakeup = wakeup

    def ticket(self) -> Ticket:
        return Ticket(self)

    def complete(self, ticket: Ticket) -> None:
        self.outstanding -= 1
        self.ready.append(ticket.id)
        self.recorder.event("sink", "complete", id=ticket.id)
        self._wakeup(self.channel)

    def ranges(self, most: int) -> tuple[list[tuple[int, int]], int]:
        """Up to `most` ranges (lo, hi) of completed ids, consecutive ids merged, oldest first; and how many ids."""
        ranges: list[tuple[int, int]] = []
        taken = 0
        for sequence in self.ready:
            if ranges and sequence == (ranges[-1][1] + 1) & 0xFFFF_FFFF:
                ranges[-1] = (ranges[-1][0], sequence)
            elif len(ranges) == most:
                break
            else:
                ranges.append((sequence, sequence))
            taken += 1
        return ranges, taken


class Ticket:
    """One vmsplice call: it completes once it is sent and its last page is taken."""

    def __init__(self, completions: Completions) -> None:
        self.completions = completions
        self.id: int | None = None    # numbered on its first page: a call that sent nothing uses no id
        self.pending = 0              # pages in flight
        self.sealed = False           # the call has returned

    def add(self) -> None:
        if self.id is None:
            completions = self.completions
            self.id = completions.next_id
            completions.next_id = (completions.next_id + 1) & 0xFFFF_FFFF
            completions.outstanding += 1
        self.pending += 1

    def seal(self) -> None:
        self.sealed = True
        if self.id is not None and self.pending == 0:
            self.completions.complete(self)

    def taken(self) -> None:
        self.pending -= 1
        if self.sealed and self.pending == 0:
            self.completions.complete(self)


class Segment:
    """Bytes in flight: the kernel's own copy, or part of a user page the sink holds."""

    __slots__ = ("mode", "data", "page", "start", "length", "offset", "intended", "ticket")

    def __init__(self, mode: str, length: int, data: bytearray | None = None, page: VMPage | None = None,
                 start: int = 0, intended: bytes = b"", ticket: Ticket | None = None) -> None:
        self.mode = mode
        self.length = length
        self.data = data
        self.page = page
        self.start = start        # offset of the bytes in `page`
        self.offset = 0           # bytes taken by the receiver so far
        self.intended = intended
        self.ticket = ticket

    @property
    def unread(self) -> int:
        return self.length - self.offset

    def peek(self, ram: memoryview, length: int) -> bytes:
        """The next `length` bytes (at most) as the receiver would get them now."""
        n = min(length, self.unread)
        if self.data is not None:
            return bytes(self.data[self.offset:self.offset + n])
        at = self.page.paddr + self.start + self.offset
        return bytes(ram[at:at + n])

    def taken(self, data: bytes, recorder: Recorder) -> None:
        """The receiver took `data`, the next bytes: check them against what was meant."""
        if self.data is None:
            meant = self.intended[self.offset:self.offset + len(data)]
            if data != meant:
                recorder.event("sink", "corrupt", bytes=sum(a != b for a, b in zip(data, meant, strict=True)))
        self.offset += len(data)
        recorder.event("sink", "deliver", bytes=len(data))

    def release(self, allocator: PageAllocator) -> None:
        """The sink is done with this segment (taken, or dropped)."""
        if self.page is not None:
            allocator.unhold(self.page, cow=self.mode == COW)
            allocator.recorder.event("sink", "release", frame=self.page.frame)
            self.page = None
        if self.ticket is not None:
            self.ticket.taken()
            self.ticket = None


def make_segment(proc: Process, va: int, length: int, mode: str, ticket: Ticket | None) -> Segment:
    """Take [va, va+length) (within one page for cow and lend) from the user, the way `mode` says."""
    kernel = proc.kernel
    recorder = kernel.recorder
    whole_page = length == PAGE_SIZE and va % PAGE_SIZE == 0
    if mode == COPY or (mode == COW and not whole_page):
        data = bytearray(copyin(proc, va, length))
        recorder.event("sink", "copy", bytes=length)
        return Segment(COPY, length, data=data)
    page = user_page(proc, va)
    start = va % PAGE_SIZE
    kernel.allocator.hold(page, cow=mode == COW)
    if mode == COW:
        remove_write(page, "cow-send")
    intended = bytes(kernel.machine.ram.bytes[page.paddr + start:page.paddr + start + length])
    recorder.event("sink", "hold" if mode == COW else "lend", frame=page.frame, address=va)
    if ticket is not None:
        ticket.add()
    return Segment(mode, length, page=page, start=start, intended=intended, ticket=ticket)


def pieces(segments: list[tuple[int, int]], skip: int, per_page: bool) -> Iterator[tuple[int, int]]:
    """The user's bytes from stream offset `skip` on, as (address, length): split at page ends if `per_page`."""
    for base, size in segments:
        if skip >= size:
            skip -= size
            continue
        va, end = base + skip, base + size
        skip = 0
        while va < end:
            n = min(end, (va | (PAGE_SIZE - 1)) + 1) - va if per_page else end - va
            yield va, n
            va += n


class SinkEnd(OpenFile):
    """The sending end of a sink: a wire, or a pipe's write end.

    `room()` says how many bytes it takes now and `accept()` queues a
    segment; `sleep_for_room()` blocks the sender.  `send()` is the common
    loop of write (copy, or cow once `zerocopy` is on) and vmsplice (lend).
    """

    writable = True

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(O_WRONLY)
        self.kernel = kernel
        self.zerocopy = False           # ioctl VMG_ZEROCOPY: write sends pages copy-on-write
        self.completions = Completions(kernel.recorder, kernel.wakeup)
        self.written_before_sleep: dict[Process, int] = {}   # blocked writer -> bytes of its write already in

    @abstractmethod
    def room(self) -> int:
        """Bytes the sink takes now without waiting."""

    @abstractmethod
    def accept(self, segment: Segment) -> None:
        """Take one segment in flight."""

    @abstractmethod
    def sleep_for_room(self, proc: Process) -> None:
        """Put `proc` to sleep until the sink has room."""

    def check_receiver(self, proc: Process) -> None:
        """Raise (EPIPE) if nobody will ever take the bytes."""

    def detach(self, proc: Process) -> None:
        """A sender killed while blocked never makes its call again: forget how far it had got."""
        self.written_before_sleep.pop(proc, None)

    def write_from_user(self, proc: Process, segments: list[tuple[int, int]]) -> int:
        return self.send(proc, segments, COW if self.zerocopy else COPY, blocking=not self.nonblocking)

    def send(self, proc: Process, segments: list[tuple[int, int]], mode: str, blocking: bool,
             partial: bool = False, ticket: Ticket | None = None) -> int:
        """Queue the segments' bytes.

        Blocking, the call waits for room as often as it needs and returns the
        whole count (made again after each wait, it goes on where it was), as
        write does; with `partial` it waits only for some room and returns
        what fitted, as Linux's vmsplice does.  Not blocking: what fitted, or
        EAGAIN.
        """
        total = sum(length for _, length in segments)
        if total == 0:
            return 0
        written = self.written_before_sleep.pop(proc, 0)
        self.check_receiver(proc)
        try:
            while written < total:
                va, length = next(pieces(segments, written, per_page=mode != COPY))
                room = self.room()
                if mode != COPY and room < length:
                    break
                length = min(length, room)
                if length == 0:
                    break
                self.accept(make_segment(proc, va, length, mode, ticket))
                written += length
        except SyscallError:
            if written:
                return written
            raise
        if written == total or (written and (partial or not blocking)):
            return written
        if not blocking:
            raise SyscallError(errno.EAGAIN)
        self.written_before_sleep[proc] = written
        self.sleep_for_room(proc)
        return 0
