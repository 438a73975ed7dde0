"""The wire: a device like a socket to a slow peer (open "/dev/wire").

The peer takes `rate` bytes per 1000 instructions of virtual time, so what
a program sends stays in flight, held by the kernel, for a while: long
enough for a copy-on-write send to be written to, or a vmsplice promise to
be broken.  At most `capacity` bytes are in flight; a sender that finds no
room sleeps until half of it is free again (as a socket's writer waits for
its send buffer to drain).

The wire moves on whenever the kernel is entered (`advance`), and when
every process waits the kernel lets idle time pass up to the moment the
next segment is taken.  Closed with bytes in flight, it keeps delivering
(a graceful close); the kernel runs until every wire is empty.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from kernel.sink import Segment, SinkEnd

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.proc import Process

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
        self.last = kernel.machine.now    # virtual time up to which the peer has taken its share
        self.carry = 0                # the peer's share not yet worth a whole byte, in thousandths
        self.channel = ("wire-room", id(self))

    def room(self) -> int:
        return self.capacity - self.in_flight

    def accept(self, segment: Segment) -> None:
        if not self.queue:
            self.last, self.carry = self.kernel.machine.now, 0    # the wire was idle: delivery starts now
        self.queue.append(segment)
        self.in_flight += segment.length

    def sleep_for_room(self, proc: Process) -> None:
        self.kernel.sleep(proc, self.channel)

    def advance(self, now: int) -> None:
        """Let the peer take what it could by virtual time `now`."""
        if not self.queue or now <= self.last:     # (a faulting instruction is taken back off the clock)
            return
        share, self.carry = divmod((now - self.last) * self.rate + self.carry, 1000)
        self.last = now
        ram, recorder = self.kernel.machine.ram.bytes, self.kernel.recorder
        while share and self.queue:
            segment = self.queue[0]
            data = segment.peek(ram, share)
            segment.taken(data, recorder)
            share -= len(data)
            self.in_flight -= len(data)
            if segment.unread == 0:
                self.queue.popleft()
                segment.release(self.kernel.allocator)
        if not self.queue:
            self.carry = 0
        if self.room() >= self.capacity // 2:
            self.kernel.wakeup(self.channel)

    def time_to_next_segment(self) -> int:
        """Instructions of virtual time until the peer has taken the segment at the head."""
        needed = self.queue[0].unread * 1000 - self.carry
        return max(1, -(-needed // self.rate))
