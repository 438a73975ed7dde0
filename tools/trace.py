"""Fault traces: every event the recorder sees, one JSON object per line.

The first line is a header saying what was run and how; each further line is
one event with its virtual time `t` (instructions retired), the `pid` the
kernel was working for, its `type` and `kind`, and the fields of that kind
(docs/trace-format.md).  Nothing depends on the host's clock, so the same
program and options give a byte-identical trace.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import IO, Any

import orjson

from emulator.recorder import TraceSink
from tools.costmodel import Costs

FORMAT = "vmgames-trace"
VERSION = 2   # 2 added the map events
BUFFER_SIZE = 1 << 20   # open trace files with this buffer: 8 KiB ones cost a write call every ~80 events
EVENT_TYPES = ("fault", "tlb", "pte", "page", "object", "sink", "syscall", "proc", "map")


def header(program: str, arguments: list[str], options: dict[str, Any], ram: int) -> dict[str, Any]:
    """The first line; it carries the cost model's default prices, so a trace can be priced as the experiment does."""
    try:
        version = metadata.version("vmgames")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"format": FORMAT, "version": VERSION, "vmgames": version, "program": program,
            "arguments": arguments, "options": options, "ram": ram,
            "cost_model": dataclasses.asdict(Costs())}


def writer(stream: IO[bytes], first_line: dict[str, Any], types: set[str] | None = None) -> TraceSink:
    """A recorder sink that writes `first_line`, then the events of the chosen types, to a binary stream.

    It is called once per event, hundreds of thousands of times in a run, so
    it is a plain function (half the cost of calling an object) and orjson
    serializes (about 15 times faster than the json module).
    """
    write, dumps, newline = stream.write, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    write(dumps(first_line, option=newline))
    if types is None:
        def sink(event: dict[str, Any]) -> None:
            write(dumps(event, option=newline))
    else:
        def sink(event: dict[str, Any]) -> None:
            if event["type"] in types:
                write(dumps(event, option=newline))
    return sink
