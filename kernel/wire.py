"""The wire: a device like a socket to a slow peer (open "/dev/wire").

The peer takes `rate` bytes per 1000 instructions of virtual time, so what
a program sends stays in flight, held by the kernel, for a while: long
enough for a copy-on-write send to be written to, or a vmsplice promise to
be broken.  Segments go out one after the other, and the peer takes each one
whole at the moment its last byte has gone (as a network card reads a page
by DMA): the page's contents at that moment are what the peer gets.  The
kernel stops the CPU at that exact virtual time to deliver it (`busy_until`),
and when every process waits it lets idle time pass up to it.

At most `capacity` bytes are in flight; a sender that finds no room sleeps
until half of it is free again (as a socket's writer waits for its send
buffer to drain).  Closed with bytes in flight, the wire keeps delivering (a
graceful close); the kernel runs until every wire is empty.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel.file import POLLOUT, POLLWRNORM
from vmgames.kernel.fs import Stat
from vmgames.kernel.sink import Segment, SinkEnd

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

WIRE_PATH = "/dev/wire"
DEFAULT_WIRE_RATE = 4096          # bytes per 1000 instructions: a page per microsecond at 1 instruction/ns
DEFAULT_WIRE_CAPACITY = 256 << 10


class Wire(SinkEnd):
    """A wire descriptor's open file: the queue of segments the peer has not taken yet."""

    def __init__(self, kernel: Kernel, rate: int, capacity: int) -> None:
        super().__init__(kernel)
        self.rate = rate
        self.capacity = capacity
        self.queue: deque[Segment] = deque()
        self.in_flight = 0            # bytes sent, not yet taken by the peer
        self.busy_until = 0           # when the segment at the head will have gone
        self.channel = ("wire-room", id(self))

    def room(self) -> int:
        return self.capacity - self.in_flight

    def stat(self) -> Stat:
        """A character device (vmgames' own, like a socket to the peer), the caller's, write-only."""
        uid, gid = self.kernel.credentials
        return Stat(0o020200, 0, 0, 1, uid, gid, 0, 0, PAGE_SIZE, 0, 0, 0, 0)

    def poll(self) -> int:
        """Writable when a sleeping sender would be woken: half the wire is free."""
        return POLLOUT | POLLWRNORM if self.room() >= self.capacity // 2 else 0

    def poll_channels(self) -> tuple[object, ...]:
        return (self.channel,)

    def accept(self, segment: Segment) -> None:
        if not self.queue:
            self.busy_until = self.kernel.machine.now + self._duration(segment)   # the wire was idle
        self.queue.append(segment)
        self.in_flight += segment.length

    def _duration(self, segment: Segment) -> int:
        """Instructions of virtual time the segment takes to go out."""
        return max(1, -(-segment.length * 1000 // self.rate))

    def sleep_for_room(self, proc: Process) -> None:
        self.kernel.sleep(proc, self.channel)

    def deadline(self) -> int | None:
        """The callout queue's question: when the segment at the head will have gone."""
        return self.busy_until if self.queue else None

    def finished(self) -> bool:
        """Closed and drained: nothing will ever be due again."""
        return not self.references and not self.queue

    def advance(self, now: int) -> None:
        """Deliver every segment that has gone out by virtual time `now`."""
        ram, recorder = self.kernel.machine.ram.bytes, self.kernel.recorder
        while self.queue and self.busy_until <= now:
            segment = self.queue.popleft()
            segment.taken(segment.peek(ram, segment.length), recorder)
            segment.release(self.kernel.allocator)
            self.in_flight -= segment.length
            if self.queue:
                self.busy_until += self._duration(self.queue[0])
        if self.room() >= self.capacity // 2:
            self.kernel.wakeup(self.channel)
