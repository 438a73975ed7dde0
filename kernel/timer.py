"""Timed sleeps: a process asleep in a syscall until a virtual time (nanosleep, a futex wait's timeout).

Each sleep with a deadline puts an entry here; the timers are a device on the
callout queue (kernel/callout.py), so the scheduler stops the CPU exactly at
the earliest deadline, or lets idle time pass up to it when every process
sleeps.  A sleep ends either way, whichever comes first: woken by its
channel, or by its timer with the result the sleeper asked for (0 for
nanosleep, -ETIMEDOUT for a futex).  A timer whose sleep ended otherwise is
stale and does nothing: each sleep has its own number (`Process.sleeps`).
Virtual time runs one nanosecond per instruction (kernel/sysproc.py).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process


class Timers:
    """The pending timed sleeps, earliest first; a callout device while any is pending."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._heap: list[tuple[int, int, int, Process, int]] = []   # (deadline, order, sleep number, proc, result)
        self._order = 0

    def add(self, deadline: int, proc: Process, result: int) -> None:
        """End `proc`'s current sleep at `deadline` with `result`, unless it ends before."""
        self._order += 1
        heapq.heappush(self._heap, (deadline, self._order, proc.sleeps, proc, result))
        if self not in self.kernel.callout.devices:
            self.kernel.callout.register(self)

    def deadline(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def advance(self, now: int) -> None:
        from vmgames.kernel.proc import SLEEPING

        while self._heap and self._heap[0][0] <= now:
            _, _, number, proc, result = heapq.heappop(self._heap)
            if proc.state == SLEEPING and proc.sleeps == number:
                self.kernel.wake(proc, result)

    def finished(self) -> bool:
        self._drop_stale()
        return not self._heap

    def _drop_stale(self) -> None:
        """Forget the earliest timers whose sleep has ended: idle time must not run on to them."""
        from vmgames.kernel.proc import SLEEPING

        while self._heap and not (self._heap[0][3].state == SLEEPING and self._heap[0][3].sleeps == self._heap[0][2]):
            heapq.heappop(self._heap)
