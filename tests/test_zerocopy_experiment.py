"""`vmgames experiment zerocopy`: the per-MiB arithmetic, the cost model, its files, the CLI's errors,
and what the workloads do under each send mode."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys

import pytest
from vmgames.kernel.vmmeter import Recorder
from vmgames.tools import cli, costmodel
from vmgames.tools.boot import boot
from vmgames.tools.costmodel import CostFileError, Costs, Work
from vmgames.tools.experiments import zerocopy
from vmgames.tools.experiments.zerocopy import Cell

MIB = 1 << 20


def test_the_cost_model_prices_each_count():
    work = Work(faults=10, pages_copied=4, bytes_copied_in=8192, pages_zeroed=2, pte_writes=6, tlb_pages=3,
                tlb_flushes=1, syscalls=5, instructions=7000)
    parts = costmodel.breakdown(work, Costs())
    # 3 GHz: ns * 3 = cycles
    assert parts == {
        "faults": 10 * 1000 * 3,
        "copies": ((4 + 2) * 60 + 2 * 50) * 3,
        "page tables and TLB": (6 * 10 + 3 * 140 + 1 * 500) * 3,
        "syscalls": 5 * 300 * 3,
        "user instructions": 7000,
    }
    assert costmodel.cycles(work, Costs()) == sum(parts.values()) == 30000 + 1380 + 2940 + 4500 + 7000
    # Shootdowns are priced from what was counted: the initiator's wait per shootdown, each target's IPI.
    shot = Work(pte_writes=6, tlb_pages=3, tlb_flushes=1, shootdowns=2, ipis=5)
    assert costmodel.breakdown(shot, Costs(cpu_ghz=1))["page tables and TLB"] == (
        6 * 10 + 3 * 140 + 500 + 2 * 3000 + 5 * 1000)
    # A context switch's CR3 load costs its flush, never an IPI.
    switched = Work(pte_writes=6, tlb_pages=3, tlb_flushes=1, cr3_loads=1)
    assert costmodel.breakdown(switched, Costs(cpu_ghz=1))["page tables and TLB"] == 6 * 10 + 3 * 140 + 500


def recorder_of_a_tiny_cell() -> Recorder:
    """What a copy-on-write cell of two 4 KiB sends could have recorded, event by event."""
    recorder = Recorder()
    recorder.pid = 1
    for kind in ("zero-fill", "zero-fill", "protection", "protection", "protection", "cow-copy", "fatal"):
        recorder.event("fault", kind)
    recorder.event("page", "zero")
    recorder.event("page", "copy")
    recorder.event("sink", "copy", bytes=100)
    for _ in range(2):
        recorder.event("sink", "hold")
        recorder.event("sink", "deliver", bytes=4096)
    recorder.event("sink", "corrupt", bytes=50)
    for _ in range(4):
        recorder.event("pte", "write")
    recorder.event("tlb", "invalidate-page", reason="cow-send")
    recorder.event("tlb", "invalidate-all", reason="context-switch")
    for name in ("write", "write", "exit"):
        recorder.event("syscall", name)
    return recorder


def test_a_cell_is_measured_from_the_recorder_and_divided_per_mib():
    cell = zerocopy.measure(Cell("static", "cow", 4096, 8192), recorder_of_a_tiny_cell(), instructions=12345)
    assert cell.faults == {"zero-fill": 2, "file": 0, "swap-in": 0, "resident": 0, "cow-copy": 1, "cow-move": 0,
                           "protection": 3, "fatal": 1}
    assert cell.work == Work(faults=6, pages_copied=1, bytes_copied_in=100, pages_zeroed=1, pte_writes=4,
                             tlb_pages=1, tlb_flushes=1, cr3_loads=1, syscalls=3, instructions=12345)
    assert (cell.received, cell.corrupt) == (8192, 50)
    assert cell.kernel_entries == 3 + 7
    assert cell.per_mib(1) == 128                      # 8 KiB delivered: 1/128 MiB
    [row] = zerocopy.csv_rows([cell], Costs(), 1024)
    assert row["faults_protection_per_mib"] == 3 * 128
    assert row["faults_per_mib"] == 7 * 128
    assert row["bytes_copied_per_mib"] == (100 + 4096) * 128
    assert row["kernel_entries_per_mib"] == 10 * 128
    assert row["corrupt_bytes"] == 50 and row["corrupt_bytes_per_mib"] == 50 * 128
    assert row["cycles_per_mib"] == round(costmodel.cycles(cell.work, Costs()) * 128)
    assert row["command"] == (f"cd {shlex.quote(zerocopy.BUILD)} && vmgames run --ram 128m --wire-rate 1024 "
                              "--stats zc_static cow 4k 8k wire")


def test_a_cell_that_delivered_nothing_is_divided_by_what_was_meant():
    cell = Cell("fresh", "write", 1 << 20, 2 << 20)
    assert cell.per_mib(10) == 5


@pytest.mark.parametrize("n, text", [(4096, "4k"), (65536, "64k"), (1 << 20, "1m"), (3 << 20, "3m"), (1000, "1000"),
                                     (1536, "1536")])
def test_sizes_are_written_as_the_programs_read_them(n, text):
    assert zerocopy.size_text(n) == text


def test_a_costs_file_overrides_some_defaults(tmp_path):
    path = tmp_path / "cold.json"
    path.write_text(json.dumps({"copy_page_ns": 1000, "cpu_ghz": 2}))
    assert costmodel.load_costs(str(path)) == Costs(copy_page_ns=1000.0, cpu_ghz=2.0)
    toml = tmp_path / "costs.toml"
    toml.write_text("fault_ns = 2500\nipi_ns = 1500\n")
    assert costmodel.load_costs(str(toml)) == Costs(fault_ns=2500.0, ipi_ns=1500.0)


@pytest.mark.parametrize("name, content, message", [
    ("typo.json", '{"fault_us": 1}', "unknown cost 'fault_us'; the costs are copy_page_ns, cpu_ghz,"),
    ("text.json", '{"fault_ns": "fast"}', "fault_ns must be a number, not 'fast'"),
    ("bool.json", '{"syscall_ns": true}', "syscall_ns must be a number, not True"),
    ("negative.json", '{"invlpg_ns": -1}', "invlpg_ns must be a finite number >= 0, not -1"),
    ("zero.json", '{"cpu_ghz": 0}', "cpu_ghz must be more than 0"),
    ("list.json", "[1, 2]", "expected a table of costs (key = number), not list"),
    ("broken.json", '{"fault_ns": 1', "not valid JSON (line 1: Expecting ',' delimiter); name the file .toml"),
    ("broken.toml", "fault_ns = = 1", "not valid TOML"),
])
def test_a_bad_costs_file_is_refused_with_a_reason(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CostFileError) as error:
        costmodel.load_costs(str(path))
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_a_missing_or_binary_costs_file(tmp_path):
    with pytest.raises(CostFileError, match="No such file or directory"):
        costmodel.load_costs(str(tmp_path / "nowhere.json"))
    binary = tmp_path / "costs.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CostFileError, match="not a text file"):
        costmodel.load_costs(str(binary))


@pytest.mark.parametrize("argv, message", [
    (["--workloads", "static,nope"], "--workloads: unknown 'nope'; choose from static, fresh, pool, fork"),
    (["--modes", "splice"], "--modes: unknown 'splice'; choose from write, cow, vmsplice"),
    (["--sizes", "4q"], "not a size: '4q'"),
    (["--sizes", "0"], "--sizes: each size must be from 1 byte to 16m"),
    (["--sizes", "3k", "64k", "--total", "64k"], "--total 64k is not a multiple of 3k"),
    (["--total", "1g"], "--total must be from 1 byte to 256m"),
    (["--wire-rate", "0"], "--wire-rate must be at least 1"),
    (["--costs", "/nonexistent/costs.json"], "/nonexistent/costs.json: No such file or directory"),
    (["--csv", "/nonexistent/zc.csv"], "--csv /nonexistent/zc.csv: no such directory"),
    (["--plot", "/dev/null"], "--plot /dev/null: not a directory"),
])
def test_bad_arguments_get_one_clear_line(capsys, argv, message):
    assert cli.main(["experiment", "zerocopy", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmgames: ") and message in err and err.count("\n") == 1


def cells(workload: str, size: int, total: int, modes=zerocopy.MODES) -> dict[str, Cell]:
    return {cell.mode: cell for cell in zerocopy.run_all([workload], modes, [size], total, zerocopy.DEFAULT_WIRE_RATE)}


def test_a_static_buffer_is_corrupted_by_vmsplice_and_never_by_write_or_cow():
    by_mode = cells("static", 16 << 10, 512 << 10)
    for mode, cell in by_mode.items():
        assert cell.received == 512 << 10, mode
    assert by_mode["write"].corrupt == by_mode["cow"].corrupt == 0
    # The wire holds 256 KiB in flight: what is still on it when the buffer is refilled arrives changed.
    assert by_mode["vmsplice"].corrupt > 0
    assert by_mode["write"].work.bytes_copied_in == 512 << 10
    assert by_mode["cow"].work.bytes_copied_in == by_mode["vmsplice"].work.bytes_copied_in == 0


def test_on_a_pipe_the_reader_sees_a_static_buffer_change_under_vmsplice_only():
    by_mode = {cell.mode: cell for cell in zerocopy.run_all(["static"], zerocopy.MODES, [16 << 10], 256 << 10,
                                                            zerocopy.DEFAULT_WIRE_RATE, sink="pipe")}
    assert {mode: cell.received for mode, cell in by_mode.items()} == dict.fromkeys(zerocopy.MODES, 256 << 10)
    assert by_mode["write"].corrupt == by_mode["cow"].corrupt == 0 < by_mode["vmsplice"].corrupt
    assert by_mode["cow"].work.bytes_copied_in == by_mode["vmsplice"].work.bytes_copied_in == 0


def test_a_pool_that_waits_for_completions_is_never_corrupted():
    by_mode = cells("pool", 64 << 10, 1 << 20, modes=("vmsplice",))
    assert by_mode["vmsplice"].received == 1 << 20
    assert by_mode["vmsplice"].corrupt == 0


def test_the_experiment_writes_its_table_csv_and_plot(tmp_path, capsys):
    csv_path = tmp_path / "zc.csv"
    status = cli.main(["experiment", "zerocopy", "--workloads", "fresh", "--modes", "write,vmsplice", "--sizes", "4k",
                       "--total", "16k", "--cpus", "1", "--csv", str(csv_path), "--plot", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert status == 0
    assert "fresh" in out and "vmsplice" in out
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["workload"], r["mode"], r["size"]) for r in rows] == [("fresh", "write", "4096"),
                                                                     ("fresh", "vmsplice", "4096")]
    assert all(r["received_bytes"] == r["sent_bytes"] == "16384" and r["corrupt_bytes"] == "0" for r in rows)
    assert rows[1]["command"] == (f"cd {shlex.quote(zerocopy.BUILD)} && vmgames run --ram 128m --wire-rate 1024 "
                                  "--stats zc_fresh vmsplice 4k 16k wire")
    assert (tmp_path / "plots" / "zerocopy.png").stat().st_size > 0
    assert (tmp_path / "plots" / "zerocopy.svg").stat().st_size > 0
    # The conclusion follows the CSV's own figures: the cheaper mode, and by how much.
    write, vmsplice = (int(r["cycles_per_mib"]) for r in rows)
    (best, cost), (other, more) = sorted((("write", write), ("vmsplice", vmsplice)), key=lambda pair: pair[1])
    lead = 1 - cost / more
    shown = f"{lead:.0%}" if lead >= 0.01 else f"{lead:.1%}"
    assert out.splitlines()[-2:] == [
        "Conclusion (estimated cycles per MiB under the default cost model of tools/costmodel.py; only a mode that "
        "delivered every byte intact can win):",
        f"  fresh: 4k {best}, {shown} below {other}"]


def test_a_pool_reuses_a_buffer_only_after_zc_reap_and_every_vmsplice_completes(tmp_path):
    program = zerocopy.build_programs(str(tmp_path), ["pool"])["pool"]
    kernel = boot(64 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO(),
                    wire_rate=zerocopy.DEFAULT_WIRE_RATE)
    proc = kernel.spawn(kernel.fs.open_host(program), ["zc_pool", "vmsplice", "64k", "2m"], [])
    kernel.run()
    recorder = kernel.recorder
    assert proc.shell_status == 0
    # 32 sends of 16 pages from a pool of 8 buffers; a reap reports every call completed so far.
    assert recorder.count("sink", "lend") == 32 * 16
    # A vmsplice that found the wire full returns what fitted, and the rest is the next call with its own
    # number (a call that slept is counted again when it is made again); the program checks every number.
    assert 32 <= recorder.count("sink", "complete") <= recorder.count("syscall", "vmsplice")
    assert 0 < recorder.count("syscall", "zc_reap") < 24
    assert recorder.count("sink", "copy") == recorder.count("page", "copy") == 0
    assert recorder.amount("sink", "deliver") == 2 << 20 and recorder.amount("sink", "corrupt") == 0


def test_outputs_that_cannot_be_written_are_refused_before_any_cell_runs(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(zerocopy, "run_all", must_not_run)
    kept = tmp_path / "kept.csv"
    kept.write_text("the last run's figures\n")
    for argv, message in [
        (["--csv", str(tmp_path)], f"vmgames: {tmp_path}: Is a directory\n"),
        (["--csv", "/sys/zc.csv"], "vmgames: /sys/zc.csv: "),
        (["--csv", str(kept), "--plot", "/sys/plots"], "vmgames: /sys/plots: "),
    ]:
        assert cli.main(["experiment", "zerocopy", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    # The checks leave what they opened as it was.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv"]
    assert kept.read_text() == "the last run's figures\n"


def test_a_fifo_nobody_reads_is_refused_as_the_csv_instead_of_waiting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(zerocopy, "run_all", lambda *args, **kwargs: pytest.fail("a cell ran"))
    fifo = tmp_path / "zc.csv"
    os.mkfifo(fifo)
    assert cli.main(["experiment", "zerocopy", "--csv", str(fifo), "--plot", str(tmp_path / "plots")]) == 2
    assert capsys.readouterr().err == f"vmgames: {fifo}: No such device or address\n"


def _cell(workload: str, mode: str, size: int, cycles: int, received: int = MIB, corrupt: int = 0) -> Cell:
    """A cell of 1 MiB that cost `cycles` under the default costs (as user instructions, one cycle each)."""
    cell = Cell(workload, mode, size, MIB, received=received, corrupt=corrupt)
    cell.work = Work(instructions=cycles)
    return cell


def test_the_conclusion_names_the_cheapest_intact_mode_and_its_lead():
    cells = [_cell("static", "write", 4096, 1000), _cell("static", "cow", 4096, 800),
             _cell("static", "vmsplice", 4096, 500, corrupt=MIB // 4),
             _cell("static", "write", 65536, 600), _cell("static", "cow", 65536, 900),
             _cell("static", "vmsplice", 65536, 700),
             _cell("pool", "write", 4096, 995), _cell("pool", "vmsplice", 4096, 1000),
             _cell("fork", "cow", 4096, 5, received=MIB // 2), _cell("fork", "write", 4096, 20)]
    assert zerocopy.conclusion(cells, Costs()) == [
        "Conclusion (estimated cycles per MiB under the default cost model of tools/costmodel.py; only a mode "
        "that delivered every byte intact can win):",
        "  static: 4k cow, 20% below write (vmsplice cost less but corrupted 25.0% of what it delivered); "
        "64k write, 14% below vmsplice",
        "  pool: 4k write, 0.5% below vmsplice",
        "  fork: 4k write, the only mode that delivered every byte intact "
        "(cow cost less but delivered only 524,288 of 1,048,576 bytes)"]
    # The same cells with other figures give another conclusion: it is computed, not written in.
    cells[0].work = Work(instructions=700)
    cells[5].work = Work(instructions=600)
    assert zerocopy.conclusion(cells, Costs())[1] == (
        "  static: 4k write, 12% below cow (vmsplice cost less but corrupted 25.0% of what it delivered); "
        "64k write and vmsplice tied")


def test_the_conclusion_names_the_cost_model_and_follows_it():
    # A cell that copies pages against one that takes faults: which wins depends on the prices.
    copies = Cell("static", "write", 4096, MIB, received=MIB)
    copies.work = Work(pages_copied=256)
    faults = Cell("static", "cow", 4096, MIB, received=MIB)
    faults.work = Work(faults=40)
    assert zerocopy.conclusion([copies, faults], Costs())[1] == "  static: 4k write, 62% below cow"
    cold = Costs(copy_page_ns=1000)
    lines = zerocopy.conclusion([copies, faults], cold)
    assert lines[0].startswith("Conclusion (estimated cycles per MiB under the cost model of tools/costmodel.py "
                               "with copy_page_ns 1000 from --costs;")
    assert lines[1] == "  static: 4k cow, 84% below write"


def test_nothing_to_compare_or_nothing_intact_is_said_so():
    assert zerocopy.conclusion([_cell("fresh", "cow", 4096, 10)], Costs())[1] == \
        "  fresh: 4k cow alone, nothing to compare"
    assert zerocopy.conclusion([_cell("fresh", "cow", 4096, 10, corrupt=1), _cell("fresh", "write", 4096, 10,
                                                                                    received=0)], Costs())[1] == \
        "  fresh: 4k no mode delivered every byte intact"


@pytest.mark.parametrize(("workload", "size", "cpus"), [("fork", 4096, 1), ("static", 65536, 2)])
def test_the_rerun_command_reproduces_its_cell_from_any_directory(workload, size, cpus, tmp_path, capsys):
    csv_path = tmp_path / "zc.csv"
    assert cli.main(["experiment", "zerocopy", "--workloads", workload, "--modes", "cow", "--sizes", str(size),
                     "--total", str(4 * size), "--cpus", str(cpus), "--csv", str(csv_path), "--plot",
                     str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    (row,) = csv.DictReader(csv_path.open())
    (hint,) = [line for line in printed.splitlines() if line.startswith("rerun any cell with: ")]
    assert hint == f"rerun any cell with: {row['command']}   (from any directory)"
    assert row["command"].startswith(f"cd {shlex.quote(zerocopy.BUILD)} && vmgames run --ram 128m ")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stats_json = tmp_path / "stats.json"
    # The command as printed, with --stats-json among its options, run by a shell with vmgames on its PATH.
    command = row["command"].replace("vmgames run ", f"vmgames run --stats-json {shlex.quote(str(stats_json))} ")
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    rerun = subprocess.run(["sh", "-c", command], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PATH": path})
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout == f"zc_{workload}: 4 sends of {size} bytes by cow to the wire\n"
    counts = json.loads(stats_json.read_text())
    mib = int(row["received_bytes"]) / MIB
    assert counts["faults"]["cow-copy" if workload == "fork" else "protection"] > 0
    assert round(counts["tlb"]["shootdowns"] / mib, 3) == float(row["shootdowns_per_mib"])
    assert round(counts["tlb"]["ipis_taken"] / mib, 3) == float(row["ipis_per_mib"])
    if cpus > 1:
        assert counts["tlb"]["ipis_taken"] > 0
        return      # --stats counts the helper thread's sleeps too, which the experiment leaves out
    for kind, n in counts["faults"].items():
        if kind != "total":
            assert round(n / mib, 3) == float(row[f"faults_{kind}_per_mib"]), kind
    assert round(counts["instructions"] / mib, 3) == float(row["instructions_per_mib"])
    assert round(counts["syscalls"]["total"] / mib, 3) == float(row["syscalls_per_mib"])


def test_on_more_cpus_a_copy_on_write_send_pays_an_ipi_to_each_other_cpu_running_the_sender(tmp_path, capsys):
    csv_path = tmp_path / "zc.csv"
    status = cli.main(["experiment", "zerocopy", "--workloads", "static", "--modes", "write,cow", "--sizes", "64k",
                       "--total", "256k", "--cpus", "1,2,4", "--csv", str(csv_path), "--plot", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    rows = {(r["mode"], int(r["cpus"])): r for r in csv.DictReader(csv_path.open())}
    assert sorted(rows) == [(mode, cpus) for mode in ("cow", "write") for cpus in (1, 2, 4)]
    assert all(r["corrupt_bytes"] == "0" and r["received_bytes"] == "262144" for r in rows.values())

    def per_mib(mode, cpus, name):
        return float(rows[(mode, cpus)][f"{name}_per_mib"])

    # Copying sends change no PTE that another CPU may cache; one CPU has nobody to interrupt.
    assert [per_mib("write", cpus, "ipis") for cpus in (1, 2, 4)] == [0, 0, 0]
    assert per_mib("cow", 1, "shootdowns") == per_mib("cow", 1, "ipis") == 0
    # Every CPU ran only the sender's threads, so each shootdown interrupts every other CPU: 1, then 3.
    shootdowns = per_mib("cow", 2, "shootdowns")
    assert shootdowns > 0 and per_mib("cow", 4, "shootdowns") == shootdowns
    assert per_mib("cow", 2, "ipis") == shootdowns and per_mib("cow", 4, "ipis") == 3 * shootdowns
    # The helpers' own work is not the sends': the same faults on every machine, and the same syscalls but the
    # sender's clone of each helper and its futex waits for them to start, one more than the helpers at most
    # (each syscall is 4 per MiB of these 256 KiB).
    assert len({per_mib("cow", cpus, "faults") for cpus in (1, 2, 4)}) == 1
    syscalls = {cpus: per_mib("cow", cpus, "syscalls") for cpus in (1, 2, 4)}
    assert all(4 * cpus <= syscalls[cpus] - syscalls[1] <= 4 * (2 * cpus - 1) for cpus in (2, 4))
    assert rows[("cow", 4)]["command"].endswith("--cpus 4 --wire-rate 1024 --stats zc_static cow 64k 256k wire 4")
    assert "  static on 4 CPUs: 64k write, " in out
    assert int(rows[("cow", 4)]["cycles_per_mib"]) > int(rows[("cow", 2)]["cycles_per_mib"]) > \
        int(rows[("cow", 1)]["cycles_per_mib"])


def test_a_page_a_forked_child_lent_stays_as_lent_when_a_collapse_hands_it_to_the_parent():
    """On two CPUs the child lends its pages and exits while they are in flight; its exit collapses the
    parent's chain, moving a lent page into the parent's own object, where the parent's next write used to
    take a mere protection fault and write the page in flight.  A write to a held page copies it, as Linux's
    do_wp_page does for a page the pipe still references (since 5.8)."""
    (cell,) = zerocopy.run_all(["fork"], ["vmsplice"], [64 << 10], 4 << 20, zerocopy.DEFAULT_WIRE_RATE, cpus=[2])
    assert cell.received == 4 << 20
    assert cell.corrupt == 0
