"""vmgames report: the summary of a trace, its CSV tables, and what it says about bad traces."""

import csv
import json
import random
import struct
import subprocess

import pytest
from vmgames.tools import report, vmstat
from vmgames.tools.cli import main
from vmgames.tools.perfetto import CPUS_PID

from tests.programs import EXIT_WITH_RDI, FORK, FORK_AND_WRITE, WAIT4_RDI


@pytest.fixture
def fork_trace(build, tmp_path):
    path = tmp_path / "fork.jsonl"
    assert main(["run", "--trace", str(path), build(FORK_AND_WRITE)]) == 82
    return path


def test_the_summary_counts_what_the_trace_holds(fork_trace):
    summary = report.summarise(str(fork_trace))
    totals = {}
    for (_, type_, kind), n in summary.events.items():
        totals[(type_, kind)] = totals.get((type_, kind), 0) + n
    assert totals[("fault", "cow-copy")] == 2 and totals[("object", "collapse")] == 1
    assert {key: n for key, n in summary.reasons.items() if key[0] == "tlb"} == {
        ("tlb", "invalidate-page", "fork"): 2, ("tlb", "invalidate-page", "cow"): 2,
        ("tlb", "invalidate-all", "context-switch"): 3}
    assert sum(n for (pid, t, _), n in summary.events.items() if pid == 2 and t == "fault") == 3
    # The child's copy-on-write fault is named by the store that took it, read from the program itself.
    events = [json.loads(line) for line in fork_trace.read_text().splitlines()[1:]]
    (child_store,) = [e["rip"] for e in events if e["kind"] == "cow-copy" and e["pid"] == 2]
    text = report.disassembler(summary.header["program"])(child_store)
    assert text.startswith("mov qword ptr [rip + ") and text.endswith("], 7")


def test_csv_tables_for_pandas(fork_trace, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["report", str(fork_trace), "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Events by type and kind" in printed and "TLB invalidations by reason" in printed
    with open(out / "tlb_invalidations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["kind"], r["reason"], r["linux_reason"], r["count"]) for r in rows} == {
        ("invalidate-page", "fork", "TLB_LOCAL_MM_SHOOTDOWN", "2"),
        ("invalidate-page", "cow", "TLB_LOCAL_MM_SHOOTDOWN", "2"),
        ("invalidate-all", "context-switch", "TLB_FLUSH_ON_TASK_SWITCH", "3")}
    with open(out / "events.csv", newline="") as f:
        assert next(csv.reader(f)) == ["pid", "type", "kind", "count"]


def test_each_faulting_instruction_is_named_by_its_function(fork_trace, tmp_path, capsys):
    events = [json.loads(line) for line in fork_trace.read_text().splitlines()[1:]]
    (child_store,) = [e["rip"] for e in events if e["kind"] == "cow-copy" and e["pid"] == 2]
    program = report.disassembler(json.loads(fork_trace.read_text().splitlines()[0])["program"])
    # _start is the first instruction; child: is a label, and its second instruction (7 bytes in) is the store.
    assert program.function(0x401000) == "_start" and program.function(0x401012) == "_start+0x12"
    assert program.function(child_store) == "child+0x7"
    assert program.function(0x400000) == "" and program.function(1 << 46) == ""
    assert main(["report", str(fork_trace), "--csv", str(tmp_path / "t")]) == 0
    printed = capsys.readouterr().out
    assert any(line.split("│")[1:-1] and [c.strip() for c in line.split("│")[1:4]] ==
               [hex(child_store), "1", "child+0x7"] for line in printed.splitlines())
    with open(tmp_path / "t" / "fault_instructions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rip", "faults", "function", "instruction"]
    assert {r["rip"]: r["function"] for r in rows}[hex(child_store)] == "child+0x7"


def test_functions_of_a_gcc_program_agree_with_nm(tmp_path, capsys):
    from vmgames.tools.experiments import zerocopy

    program = zerocopy.build_programs(str(tmp_path), ["static"])["static"]
    path = tmp_path / "zc.jsonl"
    assert main(["run", "--trace", str(path), "--trace-events", "fault", program, "write", "4k", "8k", "wire"]) == 0
    assert main(["report", str(path), "--csv", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    with open(tmp_path / "t" / "fault_instructions.csv", newline="") as f:
        named = {int(r["rip"], 16): r["function"] for r in csv.DictReader(f)}
    # nm -S: address, size, type, name; the functions (t/T) of the text.
    functions = []
    for line in subprocess.run(["nm", "-S", program], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tT":
            functions.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    inside = 0
    for rip, function in named.items():
        for start, size, name in functions:
            if start <= rip < start + size:
                assert function == (f"{name}+{rip - start:#x}" if rip > start else name)
                inside += 1
    assert inside >= 2 and any(function.startswith("main+0x") for function in named.values())


def test_a_program_run_from_its_assembly_source_is_assembled_again_to_name_its_instructions(tmp_path, capsys):
    from tests.conftest import PRELUDE

    source = tmp_path / "fork.s"
    source.write_text(PRELUDE + FORK_AND_WRITE)
    path = tmp_path / "fork.jsonl"
    assert main(["run", "--trace", str(path), str(source)]) == 82
    capsys.readouterr()
    assert main(["report", str(path), "--csv", str(tmp_path / "t")]) == 0
    assert capsys.readouterr().err == ""
    with open(tmp_path / "t" / "fault_instructions.csv", newline="") as f:
        rows = {r["function"]: r["instruction"] for r in csv.DictReader(f)}
    assert rows["child+0x7"].startswith("mov qword ptr [rip + ") and rows["_start"].endswith("], 1")
    source.write_text("not an instruction\n")
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().err.startswith(f"vmgames: {source}: warning: does not assemble now ({source}:1: ")


def _without_section_headers(path) -> None:
    """What `strip` leaves at least: no section header table, so no .symtab (e_shoff, e_shnum, e_shstrndx = 0)."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<HH", data, 0x3C, 0, 0)
    path.write_bytes(bytes(data))


def test_a_program_without_a_symbol_table_is_reported_without_functions(fork_trace, tmp_path, capsys):
    _without_section_headers(tmp_path / "prog")
    assert main(["report", str(fork_trace), "--csv", str(tmp_path / "t")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "mov qword ptr [rip + " in out.out
    table = out.out[out.out.index("Top faulting instructions"):out.out.index("TLB invalidations")]
    assert "function" not in table and "_start" not in table
    with open(tmp_path / "t" / "fault_instructions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["function"] == "" and r["instruction"] for r in rows)


def test_a_broken_symbol_table_costs_the_functions_and_nothing_else(fork_trace, tmp_path):
    program = tmp_path / "prog"
    good = program.read_bytes()
    (shoff,) = struct.unpack_from("<Q", good, 0x28)
    at = report.disassembler(str(program))
    expected = {rip: at(rip) for rip in (0x401000, 0x401012, 0x40105c)}
    chance = random.Random(11)
    named = 0
    for _ in range(300):
        data = bytearray(good)
        for _ in range(chance.randint(1, 6)):
            data[chance.choice([chance.randrange(0x28, 0x40), chance.randrange(shoff, len(data)),
                                chance.randrange(len(data))])] = chance.randrange(256)
        program.write_bytes(bytes(data))
        at = report.disassembler(str(program))
        for rip in expected:
            assert isinstance(at.function(rip), str) and isinstance(at(rip), str)
        named += at.function(0x40105c) == "child+0x7"
    assert 0 < named < 300


def test_a_missing_program_is_a_warning_on_stderr_not_a_row_of_the_table(fork_trace, tmp_path, capsys):
    (tmp_path / "prog").unlink()
    assert main(["report", str(fork_trace)]) == 0
    out = capsys.readouterr()
    assert out.err == (f"vmgames: {tmp_path / 'prog'}: warning: No such file or directory: the faulting "
                       "instructions are shown without their text\n")
    assert "(program not readable)" in out.out and "warning" not in out.out
    (tmp_path / "prog").write_bytes(b"#!/bin/sh\n")
    assert main(["report", str(fork_trace)]) == 0
    assert capsys.readouterr().err == (f"vmgames: {tmp_path / 'prog'}: warning: not a program vmgames runs "
                                       "(file too short for an ELF header): the faulting instructions are shown "
                                       "without their text\n")


def test_depth_over_time_stays_bounded():
    buckets = report.DepthBuckets(width=1)
    for t in range(100_000):
        buckets.add(t, 1 + t % 5)
    rows = buckets.rows()
    assert len(rows) <= report.MAX_BUCKETS
    assert sum(n for _, _, n, _, _ in rows) == 100_000
    assert max(deepest for *_, deepest in rows) == 5


def _report_of(tmp_path, name, content: bytes, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    status = main(["report", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured, path


def test_bad_traces_get_one_message_naming_the_line(fork_trace, tmp_path, capsys):
    lines = fork_trace.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])

    status, out, path = _report_of(tmp_path, "corrupt.jsonl", b"".join(lines[:2]) + b"{not json\n" + lines[3], capsys)
    assert status == 2 and out.err == f"vmgames: {path}:3: not valid JSON (at column 2)\n"

    status, out, path = _report_of(tmp_path, "binary-later.jsonl", b"".join(lines[:4]) + b"\x89PNG\r\n", capsys)
    assert status == 2 and out.err == f"vmgames: {path}:5: not text (invalid UTF-8)\n"

    for line, shown in ((b"[1, 2]", "array"), (b'"event"', "string"), (b"7", "number"), (b"null", "null")):
        status, out, path = _report_of(tmp_path, "odd-event.jsonl", lines[0] + line + b"\n", capsys)
        assert status == 2 and out.err == f"vmgames: {path}:2: not a trace event (a JSON {shown}, not an object)\n"

    status, out, path = _report_of(tmp_path, "joined.jsonl", b"".join(lines[:3]) + b"".join(lines), capsys)
    assert status == 2 and out.err == f"vmgames: {path}:4: a second trace header (were two traces joined?)\n"

    status, out, path = _report_of(tmp_path, "bad-event.jsonl",
                                   lines[0] + b'{"t":0,"cpu":0,"pid":1,"type":"tlb","kind":"invalidate-all"}\n', capsys)
    assert status == 2 and f"{path}:2: missing field 'reason'" in out.err

    events = [json.loads(line) for line in lines[1:]]
    late = next(n for n, event in enumerate(events) if event["t"] > 0)
    for t in (-7, events[late]["t"] - 1):
        backwards = b"".join(lines[:late + 2]) + json.dumps(dict(events[late], t=t)).encode() + b"\n"
        status, out, path = _report_of(tmp_path, "backwards.jsonl", backwards, capsys)
        assert status == 2 and out.err == (f"vmgames: {path}:{late + 3}: time goes backwards on CPU 0: t = {t:,} "
                                           f"after t = {events[late]['t']:,}\n")

    newer = dict(header, version=99)
    status, out, path = _report_of(tmp_path, "newer.jsonl", json.dumps(newer).encode() + b"\n", capsys)
    assert status == 2 and f"{path}:1: trace format version 99 is newer" in out.err

    for version, shown in (("2", '"2"'), (0, "0"), (-1, "-1"), (2.0, "2.0"), (True, "true"), (None, "null")):
        odd = dict(header, version=version)
        status, out, path = _report_of(tmp_path, "odd.jsonl", json.dumps(odd).encode() + b"\n", capsys)
        assert status == 2 and out.err == (f"vmgames: {path}:1: the trace format version is {shown}, "
                                           "not a whole number from 1 up\n")
    unnumbered = {k: v for k, v in header.items() if k != "version"}
    status, out, path = _report_of(tmp_path, "odd.jsonl", json.dumps(unnumbered).encode() + b"\n", capsys)
    assert status == 2 and out.err == (f"vmgames: {path}:1: the trace format version is missing, "
                                       "not a whole number from 1 up\n")

    status, out, path = _report_of(tmp_path, "header-cut.jsonl", lines[0][:60], capsys)
    assert status == 2 and out.err == f"vmgames: {path}:1: the header is cut short (was the run interrupted?)\n"

    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err == f"vmgames: {tmp_path / 'missing.jsonl'}: No such file or directory\n"


@pytest.mark.parametrize("name, content", [
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))),
    ("program", b"\x7fELF\x02\x01\x01" + bytes(57) + b"\n{}\n"),
    ("other.json", b'{"hello": 1}\n'),
    ("other-format.jsonl", b'{"format": "perfetto", "version": 2}\n{"t": 0}\n'),
    ("array.json", b"[1, 2, 3]\n"),
    ("notes.txt", b"hello world\nthis is not a trace\n"),
    ("number", b"42"),
    ("brace", b"{\n"),
    ("latin1.txt", "caf\u00e9\n".encode("latin-1")),
])
def test_a_file_that_is_not_a_trace_says_so(tmp_path, capsys, name, content):
    status, out, path = _report_of(tmp_path, name, content, capsys)
    assert status == 2
    assert out.err == f"vmgames: {path}: not a vmgames trace\n" and out.out == ""


def test_an_empty_file_or_a_directory_is_not_a_trace(tmp_path, capsys):
    status, out, path = _report_of(tmp_path, "empty.jsonl", b"", capsys)
    assert status == 2 and out.err == f"vmgames: {path}: not a vmgames trace (the file is empty)\n"
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"vmgames: {tmp_path}: Is a directory\n"


def test_a_first_line_too_long_for_a_header_is_not_read_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "MAX_HEADER", 1000)
    status, out, path = _report_of(tmp_path, "long.jsonl", b'{"format": "vmgames-trace", "x": "' + b"y" * 5000, capsys)
    assert status == 2 and out.err == f"vmgames: {path}: not a vmgames trace\n"


def test_a_trace_cut_short_is_summarised_with_a_warning_on_stderr(fork_trace, tmp_path, capsys):
    content = fork_trace.read_bytes()
    status, out, path = _report_of(tmp_path, "cut.jsonl", content[:-25], capsys)
    assert status == 0
    total = len(content.splitlines())
    assert out.err == f"vmgames: {path}:{total}: warning: the last line is cut short (was the run interrupted?)\n"
    assert "Events by type and kind" in out.out and "warning" not in out.out


def test_a_trace_that_stops_before_its_processes_exit_is_summarised_with_a_warning(fork_trace, tmp_path, capsys):
    lines = fork_trace.read_bytes().splitlines(keepends=True)
    forked = next(n for n, line in enumerate(lines) if b'"kind":"fork"' in line and b'"proc"' in line)
    status, out, path = _report_of(tmp_path, "stopped.jsonl", b"".join(lines[:forked + 1]), capsys)
    assert status == 0
    assert out.err == (f"vmgames: {path}: warning: the trace stops short: pids 1, 2 never exited in it "
                       "(was the run interrupted, or its disk full?)\n")
    assert "warning" not in out.out
    # The whole trace, and one that kept no process events, say nothing.
    assert main(["report", str(fork_trace)]) == 0
    assert capsys.readouterr().err == ""
    header = dict(json.loads(lines[0]))
    header["options"] = dict(header["options"], trace_events=["fault"])
    faults = [line for line in lines[1:forked + 1] if b'"type":"fault"' in line]
    status, out, _ = _report_of(tmp_path, "faults.jsonl", json.dumps(header).encode() + b"\n" + b"".join(faults),
                                capsys)
    assert status == 0 and out.err == ""


def _perfetto(trace_path, tmp_path) -> list[dict]:
    out = tmp_path / "trace.perfetto.json"
    assert main(["report", str(trace_path), "--perfetto", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["displayTimeUnit"] == "ns"
    return document["traceEvents"]


def test_perfetto_export_follows_the_trace_event_format(fork_trace, tmp_path):
    events = _perfetto(fork_trace, tmp_path)
    for event in events:
        assert isinstance(event["name"], str) and isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert event["ph"] in {"X", "i", "C", "M"}, event
        if event["ph"] == "M":
            assert event["name"] in {"process_name", "thread_name"} and isinstance(event["args"]["name"], str)
            # A process's one thread is the process; the CPUs' process has a thread per CPU.
            assert event["tid"] == event["pid"] or (event["pid"], event["name"]) == (CPUS_PID, "thread_name")
            continue
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        if event["ph"] == "X":
            assert event["dur"] >= 0
        elif event["ph"] == "i":
            assert event["s"] in {"g", "p", "t"}
        else:
            assert event["args"] and all(isinstance(v, (int, float)) for v in event["args"].values())
    trace_events = [json.loads(line) for line in fork_trace.read_text().splitlines()[1:]]
    faults = [e for e in trace_events if e["type"] == "fault"]
    assert sum(1 for e in events if e.get("cat") == "fault") == len(faults)
    # A slice for every syscall made (a call that blocked is one slice, from its first attempt).
    calls = [(e["pid"], e["kind"]) for e in trace_events if e["type"] == "syscall" and not e["blocked"]]
    assert sorted((e["pid"], e["name"]) for e in events if e["ph"] == "X") == sorted(calls)


def test_each_perfetto_track_is_named_for_its_process_and_program_before_its_first_event(fork_trace, tmp_path):
    events = _perfetto(fork_trace, tmp_path)
    names = [(e["pid"], e["name"], e["args"]["name"]) for e in events if e["ph"] == "M"]
    assert names == [(0, "process_name", "kernel"), (0, "thread_name", "kernel"),
                     (1, "process_name", "pid 1 prog"), (1, "thread_name", "pid 1 prog"),
                     (CPUS_PID, "process_name", "CPUs"), (CPUS_PID, "thread_name", "cpu 0"),
                     (2, "process_name", "pid 2 prog"), (2, "thread_name", "pid 2 prog")]
    first = {}
    for n, event in enumerate(events):
        first.setdefault((event["pid"], event["ph"] == "M"), n)
    assert all(first[(pid, True)] < first[(pid, False)] for pid in (0, 1, 2, CPUS_PID))


def test_perfetto_has_a_track_per_cpu_with_its_shootdowns_and_the_ipis_it_took(build, tmp_path):
    from tests.test_smp import MPROTECT_UNDER_A_READER

    path = tmp_path / "smp.jsonl"
    assert main(["run", "--cpus", "2", "--trace", str(path), build(MPROTECT_UNDER_A_READER)]) == 0
    events = _perfetto(path, tmp_path)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["pid"] == CPUS_PID
              and e["name"] == "thread_name"}
    assert sorted(tracks.values()) == ["cpu 0", "cpu 1"]
    on_cpus = [(tracks[e["tid"]], e["name"], e["args"]["reason"]) for e in events
               if e.get("cat") == "tlb" and e["args"]["reason"] != "context-switch"]
    (sender,) = {cpu for cpu, name, _ in on_cpus if name == "tlb: shootdown"}
    (receiver,) = {cpu for cpu, name, _ in on_cpus if name == "tlb: ipi-invlpg"}
    assert on_cpus == [(sender, "tlb: invalidate-page", "mprotect"), (sender, "tlb: shootdown", "mprotect"),
                       (receiver, "tlb: ipi-invlpg", "mprotect")]
    counters = [e for e in events if e["ph"] == "C" and e["pid"] == CPUS_PID]
    assert [(e["name"], e["args"]) for e in counters] == [(f"{receiver} IPIs taken", {"IPIs": 1})]


def test_a_syscall_slice_lasts_from_its_first_attempt_to_its_return(fork_trace, tmp_path):
    events = _perfetto(fork_trace, tmp_path)
    trace_events = [json.loads(line) for line in fork_trace.read_text().splitlines()[1:]]
    attempts = [e["t"] for e in trace_events if e["type"] == "syscall" and e["kind"] == "wait4"]
    assert len(attempts) == 2     # it went to sleep until the child exited, and was made again
    (wait,) = [e for e in events if e["ph"] == "X" and e["name"] == "wait4"]
    assert (wait["pid"], wait["ts"], wait["dur"]) == (1, attempts[0] / 1000, (attempts[1] - attempts[0]) / 1000)
    assert (wait["args"]["result"], wait["args"]["attempts"], wait["args"]["returned"]) == (2, 2, True)
    # A call that did not sleep takes no virtual time: it starts and ends where the trace records it.
    exits = [e for e in trace_events if e["type"] == "syscall" and e["kind"] == "exit"]
    assert sorted((e["pid"], e["ts"], e["dur"]) for e in events if e["ph"] == "X" and e["name"] == "exit") == \
        sorted((e["pid"], e["t"] / 1000, 0) for e in exits)


KILL_THE_SLEEPER = f"""
.text
_start:
    lea rdi, [rip + fds]
    mov eax, 22
    syscall
{FORK}
    test rax, rax
    jz child
    mov [rip + pid], rax
    mov eax, 24
    syscall
    mov rdi, [rip + pid]
    mov esi, 9
    mov eax, 62
    syscall
    mov rdi, [rip + pid]
{WAIT4_RDI}
    xor edi, edi
{EXIT_WITH_RDI}
child:
    mov edi, dword ptr [rip + fds]
    lea rsi, [rip + buffer]
    mov edx, 1
    xor eax, eax
    syscall
    mov edi, 1
{EXIT_WITH_RDI}
.bss
fds: .zero 8
pid: .zero 8
buffer: .zero 8
"""


def test_a_process_killed_asleep_in_a_syscall_gets_a_slice_to_its_death(build, tmp_path, capsys):
    # The parent forks a child that sleeps reading an empty pipe, yields to it, then kills it.
    path = tmp_path / "kill.jsonl"
    assert main(["run", "--trace", str(path), build(KILL_THE_SLEEPER)]) == 0
    trace_events = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    (asleep,) = [e for e in trace_events if e["type"] == "syscall" and e["kind"] == "read"]
    assert (asleep["pid"], asleep["blocked"]) == (2, True)
    # The signal is the killer's event and names the child; the child's exit is its own.
    (signal,) = [e for e in trace_events if e["type"] == "proc" and e["kind"] == "signal"]
    killed = next(e for e in trace_events if e["type"] == "proc" and e["kind"] == "exit")
    assert (signal["pid"], signal["target"], killed["pid"], killed["signal"]) == (1, 2, 2, 9)
    capsys.readouterr()
    events = _perfetto(path, tmp_path)
    (read,) = [e for e in events if e["ph"] == "X" and e["name"] == "read"]
    assert (read["pid"], read["ts"], read["dur"]) == (2, asleep["t"] / 1000, (killed["t"] - asleep["t"]) / 1000)
    assert (read["args"]["result"], read["args"]["returned"]) == (None, False)
    exits = [(e["pid"], e["args"]["signal"]) for e in events if e["name"] == "proc: exit"]
    assert exits == [(2, 9), (1, 0)]
    # Both processes exited: the trace is whole, and the report says nothing on stderr.
    assert capsys.readouterr().err == ""
    assert report.summarise(str(path)).running == set()


def _write_trace(path, events: list[dict], program: str = "/bin/prog") -> None:
    from vmgames.tools import trace

    with open(path, "wb") as f:
        f.write(json.dumps(trace.header(program, [program], {}, 1 << 30)).encode() + b"\n")
        for event in events:
            f.write(json.dumps(event).encode() + b"\n")


def _syscall(t: int, pid: int, name: str, result: int | None) -> dict:
    return {"t": t, "cpu": 0, "pid": pid, "type": "syscall", "kind": name, "args": [0] * 6, "result": result,
            "blocked": result is None}


def test_a_perfetto_track_is_named_again_after_an_exec_and_a_call_asleep_at_the_end_still_shows(tmp_path):
    path = tmp_path / "exec.jsonl"
    _write_trace(path, [
        {"t": 0, "cpu": 0, "pid": 0, "type": "proc", "kind": "spawn", "child": 1, "path": "/bin/prog"},
        {"t": 5, "cpu": 0, "pid": 1, "type": "proc", "kind": "fork", "child": 2},
        _syscall(5, 1, "fork", 2),
        _syscall(9, 1, "wait4", None),
        {"t": 20, "cpu": 0, "pid": 2, "type": "proc", "kind": "exec", "path": "/bin/sh", "argv": ["sh"]},
        _syscall(20, 2, "execve", 0),
        _syscall(30, 2, "read", None),
        _syscall(45, 2, "read", None),
        _syscall(60, 2, "getpid", 2),
    ])
    events = _perfetto(path, tmp_path)
    names = [(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"]
    assert names == [(0, "kernel"), (1, "pid 1 prog"), (2, "pid 2 prog"), (2, "pid 2 sh")]
    threads = [(e["pid"], e["args"]["name"]) for e in events if e["name"] == "thread_name"]
    assert threads == names
    assert [(e["pid"], e["ts"]) for e in events if e["name"] == "proc: exec"] == [(2, 0.02)]
    slices = {(e["pid"], e["name"]): (e["ts"], e["dur"], e["args"]["attempts"], e["args"]["returned"])
              for e in events if e["ph"] == "X"}
    assert slices == {
        (1, "fork"): (0.005, 0, 1, True),
        (2, "execve"): (0.02, 0, 1, True),
        # The second read is the same call made again, still asleep; then the next call closes it.
        (2, "read"): (0.03, 0.03, 2, False),
        (2, "getpid"): (0.06, 0, 1, True),
        # Still asleep when the trace ends: its slice runs to the last event.
        (1, "wait4"): (0.009, 0.051, 1, False),
    }


def test_tracks_of_a_trace_without_process_events_are_named_by_pid(tmp_path):
    path = tmp_path / "syscalls.jsonl"
    _write_trace(path, [_syscall(3, 1, "getpid", 1), _syscall(7, 4, "getpid", 4)], program="build/touch")
    events = _perfetto(path, tmp_path)
    assert [(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"] == [
        (0, "kernel"), (1, "pid 1 touch"), (4, "pid 4")]


def test_plots_are_written_as_png_and_svg(fork_trace, tmp_path):
    import xml.etree.ElementTree as ElementTree

    out = tmp_path / "plots"
    assert main(["report", str(fork_trace), "--plots", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.{e}" for n in ("faults_over_time", "fault_heatmap", "chain_depth")
                           for e in ("png", "svg"))
    for path in out.iterdir():
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        else:
            assert ElementTree.parse(path).getroot().tag.endswith("svg")


def test_the_fault_timeline_stays_bounded():
    timeline = report.FaultTimeline(width=1)
    for t in range(50_000):
        timeline.add(t, "zero-fill" if t % 3 else "cow-copy")
    assert len(timeline.buckets) <= report.MAX_BUCKETS
    assert sum(sum(c.values()) for c in timeline.buckets.values()) == 50_000


def test_the_trace_holds_each_processs_map_at_exit_and_the_report_prints_it(fork_trace, tmp_path, capsys):
    events = [json.loads(line) for line in fork_trace.read_text().splitlines()[1:]]
    maps = [e for e in events if e["type"] == "map"]
    # The child exits first, then the parent; each map is recorded by the exiting process.
    assert [(e["kind"], e["pid"], e["process"]) for e in maps] == [("exit", 2, 2), ("exit", 1, 1)]
    child_bss = [row for row in maps[0]["entries"] if row["start"] == 0x402000]
    # By then the child had pushed its own shadow (C2) over B and written 7 into it.
    assert child_bss == [{"start": 0x402000, "end": 0x403000, "protection": "rw-", "resident": 1, "swapped": 0,
                          "ref": 1, "shadow": 0, "flags": "C-", "object_type": "df", "path": None}]
    summary = report.summarise(str(fork_trace))
    assert sorted(summary.maps) == [1, 2]
    assert main(["report", str(fork_trace), "--csv", str(tmp_path / "tables")]) == 0
    printed = capsys.readouterr().out
    assert "Map of pid 2 just before its exit" in printed
    assert any(line.split() == ["2", "0x402000", "0x403000", "rw-", "1", "0", "1", "0", "C-", "df"]
               for line in printed.splitlines())
    with open(tmp_path / "tables" / "maps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["pid"] for r in rows} == {"1", "2"}


def test_the_report_names_counters_as_freebsd_does(fork_trace, tmp_path, capsys):
    summary = report.summarise(str(fork_trace))
    assert vmstat.freebsd(summary.count) == {"swtch": 3, "vm_faults": 7, "zfod": 2, "ozfod": 0, "cow_faults": 2,
                                             "cow_optim": 0, "vnodepgsin": 1, "forks": 1, "forkpages": 2, "vforks": 0,
                                             "tfree": 15, "syscall": 5,
                                             **dict.fromkeys(("swapin", "swappgsin", "swapout", "swappgsout",
                                                              "pdwakeups", "pdpages", "reactivated", "tcached",
                                                              "dfree"), 0)}
    assert main(["report", str(fork_trace), "--csv", str(tmp_path / "t")]) == 0
    assert "copy-on-write faults" in capsys.readouterr().out
    with open(tmp_path / "t" / "freebsd_vmstat.csv", newline="") as f:
        assert {r["name"]: r["count"] for r in csv.DictReader(f)}["cow_faults"] == "2"


def test_a_filtered_trace_says_which_freebsd_counters_it_could_not_count(build, tmp_path, capsys):
    path = tmp_path / "faults.jsonl"
    assert main(["run", "--trace", str(path), "--trace-events", "fault,tlb", build(FORK_AND_WRITE)]) == 82
    capsys.readouterr()
    assert main(["report", str(path), "--csv", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("As FreeBSD's vmstat -s names them"):]
    table = table[:table.index("└")]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    counts = {name: count for count, _, name in cells}
    assert counts["forks"] == counts["tfree"] == counts["syscall"] == counts["forkpages"] == "not traced"
    assert counts["vm_faults"] == "7" and counts["cow_faults"] == "2" and counts["swtch"] == "3"
    with open(tmp_path / "t" / "freebsd_vmstat.csv", newline="") as f:
        counts = {r["name"]: r["count"] for r in csv.DictReader(f)}
    assert counts["vm_faults"] == "7" and counts["swtch"] == "3" and counts["forks"] == counts["tfree"] == ""


def test_a_version_1_trace_without_maps_is_still_read(fork_trace, tmp_path, capsys):
    lines = fork_trace.read_bytes().splitlines(keepends=True)
    header = dict(json.loads(lines[0]), version=1)
    events = [line for line in lines[1:] if b'"type":"map"' not in line]
    status, out, _ = _report_of(tmp_path, "v1.jsonl", json.dumps(header).encode() + b"\n" + b"".join(events), capsys)
    assert status == 0 and "trace format 1" in out.out and "Map of pid" not in out.out


def _synthetic_trace(path, faults: int, stride: int) -> None:
    """A trace of `faults` write faults, `stride` bytes apart, each inside a write syscall's slice."""
    from vmgames.tools import trace

    with open(path, "wb") as f:
        f.write(json.dumps(trace.header("prog", ["prog"], {}, 1 << 30)).encode() + b"\n")
        for n in range(faults):
            f.write(json.dumps({"t": 2 * n, "cpu": 0, "pid": 1, "type": "fault", "kind": "zero-fill",
                                "address": 0x10000000 + n * stride, "access": "write", "error_code": 6,
                                "rip": 0x401000, "reason": None, "object": 3, "level": 0, "depth": 1,
                                "frame": n}).encode() + b"\n")
            f.write(json.dumps({"t": 2 * n + 1, "cpu": 0, "pid": 1, "type": "syscall", "kind": "write",
                                "args": [1, 0, 1, 0, 0, 0], "result": 1, "blocked": False}).encode() + b"\n")


def test_the_heat_map_keeps_at_most_max_rows_and_every_fault():
    heat = report.PageHeat()
    heat.add(0x401000)
    for region in range(5000):
        heat.add(0x7f0000000000 + region * (7 << 21) + 0x3000)
    assert len(heat.rows) <= report.MAX_HEAT_ROWS
    assert all(len(cells) == report.CELLS_PER_ROW for cells in heat.rows.values())
    assert sum(map(sum, heat.rows.values())) == 5001
    # The text page is still where it lives: in the first row, in the cell of its address.
    assert heat.rows[0][0x401000 // heat.cell] == 1


def test_the_heat_map_of_a_trace_across_many_regions_is_of_a_sane_size(tmp_path, capsys):
    path = tmp_path / "wide.jsonl"
    _synthetic_trace(path, 3000, 3 << 21)
    assert main(["report", str(path), "--plots", str(tmp_path / "plots")]) == 0
    png = (tmp_path / "plots" / "fault_heatmap.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width < 1200 and height < 1500, (width, height)


def test_reading_and_converting_a_trace_takes_memory_that_does_not_grow_with_it(tmp_path):
    import tracemalloc

    from vmgames.tools import perfetto

    path = tmp_path / "long.jsonl"
    _synthetic_trace(path, 20_000, 4096)
    tracemalloc.start()
    try:
        summary = report.summarise(str(path))
        _, summarising = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = tmp_path / "long.perfetto.json"
        read: list[int] = []
        with open(out, "wb") as f:
            count = perfetto.convert(str(path), f, read.append)
        _, converting = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(map(sum, summary.heat.rows.values())) == 20_000
    assert summarising < 1 << 20 and converting < 1 << 20, (summarising, converting)
    events = json.loads(out.read_text())["traceEvents"]
    assert count == len(events) == 4 + 3 * 20_000      # two tracks named; a fault, its depth and a syscall each
    # The second pass reports its progress as the first does.
    assert read and read == sorted(read) and read[-1] <= path.stat().st_size


def test_bad_output_paths_are_refused_before_the_trace_is_read(fork_trace, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    for option in ("--csv", "--plots"):
        assert main(["report", str(fork_trace), option, str(afile)]) == 2
        assert capsys.readouterr().err == f"vmgames: {option} {afile}: Not a directory\n"
        assert main(["report", str(fork_trace), option, "/proc/nope"]) == 2
        assert capsys.readouterr().err == f"vmgames: {option} /proc/nope: No such file or directory\n"
    assert main(["report", str(fork_trace), "--perfetto", "/proc/nope/p.json"]) == 2
    assert capsys.readouterr().err == "vmgames: --perfetto /proc/nope/p.json: No such file or directory\n"
    assert main(["report", str(fork_trace), "--perfetto", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"vmgames: --perfetto {tmp_path}: Is a directory\n"
    # Nothing was summarised: the message is all there is.
    assert main(["report", str(fork_trace), "--csv", str(afile)]) == 2
    assert capsys.readouterr().out == ""


def test_an_output_that_fails_while_written_gets_one_message(fork_trace, tmp_path, capsys):
    tables = tmp_path / "tables"
    (tables / "events.csv").mkdir(parents=True)
    assert main(["report", str(fork_trace), "--csv", str(tables)]) == 2
    assert capsys.readouterr().err == f"vmgames: {tables / 'events.csv'}: Is a directory\n"


def test_the_program_is_found_from_wherever_the_report_is_run(build, tmp_path, monkeypatch, capsys):
    recorded_in = tmp_path / "recorded"
    recorded_in.mkdir()
    build(FORK_AND_WRITE)
    (tmp_path / "prog").rename(recorded_in / "prog")
    monkeypatch.chdir(recorded_in)
    assert main(["run", "--trace", "fork.jsonl", "prog"]) == 82
    header = json.loads((recorded_in / "fork.jsonl").read_text().splitlines()[0])
    assert header["program"] == "prog" and header["options"]["cwd"] == str(recorded_in)
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["report", "../recorded/fork.jsonl"]) == 0
    printed = capsys.readouterr().out
    assert "(program not readable)" not in printed and "mov qword ptr [rip + " in printed
    # A trace from before the header had the directory: the path is taken as it stands.
    assert report.program_path(dict(header, options={})) == "prog"
