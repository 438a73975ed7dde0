"""The memory-pressure experiments (README "Memory pressure"): each runs from the command line, prints a table
and its conclusion, writes a CSV and a plot, and refuses bad options before running anything."""

import csv

import pytest
from vmgames.tools.cli import main


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_pressure_compares_aging_with_fifo(tmp_path, capfd):
    status = main(["experiment", "pressure", "--sizes", "1.5", "--rounds", "30", "--policies", "accessed-bit,fifo",
                   "--csv", str(tmp_path / "p.csv"), "--plot", str(tmp_path)])
    out = capfd.readouterr().out
    assert status == 0
    rows = {row["policy"]: row for row in _rows(tmp_path / "p.csv")}
    assert set(rows) == {"accessed-bit", "fifo"} and all(row["ok"] == "True" for row in rows.values())
    # The hot fifth of the working set stays in with aging; FIFO lets it go every time round.
    assert int(rows["accessed-bit"]["swap-ins"]) < int(rows["fifo"]["swap-ins"])
    assert int(rows["accessed-bit"]["accessed bits cleared"]) > 0 == int(rows["fifo"]["accessed bits cleared"])
    assert "at 1.5x RAM, aging took" in out and "fewer: choosing by use history pays, as the paper says" in out
    assert (tmp_path / "pressure.png").stat().st_size > 0 and (tmp_path / "pressure.svg").exists()


def test_prefault_removes_the_program_code_faults_of_a_run_again(tmp_path, capfd):
    status = main(["experiment", "prefault", "--runs", "3", "--csv", str(tmp_path / "f.csv"),
                   "--plot", str(tmp_path)])
    out = capfd.readouterr().out
    assert status == 0
    rows = _rows(tmp_path / "f.csv")
    later = {row["setting"]: row for row in rows if row["run"] == "3"}
    assert int(later["prefault"]["resident"]) < int(later["plain"]["resident"])
    assert int(later["prefault"]["mapped_ahead"]) > 0 == int(later["plain"]["mapped_ahead"])
    # Fault-around maps ahead too, but only around the faults it takes: fewer of them, not none.
    assert int(later["prefault"]["resident"]) < int(later["fault-around"]["resident"]) < int(later["plain"]["resident"])
    assert int(later["prezero"]["prezeroed"]) == int(later["prezero"]["zero-fill"]) > 0
    assert later["plain"]["zero-fill"] == later["prefault"]["zero-fill"]
    assert "pre-faulting cut the faults on the program's pages already in memory" in out
    assert (tmp_path / "prefault.png").exists()


def test_rmap_probes_exactly_the_mappings_with_pv_entries(tmp_path, capfd):
    status = main(["experiment", "rmap", "--sharers", "1,4", "--csv", str(tmp_path / "r.csv"),
                   "--plot", str(tmp_path)])
    out = capfd.readouterr().out
    assert status == 0
    rows = {(row["sharers"], row["rmap"]): row for row in _rows(tmp_path / "r.csv")}
    for sharers in ("1", "4"):
        pv, scan = rows[(sharers, "pv")], rows[(sharers, "scan")]
        # The same pages are unmapped either way; pv entries read just the PTEs that map each.
        assert pv["shared_unmaps"] == scan["shared_unmaps"] and pv["single_unmaps"] == scan["single_unmaps"]
        assert pv["shared_probes"] == pv["shared_mappings"]
        assert int(pv["shared_mappings"]) == int(pv["shared_unmaps"]) * (int(sharers) + 1)
        assert int(scan["shared_probes"]) > 100 * int(pv["shared_probes"])
    assert "the reverse map pays for the mappings that exist" in out
    assert (tmp_path / "rmap.png").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["pressure", "--sizes", "two"], "--sizes: 'two' is not a list of numbers"),
    (["pressure", "--sizes", "40"], "--sizes: each working set is 0.1 to 16 times RAM"),
    (["pressure", "--policies", "lru"], "--policies: unknown 'lru'; choose from accessed-bit, unmap, fifo"),
    (["pressure", "--hot", "0"], "--hot is 1 to 100"),
    (["pressure", "--csv", "/no/such/dir/p.csv"], "--csv /no/such/dir/p.csv:"),
    (["prefault", "--runs", "1"], "--runs is 2 to 100"),
    (["prefault", "--program", "/no/such/program"], "--program /no/such/program: not an executable file"),
    (["rmap", "--sharers", "0,4"], "--sharers: '0,4' is not a list of numbers from 1 to 128"),
    (["rmap", "--plot", "/etc/passwd"], "--plot /etc/passwd: not a directory"),
    (["prefault", "--program"], "--program: the program to run again and again"),
    (["chains", "--jobs", "0"], "--jobs is 1 to 256"),
])
def test_bad_options_are_refused_before_anything_runs(arguments, message, capfd):
    assert main(["experiment", *arguments]) == 2
    assert message in capfd.readouterr().err


def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path, capfd):
    assert main(["experiment", "rmap", "--sharers", "1", "--csv", "/dev/full", "--plot", str(tmp_path)]) == 1
    assert capfd.readouterr().err == "vmgames: /dev/full: No space left on device\n"


def test_cells_side_by_side_give_what_one_after_another_gives(tmp_path, capfd):
    """Each cell is a deterministic run on a fresh machine: two workers write the same CSV, byte for byte."""
    for jobs in ("1", "2"):
        assert main(["experiment", "chains", "--seeds", "2", "--steps", "10", "--jobs", jobs,
                     "--csv", str(tmp_path / f"chains{jobs}.csv")]) == 0
    capfd.readouterr()
    assert (tmp_path / "chains1.csv").read_bytes() == (tmp_path / "chains2.csv").read_bytes()


def test_a_pressure_run_killed_for_want_of_memory_is_said_so_and_proves_nothing(tmp_path, capfd):
    status = main(["experiment", "pressure", "--swap", "1M", "--sizes", "2", "--rounds", "1", "--policies",
                   "accessed-bit,fifo", "--csv", str(tmp_path / "p.csv"), "--plot", str(tmp_path), "--jobs", "1"])
    out = capfd.readouterr().out
    assert status == 1
    assert "killed: no memory" in out and "aging took" not in out
    assert "killed for want of memory (more --swap, or smaller --sizes): accessed-bit 2x, fifo 2x" in out
