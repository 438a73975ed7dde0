"""--snapshot-at: the shadow chains of a real run, drawn as the paper draws them."""

import re
import shutil

import pytest
from vmgames.tools.cli import main

from tests.programs import FORK_AND_WRITE


def test_after_fork_and_the_parents_write_the_chain_is_as_the_paper_draws_it(build, tmp_path):
    program, dot = build(FORK_AND_WRITE), tmp_path / "vm.dot"
    # 13 instructions: the parent has forked and written 2 into its shadow; the child has not run.
    assert main(["run", "--snapshot-at", "13", "--snapshot", str(dot), program]) == 82
    text = dot.read_text()
    assert 'label="t = 13 instructions"' in text
    parent_bss = re.search(r'p1e1 \[shape=box, label="0x402000-0x403000\\nbss rw- C-  1 resident"\];\n'
                           r"    p1e1 -> o(\d+);", text)
    child_bss = re.search(r'p2e1 \[shape=box, label="0x402000-0x403000\\nbss rw- CN  0 resident"\];\n'
                          r"    p2e1 -> o(\d+);", text)
    assert parent_bss and child_bss
    shadow, backing = parent_bss.group(1), child_bss.group(1)
    # The parent's shadow (C1) is backed by the object the child still maps directly (B).
    assert f'o{shadow} -> o{backing} [label="backing"];' in text
    assert f'o{backing} [shape=ellipse, label="object {backing}\\nanonymous\\nref 2  shd 1\\n1 of 1 pages"];' in text


def test_a_snapshot_at_exit_is_taken_before_the_first_exit_tears_anything_down(build, tmp_path):
    program, dot = build(FORK_AND_WRITE), tmp_path / "exit.dot"
    assert main(["run", "--snapshot-at", "exit", "--snapshot", str(dot), program]) == 82
    text = dot.read_text()
    # The first process to exit is the child: both shadows (C1, C2) still stand over B.
    assert "the exit of prog [2]" in text
    assert text.count('label="backing"') == 2


def test_bad_snapshot_requests_are_refused(build, capsys):
    program = build(FORK_AND_WRITE)
    assert main(["run", "--snapshot-at", "soon", program]) == 2
    assert "--snapshot-at takes a number of instructions or 'exit'" in capsys.readouterr().err
    assert main(["run", "--snapshot-at", "10", "--fast", program]) == 2
    assert "cannot be used with --fast" in capsys.readouterr().err
    # A file to write to but no moment to write it at is not quietly ignored.
    assert main(["run", "--snapshot", "vm.dot", program]) == 2
    assert capsys.readouterr().err == "vmgames: --snapshot FILE needs --snapshot-at N|exit (when to take it)\n"


def test_a_snapshot_due_after_the_run_ended_is_missed_with_a_warning(build, tmp_path, capsys):
    program, dot = build(FORK_AND_WRITE), tmp_path / "vm.dot"
    assert main(["run", "--snapshot-at", "1000000", "--snapshot", str(dot), program]) == 82
    err = capsys.readouterr().err
    (ended,) = re.findall(r"the run ended at t = (\d+), before 1,000,000: no snapshot\n", err)
    assert 13 < int(ended) < 100 and not dot.exists()
    # Due as the last process exits: nothing is left to draw.
    assert main(["run", "--snapshot-at", ended, "--snapshot", str(dot), program]) == 82
    missed = f"vmgames: the run ended at t = {ended}, as instruction {ended} ran: no snapshot\n"
    assert capsys.readouterr().err == missed


def test_the_snapshot_lists_each_map_as_procstat_does(build, tmp_path, capsys):
    program, dot = build(FORK_AND_WRITE), tmp_path / "vm.dot"
    assert main(["run", "--snapshot-at", "13", "--snapshot", str(dot), program]) == 82
    text = (tmp_path / "vm.txt").read_text()
    assert text.rstrip("\n") in capsys.readouterr().err
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("PID")]
    bss = {row[0]: row[1:] for row in rows if row[1] == "0x402000"}
    # The parent's bss entry maps its own shadow (C1: one reference, no shadow of its own, the copy it
    # wrote); the child's still maps B, needs-copy, referenced by the child and by C1, shadowed by C1.
    assert bss["1"] == ["0x402000", "0x403000", "rw-", "1", "0", "1", "0", "C-", "df"]
    assert bss["2"] == ["0x402000", "0x403000", "rw-", "1", "0", "2", "1", "CN", "df"]
    # The text maps the file's object: referenced by both text entries and by the file cache.
    text_entries = [row for row in rows if row[1] == "0x401000"]
    assert [row[3:] for row in text_entries] == [["r-x", "1", "0", "3", "0", "CN", "vn", program]] * 2


def test_a_snapshot_that_cannot_be_written_is_refused_before_the_run(build, tmp_path, capsys):
    program = build(FORK_AND_WRITE)
    assert main(["run", "--snapshot-at", "10", "--snapshot", "/proc/nope/s.dot", program]) == 2
    assert capsys.readouterr().err == "vmgames: --snapshot /proc/nope/s.dot: No such file or directory\n"
    assert main(["run", "--snapshot-at", "exit", "--snapshot", str(tmp_path), program]) == 2
    assert capsys.readouterr().err == f"vmgames: --snapshot {tmp_path}: Is a directory\n"
    (tmp_path / "vm.txt").mkdir()
    dot = tmp_path / "vm.dot"
    assert main(["run", "--snapshot-at", "10", "--snapshot", str(dot), program]) == 2
    beside = tmp_path / "vm.txt"
    assert capsys.readouterr().err == f"vmgames: --snapshot {dot} (and {beside} beside it): Is a directory\n"
    assert not dot.exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed (.ci/run installs it)")
def test_the_snapshot_is_drawn_as_svg_when_graphviz_is_there(build, tmp_path, capsys):
    import xml.etree.ElementTree as ElementTree

    dot = tmp_path / "vm.dot"
    assert main(["run", "--snapshot-at", "13", "--snapshot", str(dot), build(FORK_AND_WRITE)]) == 82
    svg = tmp_path / "vm.svg"
    assert f"vmgames: and drawn in {svg}\n" in capsys.readouterr().err
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # The drawing holds the picture's title and the processes' boxes.
    texts = {node.text for node in root.iter("{http://www.w3.org/2000/svg}text")}
    assert "t = 13 instructions" in texts and "prog [1]" in texts


def test_without_graphviz_only_the_dot_file_is_written_and_it_says_so(build, tmp_path, capsys, monkeypatch):
    program = build(FORK_AND_WRITE)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    dot = tmp_path / "vm.dot"
    assert main(["run", "--snapshot-at", "13", "--snapshot", str(dot), program]) == 82
    err = capsys.readouterr().err
    assert err.count(f"vmgames: graphviz's dot not found: wrote only {dot}; install graphviz for the SVG\n") == 1
    assert dot.exists() and not (tmp_path / "vm.svg").exists()


def test_a_dot_that_fails_is_reported_not_taken_for_a_drawing(build, tmp_path, capsys, monkeypatch):
    program = build(FORK_AND_WRITE)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "dot").write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 3\n")
    (bin_ / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_))
    assert main(["run", "--snapshot-at", "13", "--snapshot", str(tmp_path / "vm.dot"), program]) == 82
    err = capsys.readouterr().err
    assert "vmgames: dot failed (exit status 3: Error: syntax error in line 1): no SVG drawn\n" in err
    assert "drawn in" not in err
