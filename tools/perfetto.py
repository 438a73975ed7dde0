"""A trace in the Chrome trace-event format, which ui.perfetto.dev and
chrome://tracing open ("Trace Event Format", Google, the JSON object form).

One track per process; a slice per syscall (from its first attempt to its
completion, so a call that blocked shows how long it waited); instant events
for faults and TLB invalidations; counters for the frames in use and the
shadow-chain depth of each fault.  Virtual time is instructions retired,
shown at one instruction per nanosecond (timestamps are in microseconds).

The output is written event by event as the trace is read, so a trace of
millions of events converts in the memory of a small one: the object's
"traceEvents" array comes first and is written in pieces.  Each process is
named before its first event, and counters follow virtual time, as the
trace does.
"""

from __future__ import annotations

from typing import IO, Any

import orjson

from tools.report import summarise_events

KERNEL_PID = 0


def _us(t: int) -> float:
    return t / 1000


def convert(path: str, out: IO[bytes], progress: Any = None) -> int:
    """Write the Chrome-format file for the trace at `path` to a binary stream; returns how many trace events
    it holds.  `progress(bytes_read)` is called now and then if given."""
    named: set[int] = set()
    waiting: dict[int, int] = {}        # pid -> when its blocked syscall was first made
    frames = 0
    count = 0
    write, dumps = out.write, orjson.dumps

    def emit(event: dict[str, Any]) -> None:
        nonlocal count
        write(b",\n" + dumps(event) if count else dumps(event))
        count += 1

    def name_process(pid: int, name: str) -> None:
        emit({"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}})
        named.add(pid)

    write(b'{"traceEvents":[\n')
    name_process(KERNEL_PID, "kernel")
    for event in summarise_events(path, progress):
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
            emit({"name": kind, "cat": "syscall", "ph": "X", "ts": _us(start), "dur": _us(t - start),
                  "pid": pid, "tid": pid, "args": {"args": event["args"], "result": event["result"]}})
        elif type_ == "fault":
            emit({"name": f"fault: {kind}", "cat": "fault", "ph": "i", "s": "t", "ts": _us(t), "pid": pid,
                  "tid": pid, "args": {k: event[k] for k in ("address", "access", "rip", "object", "level", "depth")}})
            if event["depth"]:
                emit({"name": "chain depth", "ph": "C", "ts": _us(t), "pid": pid, "tid": pid,
                      "args": {"depth": event["depth"]}})
        elif type_ == "tlb":
            emit({"name": f"tlb: {kind}", "cat": "tlb", "ph": "i", "s": "t", "ts": _us(t), "pid": pid,
                  "tid": pid, "args": {"reason": event["reason"], "address": event.get("address")}})
        elif type_ == "page" and kind in ("alloc", "free"):
            frames += 1 if kind == "alloc" else -1
            emit({"name": "frames in use", "ph": "C", "ts": _us(t), "pid": KERNEL_PID, "tid": KERNEL_PID,
                  "args": {"frames": frames}})
    write(b'\n],"displayTimeUnit":"ns"}\n')
    return count
