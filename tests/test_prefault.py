"""Pre-faulting (--prefault): exec maps the program file's resident pages at once, so that an image run again
takes no fault on them; what the program does and prints is the same."""

import json
import os
import subprocess

import pytest
from vmgames.tools.cli import main
from vmgames.tools.experiments.programs import FREESTANDING_FLAGS

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def exec_self(tmp_path_factory):
    """userland/c/exec_self.c: it execs itself twice (once in a child), so its file's pages are resident."""
    path = str(tmp_path_factory.mktemp("prefault") / "exec_self")
    subprocess.run(["gcc", *FREESTANDING_FLAGS, "-o", path, os.path.join(ROOT, "userland", "c", "exec_self.c")],
                   check=True)
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


MMAP_TWICE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
/* Map the first 64 pages of our own file twice, reading a byte of each page each time: the first pass reads
   the file in, the second finds every page in memory. */
int main(int argc, char **argv)
{
    int fd = open(argv[0], O_RDONLY);
    long sum = 0;
    for (int pass = 0; pass < 2; pass++) {
        volatile char *file = mmap(NULL, 64 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (file == MAP_FAILED)
            return 1;
        for (int i = 0; i < 64; i++)
            sum += file[i * 4096];
        munmap((void *)file, 64 * 4096);
    }
    printf("%ld\n", sum);
    return 0;
}
"""


@pytest.fixture(scope="module")
def mmap_twice(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mmap_twice")
    (directory / "mmap_twice.c").write_text(MMAP_TWICE)
    path = str(directory / "mmap_twice")
    subprocess.run(["gcc", "-static", "-O2", "-o", path, str(directory / "mmap_twice.c")], check=True)
    assert os.path.getsize(path) > 64 * 4096
    return path


def test_mmap_of_a_file_in_memory_maps_its_pages_at_once_and_fault_around_maps_them_in_sixteens(
        mmap_twice, tmp_path, capfd):
    status, out, plain = _run(mmap_twice, tmp_path, capfd)
    assert status == 0 and out == subprocess.run([mmap_twice], capture_output=True, text=True).stdout
    # --prefault: the second mmap maps the 64 pages the first pass read in (and exec mapped the program's).
    status, prefaulted_out, prefaulted = _run(mmap_twice, tmp_path, capfd, "--prefault")
    assert (status, prefaulted_out) == (0, out)
    assert prefaulted["faults"]["resident"] <= plain["faults"]["resident"] - 64
    assert prefaulted["pages_prefaulted"] >= 64 and prefaulted["pages_faulted_around"] == 0
    # --fault-around: each read fault on the file maps the resident pages of its aligned 16, so the second pass
    # takes one fault per 16 pages, 4 instead of 64.
    status, around_out, around = _run(mmap_twice, tmp_path, capfd, "--fault-around")
    assert (status, around_out) == (0, out)
    assert around["faults"]["resident"] <= plain["faults"]["resident"] - 60
    assert around["pages_faulted_around"] >= 60 and around["pages_prefaulted"] == 0


def test_prefault_and_fault_around_are_one_or_the_other(capfd):
    with pytest.raises(SystemExit):
        main(["run", "--prefault", "--fault-around", "build/hello"])
    assert "not allowed with argument --prefault" in capfd.readouterr().err
