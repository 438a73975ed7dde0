"""Traces: every line valid, counts equal to the counters, byte-identical across runs."""

import json
import os
from collections import Counter

from vmgames.kernel.kernel import DEFAULT_MAX_PROCESSES
from vmgames.kernel.sched import DEFAULT_INTERLEAVE, DEFAULT_QUANTUM
from vmgames.kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE
from vmgames.tools import trace_schema
from vmgames.tools.cli import main
from vmgames.tools.costmodel import Costs

from tests.programs import EXIT_0, FORK, FORK_AND_WRITE, WAIT4_RDI


def _trace(build, tmp_path, *options: str, name: str = "trace.jsonl") -> list[dict]:
    program = build(FORK_AND_WRITE)
    path = tmp_path / name
    stats = tmp_path / (name + ".stats.json")
    assert main(["run", "--trace", str(path), "--stats-json", str(stats), *options, program]) == 82
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_line_of_a_real_trace_follows_the_schema(build, tmp_path):
    header, *events = _trace(build, tmp_path)
    assert trace_schema.validate_header(header) == []
    assert header["format"] == "vmgames-trace" and header["version"] == 3
    assert header["cost_model"]["fault_ns"] == Costs().fault_ns     # the experiment's prices travel with it
    problems = [(event, trace_schema.validate_event(event)) for event in events]
    assert [p for p in problems if p[1]] == []
    # Virtual time never goes backwards.
    times = [event["t"] for event in events]
    assert times == sorted(times)


def test_the_trace_and_the_counters_agree(build, tmp_path):
    _, *events = _trace(build, tmp_path)
    stats = json.loads((tmp_path / "trace.jsonl.stats.json").read_text())
    kinds = Counter((e["type"], e["kind"]) for e in events)
    assert kinds[("fault", "cow-copy")] == stats["faults"]["cow-copy"] == 2
    assert kinds[("tlb", "invalidate-page")] == stats["tlb"]["invalidate_page"] == 4
    assert kinds[("pte", "write")] == stats["pte_writes"]
    assert kinds[("object", "shadow")] == 2 and kinds[("object", "collapse")] == 1
    # The child's copy-on-write fault names the faulting store and the shadow it pushed.
    child_copy = [e for e in events if e["kind"] == "cow-copy" and e["pid"] == 2][0]
    assert child_copy["rip"] is not None and child_copy["level"] == 0 and child_copy["depth"] == 2


def test_traces_are_byte_identical_across_runs(build, tmp_path):
    _trace(build, tmp_path, name="first.jsonl")
    _trace(build, tmp_path, name="second.jsonl")
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()


def test_the_header_records_every_option_that_changes_the_events(build, tmp_path):
    header, *_ = _trace(build, tmp_path)
    assert header["options"] == {"fast": False, "seed": 0, "uid": 0, "gid": 0, "quantum": DEFAULT_QUANTUM,
                                 "prezero": 0, "prefault": None, "swap": 0, "page_used": "accessed-bit", "rmap": "pv",
                                 "cpus": 1, "interleave": DEFAULT_INTERLEAVE,
                                 "root": ".", "env": [],
                                 "trace_events": None, "wire_rate": DEFAULT_WIRE_RATE,
                                 "wire_buffer": DEFAULT_WIRE_CAPACITY, "snapshot_at": None, "gdb": False,
                                 "break_on": None, "skip_invalidation": [], "max_procs": DEFAULT_MAX_PROCESSES,
                                 "max_instructions": None,
                                 "timeout": None, "cwd": os.getcwd()}
    slow, *_ = _trace(build, tmp_path, "--wire-rate", "7", "--wire-buffer", "16K", "--snapshot-at", "exit",
                      "--snapshot", str(tmp_path / "vm.dot"), "--max-procs", "9", "--max-instructions", "1000000",
                      "--timeout", "1m", "--uid", "1000", "--gid", "100", name="slow.jsonl")
    assert slow != header
    assert {k: v for k, v in slow["options"].items() if v != header["options"][k]} == {
        "wire_rate": 7, "wire_buffer": 16 << 10, "snapshot_at": "exit", "max_procs": 9, "max_instructions": 1000000,
        "timeout": 60.0, "uid": 1000, "gid": 100}


def test_event_filters_keep_only_the_chosen_types(build, tmp_path):
    header, *events = _trace(build, tmp_path, "--trace-events", "fault,tlb")
    assert header["options"]["trace_events"] == ["fault", "tlb"]
    assert {e["type"] for e in events} == {"fault", "tlb"}


def test_a_bad_event_type_is_refused(build, tmp_path, capsys):
    program = build(FORK_AND_WRITE)
    assert main(["run", "--trace", str(tmp_path / "t"), "--trace-events", "fault,bogus", program]) == 2
    assert "unknown event type bogus" in capsys.readouterr().err


def test_the_validator_reports_what_is_wrong():
    assert trace_schema.validate_event({"t": 0, "cpu": 0, "pid": 1, "type": "tlb", "kind": "invalidate-all"}) == [
        "missing field 'reason'"]
    assert trace_schema.validate_event({"t": 0, "cpu": 0, "pid": 1, "type": "tlb", "kind": "flush"}) == [
        "unknown event tlb/flush"]
    assert trace_schema.validate_event({"t": "0", "cpu": 0, "pid": 1, "type": "page", "kind": "free", "frame": 3}) == [
        "field 't' has the wrong type (str)"]


def test_traces_of_signals_unknown_syscalls_exec_and_pipes_follow_the_schema(build, tmp_path):
    from tests.programs import syscall_then_exit

    programs = {
        "segv": ".text\n_start:\n    xor eax, eax\n    mov byte ptr [rax], 1\n",
        "nosys": syscall_then_exit(500),
        "pipe": syscall_then_exit(22, 0x10),
        "exec": syscall_then_exit(59, 0),
    }
    seen = set()
    for name, source in programs.items():
        path = tmp_path / f"{name}.jsonl"
        main(["run", "--trace", str(path), build(source, name)])
        header, *events = [json.loads(line) for line in path.read_text().splitlines()]
        assert trace_schema.validate_header(header) == []
        for event in events:
            assert trace_schema.validate_event(event) == [], (name, event)
            seen.add((event["type"], event["kind"]))
    assert {("proc", "signal"), ("fault", "fatal"), ("syscall", "syscall_0x1f4"), ("syscall", "pipe")} <= seen


def test_map_events_follow_the_schema_down_to_each_entry():
    entry = {"start": 0x401000, "end": 0x402000, "protection": "r-x", "resident": 1, "swapped": 0, "ref": 3,
             "shadow": 0, "flags": "CN", "object_type": "vn", "path": "/prog"}
    event = {"t": 5, "cpu": 0, "pid": 1, "type": "map", "kind": "exit", "process": 1, "entries": [entry]}
    assert trace_schema.validate_event(event) == []
    assert trace_schema.validate_event(dict(event, kind="snapshot", entries=[])) == []
    assert trace_schema.validate_event(dict(event, entries=[dict(entry, ref="3")])) == [
        "field 'entries' has the wrong type (list)"]
    assert trace_schema.validate_event(dict(event, entries=[{k: v for k, v in entry.items() if k != "path"}])) == [
        "field 'entries' has the wrong type (list)"]


def test_a_killed_process_exits_under_its_own_pid(run):
    """The parent sends SIGKILL; the signal is the parent's event, the child's teardown and exit are the child's."""
    events = []
    result = run(f"""
.text
_start:
{FORK}
    test eax, eax
    jz spin
    mov r12d, eax
    mov edi, eax
    mov esi, 9
    mov eax, 62
    syscall
    mov edi, r12d
{WAIT4_RDI}
{EXIT_0}
spin:
    jmp spin
""", events=events)
    assert result.status == 0
    signal = next(e for e in events if (e["type"], e["kind"]) == ("proc", "signal"))
    assert signal["pid"] == 1 and signal["target"] == 2
    exits = [(e["pid"], e["signal"]) for e in events if (e["type"], e["kind"]) == ("proc", "exit")]
    assert exits == [(2, 9), (1, 0)]
