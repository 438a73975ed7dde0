"""Pre-faulting (--prefault): exec maps the program file's resident pages at once, so that an image run again
takes no fault on them; what the program does and prints is the same."""

import json
import os
import subprocess

import pytest

from tools.cli import main
from tools.experiments.zerocopy import GCC_FLAGS

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def exec_self(tmp_path_factory):
    """userland/c/exec_self.c: it execs itself twice (once in a child), so its file's pages are resident."""
    path = str(tmp_path_factory.mktemp("prefault") / "exec_self")
    subprocess.run(["gcc", *GCC_FLAGS, "-o", path, os.path.join(ROOT, "userland", "c", "exec_self.c")], check=True)
    return path


def _run(program, tmp_path, capfd, *options):
    stats = tmp_path / "stats.json"
    status = main(["run", "--stats-json", str(stats), *options, program])
    return status, capfd.readouterr().out, json.loads(stats.read_text())


def test_an_image_run_again_takes_no_fault_on_the_pages_exec_mapped(exec_self, tmp_path, capfd):
    status, out, plain = _run(exec_self, tmp_path, capfd)
    assert status == 7 and plain["pages_prefaulted"] == 0
    prefaulted_status, prefaulted_out, prefaulted = _run(exec_self, tmp_path, capfd, "--prefault")
    assert (prefaulted_status, prefaulted_out) == (status, out)
    mapped = prefaulted["pages_prefaulted"]
    assert mapped > 0
    # Each page mapped at exec is a fault the image no longer takes: all of them on pages already resident.
    assert prefaulted["faults"]["resident"] == plain["faults"]["resident"] - mapped
    assert {k: v for k, v in prefaulted["faults"].items() if k not in ("resident", "total")} == \
        {k: v for k, v in plain["faults"].items() if k not in ("resident", "total")}


def test_pre_faulted_mappings_are_read_only_and_the_sanitizer_agrees(exec_self, capfd):
    # A write to a pre-faulted data page still faults and copies (the output says the data is the file's again),
    # and no PTE written at exec is left stale in a TLB.
    assert main(["run", "--prefault", "--check-tlb", exec_self]) == 7
    out, err = capfd.readouterr()
    assert "data from the file: 1" in out and err == ""
