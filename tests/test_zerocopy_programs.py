"""The zero-copy programs of userland/c on vmgames and on the host's Linux kernel.

vmsplice lends pages: Linux lets a write after the vmsplice, before the
reader reads, change what the reader gets.  vmsplice_alias.c shows it in
four cases; vmgames must print exactly what Linux prints.  The workloads run
on Linux too when they send to a pipe (the wire and copy-on-write sends are
vmgames' own), and their pipe reader checks every byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from vmgames.tools.experiments.programs import FREESTANDING_FLAGS
from vmgames.tools.experiments.zerocopy import USERLAND_C

from tests.test_c_programs import assert_same_as_host, run_on_host

PROGRAMS = ["vmsplice_alias", "io_limits", "zc_static", "zc_fresh", "zc_pool", "zc_fork"]


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the C tests (.ci/run installs it)")
    out = tmp_path_factory.mktemp("zc")
    paths = {}
    for name in PROGRAMS:
        paths[name] = str(out / name)
        subprocess.run(["gcc", *FREESTANDING_FLAGS, "-o", paths[name], os.path.join(USERLAND_C, f"{name}.c")],
                       check=True)
    return paths


def test_vmsplice_aliases_the_buffer_as_on_linux(programs, run):
    result = assert_same_as_host(run, programs["vmsplice_alias"])
    assert result.status == 0
    assert result.stdout.decode() == (
        'write, then overwrite: reader got "sent-at-the-time"\n'
        'vmsplice a page, then overwrite: reader got "written-after-it"\n'
        'vmsplice 16 bytes mid-page, then overwrite: reader got "written-after-it"\n'
        'vmsplice, then munmap and map a fresh page there: reader got "kept-by-the-pipe"\n'
        "the fresh page holds zeros\n"
        'a child vmsplices and exits, then the parent overwrites: reader got "sent-at-the-time"\n')


def test_huge_lengths_get_the_error_codes_linux_gives_and_vmsplice_reads_a_read_end(programs, run):
    """access_ok before the cut to MAX_RW_COUNT; an iovec's signs, then its ranges; a lone segment cut first.

    vmsplice on a read end reads into the iovec, a pipe buffer at a time, and waits unless SPLICE_F_NONBLOCK.
    """
    result = assert_same_as_host(run, programs["io_limits"])
    assert result.status == 0
    lines = result.stdout.decode().splitlines()
    assert lines[:9] == [
        "write ~0: -14 EFAULT", "write 1<<63: -14 EFAULT", "write 1<<62: -14 EFAULT",
        "write up to the top: 8192", "write one past the top: -14 EFAULT",
        "write 0 at the top: 0", "write 0 past the top: -14 EFAULT",
        "read ~0 from an empty pipe: -14 EFAULT", "read 0 past the top: -14 EFAULT"]
    assert lines[9:20] == [
        "vmsplice 1<<63: -22 EINVAL", "vmsplice ~0: -22 EINVAL", "vmsplice one 1<<62: 8192",
        "vmsplice two 1<<62: -14 EFAULT", "vmsplice 1<<62 then 1<<63: -22 EINVAL",
        "vmsplice a page, then one past the top: -14 EFAULT", "vmsplice 1<<32 | 1 segments: 8192",
        "writev 1<<63: -22 EINVAL", "writev one 1<<62: 8192", "writev two 1<<62: -14 EFAULT",
        "writev 1<<32 | 1 segments: 8192"]
    assert lines[20:24] == [
        "vmsplice a file, 1<<63: -22 EINVAL", "vmsplice a file, iovec unmapped: -14 EFAULT",
        "vmsplice a file, no segments: 0", "vmsplice a file: -9 EBADF"]
    assert lines[24:] == [
        'read end: "hello" and " world", in all: 11',
        "read end, empty, SPLICE_F_NONBLOCK: -11 EAGAIN",
        "read end, into the hole: -14 EFAULT", "  then read: 11",
        "read end, two buffers, the second into the hole: 11", "  then read: 4096",
        "read, two buffers, the second into the hole: 11", "  then read: 4096",
        "blocking pipe, read end, empty, SPLICE_F_NONBLOCK: -11 EAGAIN",
        "blocking pipe, full, SPLICE_F_NONBLOCK: -11 EAGAIN",
        "read end, empty, O_NONBLOCK pipe: waits for the writer: 4",
        "read end, no writer left: 0"]


@pytest.mark.parametrize("name", ["zc_static", "zc_fresh", "zc_pool", "zc_fork"])
def test_copying_sends_through_a_pipe_arrive_intact_on_both_kernels(programs, run, name):
    result = assert_same_as_host(run, programs[name], "write", "4k", "64k", "pipe")
    assert result.stdout.decode() == (f"{programs[name]}: 16 sends of 4096 bytes by write to the pipe\n"
                                      "reader: 65536 bytes, 0 differ from what was sent\n")


def test_a_static_buffer_lent_by_vmsplice_arrives_changed_on_both_kernels(programs, run):
    """How many bytes change depends on when the reader runs; that some do is Linux's behaviour."""
    args = ["vmsplice", "64k", "512k", "pipe"]
    host_stdout, host_status = run_on_host([programs["zc_static"], *args])
    result = run(programs["zc_static"], *args)
    for stdout, status in ((host_stdout, host_status), (result.stdout, result.status)):
        assert status == 0
        reader = stdout.decode().splitlines()[-1]
        assert reader.startswith("reader: 524288 bytes, ") and not reader.endswith(" 0 differ from what was sent")


def test_a_forked_child_lending_pages_is_not_corrupted_by_its_parent_as_on_linux(programs, run):
    """The parent writes the next round while the child's lent pages are in the pipe: its write faults copy."""
    result = assert_same_as_host(run, programs["zc_fork"], "vmsplice", "4k", "64k", "pipe")
    assert result.stdout.decode().endswith("reader: 65536 bytes, 0 differ from what was sent\n")


def test_bad_arguments_are_refused_with_usage(programs, run):
    result = assert_same_as_host(run, programs["zc_pool"], "write", "4k", "6k")
    assert result.status == 2
    assert result.stdout.decode().splitlines()[0] == f"{programs['zc_pool']}: TOTAL must be a multiple of SIZE"
    result = assert_same_as_host(run, programs["zc_pool"], "splice", "4k", "8k")
    assert result.stdout.decode().splitlines()[0] == f"{programs['zc_pool']}: MODE must be write, cow or vmsplice"
