"""The trace format's schema (version 3), and a validator for one line.

docs/trace-format.md explains each field; this is the same table in a form a
program can check, so that the documentation and real traces cannot drift
apart unnoticed (tests/test_trace.py validates every line of real traces).
"""

from __future__ import annotations

from typing import Any

from vmgames.kernel import syscall
from vmgames.kernel.vm import fault, shootdown

INT, STR, BOOL, NONE = int, str, bool, type(None)
INT_LIST = "list of int"
MAP_ENTRIES = "list of map entries"

HEADER = {"format": STR, "version": INT, "vmgames": STR, "program": STR, "arguments": "list of str",
          "options": dict, "ram": INT, "cost_model": (dict, NONE)}
COMMON = {"t": INT, "cpu": INT, "pid": INT, "type": STR, "kind": STR}

_FAULT = {"address": INT, "access": STR, "error_code": INT, "rip": (INT, NONE), "reason": (STR, NONE),
          "object": (INT, NONE), "level": (INT, NONE), "depth": (INT, NONE), "frame": (INT, NONE)}
_SYSCALL = {"args": INT_LIST, "result": (INT, NONE), "blocked": BOOL}
# One row of procstat -v (tools/procstat.py).
MAP_ENTRY = {"start": INT, "end": INT, "protection": STR, "resident": INT, "swapped": INT, "ref": INT,
             "shadow": INT, "flags": STR, "object_type": STR, "path": (STR, NONE)}
_MAP = {"process": INT, "entries": MAP_ENTRIES}

# (type, kind) -> fields.  Syscall kinds are the syscall's name.
KINDS: dict[tuple[str, str], dict[str, Any]] = {
    **{("fault", kind): _FAULT for kind in fault.KINDS},
    ("tlb", "invalidate-page"): {"address": INT, "reason": STR},
    ("tlb", "invalidate-all"): {"reason": STR},
    ("tlb", "shootdown"): {"targets": INT, "pages": (INT, NONE), "reason": STR},
    **{("tlb", kind): {"sender": INT, "pages": (INT, NONE), "reason": STR}
       for kind in (shootdown.IPI_INVLPG, shootdown.IPI_INVLRNG, shootdown.IPI_INVLTLB)},
    ("pte", "write"): {"address": INT, "old": INT, "new": INT, "reason": STR},
    ("pte", "table"): {"address": INT, "level": INT, "new": INT},
    ("page", "alloc"): {"frame": INT},
    ("page", "zero"): {"frame": INT},
    ("page", "zero-idle"): {"frame": INT},     # zeroed into the pre-zeroed pool while every CPU idled
    ("page", "prezeroed"): {"frame": INT},     # a zero-fill fault took a page of that pool
    ("page", "free"): {"frame": INT},
    ("page", "copy"): {"frame": INT, "source": INT, "reason": STR},
    ("page", "orphan"): {"frame": INT},
    ("page", "pagein"): {"frame": INT, "object": INT, "pindex": INT},
    ("page", "move"): {"frame": INT, "source_object": INT, "object": INT, "reason": STR},
    ("page", "dead"): {"frame": INT, "object": INT, "pindex": INT},
    ("page", "reuse"): {"frame": INT, "object": INT, "pindex": INT},   # the oldest cache page, taken from its object
    ("page", "reactivate"): {"frame": INT},    # a fault took back a page from the inactive or cache queue
    ("page", "deactivate"): {"frame": INT},    # the pageout daemon unmapped a dirty candidate: inactive queue
    ("page", "cache"): {"frame": INT},         # a clean candidate: cache queue
    ("page", "launder"): {"frame": INT},       # a dirty candidate written to swap: from the inactive to the cache queue
    ("pageout", "wakeup"): {"shortage": INT, "blocked": BOOL, "active": INT, "inactive": INT, "cache": INT,
                            "wired": INT, "free": INT, "swap_used": INT},
    ("pageout", "scan"): {"frame": INT, "act_count": INT, "references": INT},
    ("pageout", "free"): {"frame": INT},
    ("pageout", "drop-tables"): {"tables": INT},
    ("pageout", "unmap"): {"frame": INT, "mappings": INT, "probes": INT},
    ("swap", "write"): {"block": INT, "pages": INT},
    ("swap", "out"): {"frame": INT, "object": INT, "pindex": INT, "block": INT},
    ("swap", "in"): {"frame": INT, "object": INT, "pindex": INT, "block": INT},
    ("swap", "free"): {"object": INT, "pindex": INT, "block": INT, "reason": STR},
    ("swap", "dead"): {"object": INT, "pindex": INT, "block": INT},
    ("object", "create"): {"object": INT, "object_type": STR, "size": INT, "path": (STR, NONE)},
    ("object", "shadow"): {"object": INT, "backing": INT, "offset": INT},
    ("object", "collapse"): {"object": INT, "backing": INT, "moved": INT, "freed": INT},
    ("object", "bypass"): {"object": INT, "backing": INT},
    ("object", "terminate"): {"object": INT, "pages": INT},
    ("sink", "copy"): {"bytes": INT},
    ("sink", "hold"): {"frame": INT, "address": INT},
    ("sink", "lend"): {"frame": INT, "address": INT},
    ("sink", "release"): {"frame": INT},
    ("sink", "deliver"): {"bytes": INT},
    ("sink", "corrupt"): {"bytes": INT},
    ("sink", "complete"): {"id": INT},
    ("proc", "spawn"): {"child": INT, "path": STR},
    ("proc", "exec"): {"path": STR, "argv": "list of str"},
    ("proc", "fork"): {"child": INT},
    ("proc", "vfork"): {"child": INT},
    ("proc", "thread"): {"child": INT},
    ("proc", "exit"): {"code": INT, "signal": INT},
    ("proc", "thread-exit"): {"code": INT},
    ("proc", "signal"): {"target": INT, "signal": INT, "reason": STR},
    ("proc", "oom-kill"): {"target": INT, "resident": INT, "swapped": INT},
    ("proc", "handler"): {"signal": INT},
    ("proc", "fault-handler"): {"signal": INT},
    ("map", "exit"): _MAP,       # a process's map just before it exits
    ("map", "snapshot"): _MAP,   # every live process's map at --snapshot-at
}


def _matches(value: Any, expected: Any) -> bool:
    if expected == INT_LIST:
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if expected == "list of str":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected == MAP_ENTRIES:
        return isinstance(value, list) and all(isinstance(v, dict) and not _check(v, MAP_ENTRY) for v in value)
    options = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and BOOL not in options:
        return False
    return isinstance(value, options)


def _check(record: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    problems = [f"missing field {name!r}" for name in fields if name not in record]
    problems += [f"field {name!r} has the wrong type ({type(record[name]).__name__})"
                 for name, expected in fields.items() if name in record and not _matches(record[name], expected)]
    problems += [f"unknown field {name!r}" for name in record if name not in fields]
    return problems


def validate_header(record: dict[str, Any]) -> list[str]:
    return _check(record, HEADER)


def _exact_types(expected: Any) -> tuple[type, ...]:
    """The exact Python types a field may have, for the fast path (lists excluded)."""
    options = expected if isinstance(expected, tuple) else (expected,)
    return tuple(options)


_LIST_ELEMENT = {INT_LIST: int, "list of str": str}

# For each (type, kind): every field of the line (common ones included) with its exact types,
# or, for a list field, the type of its elements.  Map events, rare and nested, take the slow path.
_FAST = {key: {**{k: _exact_types(t) for k, t in COMMON.items()},
               **{k: _LIST_ELEMENT[t] if isinstance(t, str) else _exact_types(t) for k, t in fields.items()}}
         for key, fields in KINDS.items() if MAP_ENTRIES not in fields.values()}


def _fast_ok(record: dict[str, Any], fields: dict[str, Any]) -> bool:
    if record.keys() != fields.keys():
        return False
    for name, types in fields.items():
        value = record[name]
        if isinstance(types, type):
            if type(value) is not list or any(type(v) is not types for v in value):
                return False
        elif type(value) not in types:
            return False
    return True


def validate_event(record: dict[str, Any]) -> list[str]:
    """What is wrong with one event line (an empty list if nothing)."""
    fields = _FAST.get((record.get("type"), record.get("kind")))
    if fields is not None and _fast_ok(record, fields):
        return []
    problems = _check({k: record[k] for k in COMMON if k in record}, COMMON)
    if problems:
        return problems
    type_, kind = record["type"], record["kind"]
    if type_ == "syscall":
        fields = _SYSCALL if syscall.implemented(kind) else dict(_SYSCALL, number=INT)
    elif (type_, kind) in KINDS:
        fields = KINDS[(type_, kind)]
    else:
        return [f"unknown event {type_}/{kind}"]
    return _check({k: v for k, v in record.items() if k not in COMMON}, fields)
