"""vmgames report: the summary of a trace, its CSV tables, and what it says about bad traces."""

import csv
import json

import pytest

from tests.test_fork import FORK_AND_WRITE
from tools import report, vmstat
from tools.cli import main


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

    status, out, path = _report_of(tmp_path, "empty.jsonl", b"", capsys)
    assert status == 2 and out.err.strip() == f"vmgames: {path}: empty file: no trace header"

    status, out, path = _report_of(tmp_path, "corrupt.jsonl", b"".join(lines[:2]) + b"{not json\n" + lines[3], capsys)
    assert status == 2 and f"{path}:3: not valid JSON" in out.err

    status, out, path = _report_of(tmp_path, "bad-event.jsonl",
                                   lines[0] + b'{"t":0,"pid":1,"type":"tlb","kind":"invalidate-all"}\n', capsys)
    assert status == 2 and f"{path}:2: missing field 'reason'" in out.err

    events = [json.loads(line) for line in lines[1:]]
    late = next(n for n, event in enumerate(events) if event["t"] > 0)
    for t in (-7, events[late]["t"] - 1):
        backwards = b"".join(lines[:late + 2]) + json.dumps(dict(events[late], t=t)).encode() + b"\n"
        status, out, path = _report_of(tmp_path, "backwards.jsonl", backwards, capsys)
        assert status == 2 and out.err == (f"vmgames: {path}:{late + 3}: time goes backwards: t = {t:,} "
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

    status, out, path = _report_of(tmp_path, "other.jsonl", b'{"hello": 1}\n', capsys)
    assert status == 2 and "not a vmgames trace" in out.err

    status, out, path = _report_of(tmp_path, "binary.jsonl", bytes(range(256)), capsys)
    assert status == 2 and ("not a text file" in out.err or "not valid JSON" in out.err)

    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_a_trace_cut_short_is_summarised_with_a_warning(fork_trace, tmp_path, capsys):
    content = fork_trace.read_bytes()
    status, out, path = _report_of(tmp_path, "cut.jsonl", content[:-25], capsys)
    assert status == 0
    total = len(content.splitlines())
    # Rich wraps the warning at the console's width, at a space or inside the path: compare without whitespace.
    warning = f"{path}:{total}: the last line is cut short"
    assert "".join(warning.split()) in "".join(out.out.split())


def test_perfetto_export_follows_the_trace_event_format(fork_trace, tmp_path):
    out = tmp_path / "fork.perfetto.json"
    assert main(["report", str(fork_trace), "--perfetto", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["displayTimeUnit"] == "ns"
    events = document["traceEvents"]
    for event in events:
        assert isinstance(event["name"], str) and isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert event["ph"] in {"X", "i", "C", "M"}, event
        if event["ph"] == "M":
            assert event["name"] == "process_name" and isinstance(event["args"]["name"], str)
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
    # A slice for every syscall that completed (a call that blocked is one slice, from its first attempt).
    calls = [(e["pid"], e["kind"]) for e in trace_events if e["type"] == "syscall" and not e["blocked"]]
    assert sorted((e["pid"], e["name"]) for e in events if e["ph"] == "X") == sorted(calls)
    # The parent slept in wait4 while the child ran: its slice spans that time.
    (wait,) = [e for e in events if e["ph"] == "X" and e["name"] == "wait4"]
    assert wait["pid"] == 1 and wait["dur"] > 0
    assert {"prog [1]", "kernel"} <= {e["args"]["name"] for e in events if e["ph"] == "M"}


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
    assert child_bss == [{"start": 0x402000, "end": 0x403000, "protection": "rw-", "resident": 1, "ref": 1,
                          "shadow": 0, "flags": "C-", "object_type": "df", "path": None}]
    summary = report.summarise(str(fork_trace))
    assert sorted(summary.maps) == [1, 2]
    assert main(["report", str(fork_trace), "--csv", str(tmp_path / "tables")]) == 0
    printed = capsys.readouterr().out
    assert "Map of pid 2 just before its exit" in printed
    assert any(line.split() == ["2", "0x402000", "0x403000", "rw-", "1", "1", "0", "C-", "df"]
               for line in printed.splitlines())
    with open(tmp_path / "tables" / "maps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["pid"] for r in rows} == {"1", "2"}


def test_the_report_names_counters_as_freebsd_does(fork_trace, tmp_path, capsys):
    summary = report.summarise(str(fork_trace))
    assert vmstat.freebsd(summary.count) == {"swtch": 3, "vm_faults": 7, "zfod": 2, "cow_faults": 2, "cow_optim": 0,
                                             "vnodepgsin": 1, "forks": 1, "forkpages": 2, "tfree": 15,
                                             "syscall": 5}
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
    from tools import trace

    with open(path, "wb") as f:
        f.write(json.dumps(trace.header("prog", ["prog"], {}, 1 << 30)).encode() + b"\n")
        for n in range(faults):
            f.write(json.dumps({"t": 2 * n, "pid": 1, "type": "fault", "kind": "zero-fill",
                                "address": 0x10000000 + n * stride, "access": "write", "error_code": 6,
                                "rip": 0x401000, "reason": None, "object": 3, "level": 0, "depth": 1,
                                "frame": n}).encode() + b"\n")
            f.write(json.dumps({"t": 2 * n + 1, "pid": 1, "type": "syscall", "kind": "write",
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

    from tools import perfetto

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
    assert count == len(events) == 2 + 3 * 20_000      # two names; a fault, its depth and a syscall each
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
