"""A trace in the Chrome trace-event format, which ui.perfetto.dev and
chrome://tracing open ("Trace Event Format", Google, the JSON object form).

One track per process, named for the process and its program (`pid 2 fork`;
named again when the process execs another, and the last name is the one
Perfetto shows, so an exec is also an instant event on the track); a slice
per syscall, as long as the call took in virtual time: the recorder writes a
syscall event when the call returns, and once more each time a call goes to
sleep (`blocked`), so a call that blocked is one slice from its first attempt
to its return, and one that never returned (its process was killed, or the
trace ends first) is one slice to then; instant events for faults and
process events; counters for the frames in use and the shadow-chain depth
of each fault, and, each time the pageout daemon wakes, for the page queues'
lengths and the swap blocks in use.  A TLB belongs to a CPU: the TLB events (invalidations,
shootdowns sent, IPIs taken) are instants on a track per CPU, in a "CPUs"
process, each saying which process the kernel was working for, with a
counter of the shootdown IPIs each CPU has taken.  Virtual time is
instructions retired, shown at one instruction per nanosecond (timestamps are
in microseconds).

The output is written event by event as the trace is read, so a trace of
millions of events converts in the memory of a small one: the object's
"traceEvents" array comes first and is written in pieces.  Each process is
named before its first event, and counters follow virtual time, as the
trace does.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import IO, Any

import orjson
from vmgames.tools import vmstat
from vmgames.tools.report import Exits, read_trace

KERNEL_PID = 0
INIT_PID = 1        # the process vmgames run started: the header's program
CPUS_PID = 999_999  # the "CPUs" process: a thread track per CPU, tid CPUS_PID + 1 + n


@dataclass
class Waiting:
    """A syscall that went to sleep and has not returned yet."""

    name: str
    since: int
    args: list[int]
    attempts: int = 1


def _us(t: int) -> float:
    return t / 1000


def convert(path: str, out: IO[bytes], progress: Any = None) -> int:
    """Write the Chrome-format file for the trace at `path` to a binary stream; returns how many trace events
    it holds.  `progress(bytes_read)` is called now and then if given."""
    header, events = read_trace(path, progress)
    programs: dict[int, str] = {}     # pid -> the name of its program, as last given to Perfetto
    cpus: dict[int, int] = {}         # CPU -> shootdown IPIs it has taken
    waiting: dict[int, Waiting] = {}  # pid -> its syscall asleep
    exits = Exits()
    frames = 0
    count = 0
    latest = 0
    write, dumps = out.write, orjson.dumps

    def emit(event: dict[str, Any]) -> None:
        nonlocal count
        write(b",\n" + dumps(event) if count else dumps(event))
        count += 1

    def name_process(pid: int, program: str) -> None:
        """Name (or name again) the process's track and its one thread: `pid 2 fork`."""
        if programs.get(pid) == program:
            return
        programs[pid] = program
        name = "kernel" if pid == KERNEL_PID else f"pid {pid} {program}".rstrip()
        for what in ("process_name", "thread_name"):
            emit({"name": what, "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}})

    def cpu_track(cpu: int) -> int:
        """The tid of CPU `cpu`'s track, named before its first event."""
        if cpu not in cpus:
            cpus[cpu] = 0
            if len(cpus) == 1:
                emit({"name": "process_name", "ph": "M", "pid": CPUS_PID, "tid": CPUS_PID, "args": {"name": "CPUs"}})
            emit({"name": "thread_name", "ph": "M", "pid": CPUS_PID, "tid": CPUS_PID + 1 + cpu,
                  "args": {"name": f"cpu {cpu}"}})
        return CPUS_PID + 1 + cpu

    def syscall_slice(pid: int, call: Waiting, end: int, result: Any, returned: bool) -> None:
        emit({"name": call.name, "cat": "syscall", "ph": "X", "ts": _us(call.since), "dur": _us(end - call.since),
              "pid": pid, "tid": pid, "args": {"args": call.args, "result": result, "attempts": call.attempts,
                                               "returned": returned}})

    write(b'{"traceEvents":[\n')
    name_process(KERNEL_PID, "")
    for event in events:
        t, pid, type_, kind = event["t"], event["pid"], event["type"], event["kind"]
        latest = t
        if type_ == "proc" and kind == "exec":
            name_process(pid, posixpath.basename(event["path"]))
        elif pid not in programs:
            name_process(pid, posixpath.basename(header["program"]) if pid == INIT_PID else "")
        if type_ == "proc":
            exited = exits.exited(event)
            on = exited if exited is not None else event.get("target", pid)     # the process it happened to
            if kind == "spawn":
                name_process(event["child"], posixpath.basename(event["path"]))
            elif kind in ("fork", "vfork", "thread"):
                name_process(event["child"], programs[pid])
            elif kind == "exit" and on in waiting:      # it died asleep in a syscall
                syscall_slice(on, waiting.pop(on), t, None, returned=False)
            emit({"name": f"proc: {kind}", "cat": "proc", "ph": "i", "s": "t", "ts": _us(t), "pid": on, "tid": on,
                  "args": {k: v for k, v in event.items() if k not in ("t", "pid", "type", "kind")}})
        elif type_ == "syscall":
            call = waiting.pop(pid, None)
            if call is not None and call.name != kind:
                syscall_slice(pid, call, t, None, returned=False)
            if call is None or call.name != kind:
                call = Waiting(kind, t, event["args"], attempts=0)
            call.attempts += 1
            if event["blocked"]:
                waiting[pid] = call
            else:
                syscall_slice(pid, call, t, event["result"], returned=True)
        elif type_ == "fault":
            emit({"name": f"fault: {kind}", "cat": "fault", "ph": "i", "s": "t", "ts": _us(t), "pid": pid,
                  "tid": pid, "args": {k: event[k] for k in ("address", "access", "rip", "object", "level", "depth")}})
            if event["depth"]:
                emit({"name": "chain depth", "ph": "C", "ts": _us(t), "pid": pid, "tid": pid,
                      "args": {"depth": event["depth"]}})
        elif type_ == "tlb":
            cpu = event["cpu"]
            emit({"name": f"tlb: {kind}", "cat": "tlb", "ph": "i", "s": "t", "ts": _us(t), "pid": CPUS_PID,
                  "tid": cpu_track(cpu), "args": {k: v for k, v in event.items() if k not in ("t", "type", "kind")}})
            if kind in vmstat.IPI_KINDS:
                cpus[cpu] += 1
                emit({"name": f"cpu {cpu} IPIs taken", "ph": "C", "ts": _us(t), "pid": CPUS_PID,
                      "args": {"IPIs": cpus[cpu]}})
        elif type_ == "pageout" and kind == "wakeup":
            emit({"name": "page queues", "ph": "C", "ts": _us(t), "pid": KERNEL_PID, "tid": KERNEL_PID,
                  "args": {name: event[name] for name in ("active", "inactive", "cache", "wired", "free")}})
            emit({"name": "swap blocks used", "ph": "C", "ts": _us(t), "pid": KERNEL_PID, "tid": KERNEL_PID,
                  "args": {"blocks": event["swap_used"]}})
        elif type_ == "page" and kind in ("alloc", "free"):
            frames += 1 if kind == "alloc" else -1
            emit({"name": "frames in use", "ph": "C", "ts": _us(t), "pid": KERNEL_PID, "tid": KERNEL_PID,
                  "args": {"frames": frames}})
    for pid, call in sorted(waiting.items()):     # asleep when the trace ends
        syscall_slice(pid, call, latest, None, returned=False)
    write(b'\n],"displayTimeUnit":"ns"}\n')
    return count
