"""A trace in the Chrome trace-event format, which ui.perfetto.dev and
chrome://tracing open ("Trace Event Format", Google, the JSON object form).

One track per process; a slice per syscall (from its first attempt to its
completion, so a call that blocked shows how long it waited); instant events
for faults and TLB invalidations; counters for the frames in use and the
shadow-chain depth of each fault.  Virtual time is instructions retired,
shown at one instruction per nanosecond (timestamps are in microseconds).
"""

from __future__ import annotations

import json
from typing import IO, Any

from tools.report import summarise_events

KERNEL_PID = 0


def _us(t: int) -> float:
    return t / 1000


def convert(path: str, out: IO[str]) -> int:
    """Write the Chrome-format file for the trace at `path`; returns how many trace events it holds."""
    events: list[dict[str, Any]] = []
    named: set[int] = set()
    waiting: dict[int, int] = {}        # pid -> when its blocked syscall was first made
    frames = 0

    def name_process(pid: int, name: str) -> None:
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}})
        named.add(pid)

    name_process(KERNEL_PID, "kernel")
    for event in summarise_events(path):
        t, pid, type_, kind = event["t"], event["pid"], event["type"], event["kind"]
        if pid not in named:
            name_process(pid, f"pid {pid}")
        if type_ == "proc" and kind in ("spawn", "exec"):
            who = event["child"] if kind == "spawn" else pid
            name_process(who, f"{event['path'].rsplit('/', 1)[-1]} [{who}]")
        elif type_ == "proc" and kind == "fork":
            name_process(event["child"], f"pid {event['child']}")
        elif type_ == "syscall":
            if event["blocked"]:
                waiting.setdefault(pid, t)
                continue
            start = waiting.pop(pid, t)
            events.append({"name": kind, "cat": "syscall", "ph": "X", "ts": _us(start), "dur": _us(t - start),
                           "pid": pid, "tid": pid, "args": {"args": event["args"], "result": event["result"]}})
        elif type_ == "fault":
            events.append({"name": f"fault: {kind}", "cat": "fault", "ph": "i", "s": "t", "ts": _us(t),
                           "pid": pid, "tid": pid,
                           "args": {k: event[k] for k in ("address", "access", "rip", "object", "level", "depth")}})
            if event["depth"]:
                events.append({"name": "chain depth", "ph": "C", "ts": _us(t), "pid": pid, "tid": pid,
                               "args": {"depth": event["depth"]}})
        elif type_ == "tlb":
            events.append({"name": f"tlb: {kind}", "cat": "tlb", "ph": "i", "s": "t", "ts": _us(t), "pid": pid,
                           "tid": pid, "args": {"reason": event["reason"], "address": event.get("address")}})
        elif type_ == "page" and kind in ("alloc", "free"):
            frames += 1 if kind == "alloc" else -1
            events.append({"name": "frames in use", "ph": "C", "ts": _us(t), "pid": KERNEL_PID, "tid": KERNEL_PID,
                           "args": {"frames": frames}})
    json.dump({"traceEvents": events, "displayTimeUnit": "ns"}, out)
    return len(events)
