"""vmmeter and ktrace: the kernel's one recorder, where everything is counted.

The kernel reports what it does here (a fault, a TLB invalidation it asks
for, a PTE write, a page copy, a syscall, ...), as FreeBSD's vmmeter counts
and its ktrace records.  Counters are kept always, per process; a trace
sink sees the same events when one is attached, so counters and traces
agree by construction.  It stamps each event with the machine's virtual
time through `clock`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

# A sink is called with each event's virtual time, CPU, pid, type, kind and fields, as the recorder has them:
# the trace writer (tools/_tracewriter.c) encodes them without a dict being built for the event.
TraceSink = Callable[[int, int, int, str, str, dict[str, Any]], None]


def record(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An event as one dict, as a trace line has it: for sinks that keep or inspect events."""
    return {"t": t, "cpu": cpu, "pid": pid, "type": type_, "kind": kind, **fields}


class Recorder:
    """Counts events by (pid, CPU, type, kind) and forwards them to an optional sink.

    `pid` is the process on whose behalf the kernel is working and `cpu` the
    CPU it works on; the kernel sets them as it switches.  `clock` gives
    that CPU's virtual time.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int, str, str]] = Counter()   # (pid, cpu, type, kind)
        self.pid = 0
        self.cpu = 0
        self.frames_in_use = 0
        self.frames_peak = 0
        self.fault_depths: Counter[int] = Counter()   # shadow-chain depth seen by each resolved fault
        self.reasons: Counter[tuple[str, str, str]] = Counter()   # (type, kind, reason): TLB invalidations, PTE writes
        self.amounts: Counter[tuple[int, str, str]] = Counter()   # bytes moved by sinks, PTEs probed by pageout
        self.sink: TraceSink | None = None
        self.clock: Callable[[], int] = lambda: 0

    def event(self, type_: str, kind: str, **fields: Any) -> None:
        """Record one event; of its `fields`, the counters read a fault's depth and the reason of a TLB
        invalidation or a PTE write, the trace all of them."""
        self.counts[(self.pid, self.cpu, type_, kind)] += 1
        if type_ == "page":
            if kind == "alloc":
                self.frames_in_use += 1
                if self.frames_in_use > self.frames_peak:
                    self.frames_peak = self.frames_in_use
            elif kind == "free":
                self.frames_in_use -= 1
        elif type_ == "fault" and fields.get("depth"):
            self.fault_depths[fields["depth"]] += 1
        elif type_ == "tlb" or (type_ == "pte" and kind == "write"):
            self.reasons[(type_, kind, fields.get("reason"))] += 1
        elif type_ == "sink":
            self.amounts[(self.pid, type_, kind)] += fields.get("bytes", 0)
        elif type_ == "pageout" and kind == "unmap":
            self.amounts[(self.pid, type_, kind)] += fields["probes"]
        if self.sink is not None:
            self.sink(self.clock(), self.cpu, self.pid, type_, kind, fields)

    def tally(self, type_: str, kind: str, n: int, reason: str | None = None) -> None:
        """Count `n` events at once, none built: for a bulk operation (an exit's PTEs and pages) when nothing is
        traced (`sink` is None), where building each event cost more than the work it records.  The counters
        are those `event` would give for n events of this type and kind (frames for page alloc and free, the
        reason for PTE writes and TLB invalidations)."""
        if self.sink is not None:
            raise RuntimeError("tally() is for untraced runs: a trace needs every event")
        self.counts[(self.pid, self.cpu, type_, kind)] += n
        if type_ == "page" and kind in ("alloc", "free"):
            self.frames_in_use += n if kind == "alloc" else -n
            self.frames_peak = max(self.frames_peak, self.frames_in_use)
        elif type_ == "tlb" or (type_ == "pte" and kind == "write"):
            self.reasons[(type_, kind, reason)] += n

    def count_reason(self, type_: str, kind: str, reason: str) -> int:
        """How many TLB invalidations or PTE writes of a kind were made for a reason."""
        return self.reasons[(type_, kind, reason)]

    def count(self, type_: str, kind: str | None = None, pid: int | None = None) -> int:
        """How many events of a type (and kind, and process, if given) were recorded."""
        return sum(n for (p, _, t, k), n in self.counts.items()
                   if t == type_ and (kind is None or k == kind) and (pid is None or p == pid))

    def amount(self, type_: str, kind: str, pid: int | None = None) -> int:
        """The total of the `bytes` fields of one kind of sink event (bytes copied, delivered, ...), or of the
        `probes` of the pageout daemon's unmappings."""
        return sum(n for (p, t, k), n in self.amounts.items()
                   if t == type_ and k == kind and (pid is None or p == pid))

    def by_kind(self, type_: str, pid: int | None = None) -> dict[str, int]:
        """Counts of one event type by kind, over all processes or one."""
        totals: Counter[str] = Counter()
        for (p, _, t, k), n in self.counts.items():
            if t == type_ and (pid is None or p == pid):
                totals[k] += n
        return dict(sorted(totals.items()))
