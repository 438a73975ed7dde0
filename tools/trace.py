"""Fault traces: every event the recorder sees, one JSON object per line.

The first line is a header saying what was run and how; each further line is
one event with its virtual time `t` (on the CPU it happened on), that
`cpu`, the `pid` the kernel was working for, its `type` and `kind`, and the fields of that kind
(docs/trace-format.md).  Nothing depends on the host's clock, so the same
program and options give a byte-identical trace.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import IO, Any

import orjson
from vmgames.kernel.vmmeter import record
from vmgames.tools._tracewriter import LineWriter
from vmgames.tools.costmodel import Costs

FORMAT = "vmgames-trace"
VERSION = 3   # 2 added the map events; 3 the cpu of every event, and the shootdown events
EVENT_TYPES = ("fault", "tlb", "pte", "page", "pageout", "swap", "object", "sink", "syscall", "proc", "map")


def header(program: str, arguments: list[str], options: dict[str, Any], ram: int) -> dict[str, Any]:
    """The first line; it carries the cost model's default prices, so a trace can be priced as the experiment does."""
    try:
        version = metadata.version("vmgames")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"format": FORMAT, "version": VERSION, "vmgames": version, "program": program,
            "arguments": arguments, "options": options, "ram": ram,
            "cost_model": dataclasses.asdict(Costs())}


def writer(stream: IO[bytes], first_line: dict[str, Any], types: set[str] | None = None) -> LineWriter:
    """A recorder sink that writes `first_line`, then the events of the chosen types, to a binary stream.

    The sink is the C LineWriter: a traced run calls it for every event, and
    building each event's dict in Python for orjson cost a third of the run
    again.  It buffers a megabyte of lines: call its flush() before the stream
    is closed.  A write that fails (a full disk) does not stop the run: the
    events after it are dropped, and flush() raises the error.
    """
    stream.write(orjson.dumps(first_line, option=orjson.OPT_APPEND_NEWLINE))
    return LineWriter(stream.write, _encode, frozenset(types) if types is not None else None)


def _encode(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> bytes:
    """One event's line, for the values the C writer leaves to orjson (floats, ints past 64 bits, odd strings)."""
    event = record(t, cpu, pid, type_, kind, fields)
    try:
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        # A guest's path or argv that is not UTF-8 (kept as surrogate escapes): its bytes written as \\xNN.
        return orjson.dumps(_readable(event), option=orjson.OPT_APPEND_NEWLINE)


def _readable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_readable(item) for item in value]
    return value
