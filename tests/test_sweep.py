"""vmgames sweep: a spec's grid, a row per run, the same rows wherever they ran, --resume, and bad specs refused."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from vmgames.tools.experiments.cells import JOURNAL_SUFFIX

import vmgames
from tests.programs import VMGAMES

ROOT = Path(__file__).resolve().parent.parent
TOUCH = ROOT / "build" / "touch"

SPEC = f"""
program = "{TOUCH}"
args = ["{{pages}}"]

[options]
ram = "4M"

[grid]
swap = ["8M", "16M"]
pages = [200, 1500]
"""


def sweep(tmp_path: Path, spec: str, *options: str) -> subprocess.CompletedProcess:
    path = tmp_path / "grid.toml"
    path.write_text(spec)
    return subprocess.run([*VMGAMES, "sweep", str(path), *options], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_point_is_a_row_with_the_counters_of_that_run(tmp_path):
    done = sweep(tmp_path, SPEC, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["4 runs written to grid.csv", "and to grid.parquet"]
    table = rows(tmp_path / "grid.csv")
    assert [(row["swap"], row["pages"], row["status"]) for row in table] == [
        ("8M", "200", "0"), ("8M", "1500", "0"), ("16M", "200", "0"), ("16M", "1500", "0")]
    alone = vmgames.run(str(TOUCH), ["1500"], ram="4M", swap="16M")
    assert table[3]["faults.zero-fill"] == str(alone.counters["faults"]["zero-fill"])
    assert table[3]["freebsd_vmstat.swappgsout"] == str(alone.counters["freebsd_vmstat"]["swappgsout"]) != "0"
    assert table[0]["freebsd_vmstat.swappgsout"] == "0"      # 200 pages fit in 4 MiB


def test_the_rows_are_the_same_side_by_side_and_in_parquet(tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert sweep(one, SPEC, "--jobs", "1").returncode == 0
    assert sweep(two, SPEC, "--jobs", "2").returncode == 0
    assert (one / "grid.csv").read_bytes() == (two / "grid.csv").read_bytes()
    table = pyarrow_parquet.read_table(two / "grid.parquet").to_pylist()
    assert [str(row["faults.total"]) for row in table] == [row["faults.total"] for row in rows(two / "grid.csv")]


def test_resume_runs_only_the_points_not_yet_done(tmp_path):
    small = SPEC.replace('pages = [200, 1500]', 'pages = [200]')
    assert sweep(tmp_path, small, "--jobs", "1").returncode == 0     # one at a time: the journal in grid order
    journal = tmp_path / f"grid.csv{JOURNAL_SUFFIX}"
    assert len(journal.read_text().splitlines()) == 1 + 2
    # A line cut short when a sweep was killed: that point runs again.
    journal.write_text(journal.read_text() + '{"cell": "swap=8M pages=1500", "res')
    done = sweep(tmp_path, SPEC, "--resume")
    assert done.returncode == 0, done.stderr
    lines = journal.read_text().splitlines()
    assert lines[3] == '{"cell": "swap=8M pages=1500", "res'
    names = [line.split('"')[3] for line in lines[1:] if line.endswith("}")]
    assert names[:2] == ["swap=8M pages=200", "swap=16M pages=200"]
    assert sorted(names[2:]) == ["swap=16M pages=1500", "swap=8M pages=1500"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert sweep(fresh, SPEC).returncode == 0
    assert (tmp_path / "grid.csv").read_bytes() == (fresh / "grid.csv").read_bytes()


def test_resume_refuses_a_journal_of_other_settings(tmp_path):
    assert sweep(tmp_path, SPEC).returncode == 0
    changed = sweep(tmp_path, SPEC.replace('ram = "4M"', 'ram = "8M"'), "--resume")
    assert changed.returncode == 1
    assert changed.stderr.startswith("vmgames: --resume: ") and "other settings" in changed.stderr
    assert sweep(tmp_path / "..", SPEC, "--resume", "--csv", "elsewhere.csv").stderr.startswith(
        "vmgames: --resume: no journal of finished cells at elsewhere.csv.cells")


@pytest.mark.parametrize("spec, message", [
    ("program = [", "grid.toml: not a TOML file"),
    ('args = ["1"]', 'grid.toml: program = "PATH" is missing'),
    (f'program = "{TOUCH}"\nprogam = "x"', "grid.toml: unknown key progam"),
    ('program = "/no/such/program"', "grid.toml: program /no/such/program: not an executable file"),
    (f'program = "{TOUCH}"\nargs = ["{{pages}}"]', "grid.toml: args use {pages}, which the grid does not give"),
    (f'program = "{TOUCH}"\n[grid]\nrams = ["4M"]', "grid.toml: grid.rams is no option of vmgames run"),
    (f'program = "{TOUCH}"\n[grid]\nram = []', "grid.toml: grid.ram is a list of one or more values"),
    (f'program = "{TOUCH}"\n[grid]\nram = ["4M", "1K"]',
     "grid.toml: ram=1K: --ram must be at least 1M and a multiple of 4K, not 1024"),
    (f'program = "{TOUCH}"\n[options]\npage-used = "sometimes"',
     "grid.toml: the one run: --page-used: 'sometimes' is not one of accessed-bit, unmap, fifo"),
    (f'program = "{TOUCH}"\n[grid]\ncpus = ["2"]', "grid.toml: cpus=2: --cpus takes a whole number, not '2'"),
    (f'program = "{TOUCH}"\n[options]\nram = "4M"\n[grid]\nram = ["8M"]', "grid.toml: ram is both in [options] and"),
    ("program = 5", "grid.toml: program is the path of the program to run, a string, not 5"),
    (f'program = "{TOUCH}"\nargs = [10]', "grid.toml: args is a list of strings"),
    (f'program = "{TOUCH}"\nargs = ["{{n}}"]\n[grid]\nn = [[1, 2]]', "grid.toml: grid.n: each value is a string"),
    (f'program = "{TOUCH}"\nargs = ["{{n}}"]\n[grid]\nn = [5, 5]', "grid.toml: grid.n gives a value twice"),
    (f'program = "{TOUCH}"\nargs = ["{{status}}"]\n[grid]\nstatus = [5]',
     "grid.toml: grid.status: each row has a column 'status' already"),
    (f'program = "{TOUCH}"\nargs = ["{{instructions}}"]\n[grid]\ninstructions = [5]',
     "grid.toml: grid.instructions: each row has"),
    (f'program = "{TOUCH}"\n[options]\npage_used = "unmap"\npage-used = "fifo"',
     "grid.toml: [options] gives page_used twice"),
])
def test_a_spec_that_cannot_run_is_refused_before_any_run(tmp_path, spec, message):
    done = sweep(tmp_path, spec)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"vmgames: {tmp_path / message}" if message.startswith("grid.toml") else message)
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "grid.csv").exists()


def test_a_missing_spec_is_one_line(tmp_path):
    done = subprocess.run([*VMGAMES, "sweep", str(tmp_path / "none.toml")], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (2, f"vmgames: {tmp_path / 'none.toml'}: No such file or directory\n")


def test_the_bundled_example_spec_runs(tmp_path):
    (tmp_path / "build").symlink_to(ROOT / "build")
    done = subprocess.run([*VMGAMES, "sweep", str(ROOT / "sweeps" / "ram.toml")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    table = rows(tmp_path / "ram.csv")
    swapped_in = {(row["ram"], row["pages"]): int(row["freebsd_vmstat.swappgsin"]) for row in table}
    assert swapped_in[("6M", "2048")] > swapped_in[("8M", "2048")] > swapped_in[("12M", "2048")] == 0
    assert all(row["status"] == "0" for row in table)


def test_a_column_of_mixed_kinds_is_text_in_parquet_and_a_program_that_cannot_start_is_a_row(tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    spec = f'''program = "{TOUCH}"\nargs = ["{{n}}"]\n[grid]\nn = [1, "2"]\n'''
    done = sweep(tmp_path, spec, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert [row["n"] for row in pyarrow_parquet.read_table(tmp_path / "grid.parquet").to_pylist()] == ["1", "2"]
    done = sweep(tmp_path, f'program = "{script}"\n[grid]\nseed = [1]\n', "--jobs", "1")
    assert done.returncode == 0, done.stderr
    (row,) = rows(tmp_path / "grid.csv")
    assert row["status"] == "126" and "cannot execute" in row["death"]


def test_ctrl_c_ends_a_sweep_on_two_workers_without_hanging(tmp_path):
    import signal
    import time

    path = tmp_path / "big.toml"
    path.write_text(f'program = "{ROOT / "build" / "pressure"}"\nargs = ["1500", "20", "{{rounds}}"]\n'
                    '[options]\nram = "4M"\nswap = "16M"\n[grid]\nrounds = [300, 301, 302, 303, 304, 305]\n')
    sweeping = subprocess.Popen([*VMGAMES, "sweep", str(path), "--jobs", "2"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    sweeping.send_signal(signal.SIGINT)
    _, err = sweeping.communicate(timeout=60)
    assert sweeping.returncode == 130, err
    assert b"Traceback" not in err
