"""Programs built by gcc -static -nostdlib behave on vmgames as on the host's Linux kernel.

Each program in userland/c prints what it observes, in an order its wait4
calls force, and exits with a status; the same binary runs natively and on
vmgames, and stdout and status must be identical.  Where vmgames and Linux
differ on purpose (getrusage's fault counts), vmgames' own numbers are held
exactly and the difference is explained in docs/linux-comparison.md.
"""

import io
import os
import shutil
import subprocess

import pytest
from vmgames.tools.boot import boot

from tests.conftest import assert_no_leak, check_before_every_syscall

USERLAND_C = os.path.join(os.path.dirname(__file__), "..", "userland", "c")
# -fno-builtin and -fno-tree-loop-distribute-patterns: there is no libc, so gcc
# must not turn loops into calls to memset, memcpy or strlen.
CFLAGS = ["-static", "-nostdlib", "-O2", "-ffreestanding", "-fno-builtin", "-fno-tree-loop-distribute-patterns",
          "-fno-stack-protector", "-fno-pie", "-no-pie", "-masm=intel", "-Wall"]
PROGRAMS = ["segments", "fork_tree", "cow_isolation", "exec_self", "brk_fork", "segv_cases", "rusage_faults", "pipes",
            "abi_edges"]
REPOSITORY = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Every program of userland/c, compiled once: name -> path."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the C tests (.ci/run installs it)")
    out = tmp_path_factory.mktemp("c")
    paths = {}
    for name in PROGRAMS:
        paths[name] = str(out / name)
        subprocess.run(["gcc", *CFLAGS, "-o", paths[name], os.path.join(USERLAND_C, f"{name}.c")], check=True)
    return paths


def run_on_host(argv, cwd=None, executable=None):
    """(stdout, status as a shell reports it: the exit code, or 128 + the signal)."""
    host = subprocess.run(argv, capture_output=True, cwd=cwd, executable=executable, timeout=60)
    status = 128 - host.returncode if host.returncode < 0 else host.returncode
    return host.stdout, status


def assert_same_as_host(run, path, *args):
    """Run the binary on both kernels; returns vmgames' run once stdout and status agree."""
    host_stdout, host_status = run_on_host([path, *args])
    result = run(path, *args)
    assert result.stdout.decode() == host_stdout.decode()
    assert result.status == host_status
    return result


def test_segments_are_loaded_as_on_the_host(programs, run):
    result = assert_same_as_host(run, programs["segments"], "one", "two")
    assert result.status == (5 + ord("b") + 3) & 0xFF
    assert result.stdout == f"segments: {programs['segments']} one two\n".encode()


def test_a_fork_tree_prints_in_the_order_wait4_forces(programs, run):
    result = assert_same_as_host(run, programs["fork_tree"])
    lines = result.stdout.decode().splitlines()
    assert result.status == 15                        # 1 + 2 + 4 + 8 processes
    assert lines[:4] == ["root: level 0", "root.0: level 1", "root.0.0: level 2", "root.0.0.0: level 3"]
    assert sum(line.endswith(": level 3") for line in lines) == 8
    assert all("(the pid fork returned)" in line for line in lines if ": child " in line)
    assert "getppid" not in result.stdout.decode()
    assert lines[-1] == "root: 15 processes; wait4 with no children left returns -10"   # -ECHILD
    assert result.recorder.count("syscall", "fork") == 14


def test_copy_on_write_keeps_each_process_writes_its_own(programs, run):
    result = assert_same_as_host(run, programs["cow_isolation"])
    assert result.status == 0
    assert "(wrong)" not in result.stdout.decode()
    assert result.stdout.decode().endswith("parent sees 3 in private mmap\nparent sees 2 in shared mmap\n")


def test_exec_of_argv0_as_given_with_new_arguments(programs, run):
    result = assert_same_as_host(run, programs["exec_self"])
    assert result.status == 7
    assert result.stdout.decode() == (
        "first image: argc 1, data from the file: 1\n"
        "exec'd child: argc 4 [child] [one] [two], data from the file: 1\n"
        "first image: child exited 42\n"
        "first image: execve of a missing program returns -2, data still 2\n"
        "exec'd over the first image: argc 2 [last], data from the file: 1\n")
    assert result.recorder.count("proc", "exec") == 3     # the first image, the child's, the last


@pytest.mark.parametrize("argv0", ["./exec_self", "exec_self"])
def test_exec_of_a_relative_argv0(programs, argv0):
    """A relative argv[0] is a path from the current directory: the host's cwd, vmgames' root."""
    directory = os.path.dirname(programs["exec_self"])
    host_stdout, host_status = run_on_host([argv0], cwd=directory, executable=programs["exec_self"])
    out = io.BytesIO()
    kernel = boot(16 << 20, root=directory, stdout=out, stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.lookup(argv0), [argv0], [])
    check_before_every_syscall(kernel)
    kernel.run()
    assert_no_leak(kernel)
    assert out.getvalue() == host_stdout
    assert proc.shell_status == host_status == 7


def test_a_brk_heap_is_copied_by_fork_and_then_private(programs, run):
    result = assert_same_as_host(run, programs["brk_fork"])
    assert result.status == 0
    assert ": NO" not in result.stdout.decode()
    assert result.stdout.decode().count(": yes") == 15


def test_bad_accesses_kill_only_the_child_with_sigsegv(programs, run):
    result = assert_same_as_host(run, programs["segv_cases"])
    assert result.stdout.decode() == (
        "read of NULL: killed by signal 11\n"
        "write to text: killed by signal 11\n"
        "write to a page mprotect made read-only: killed by signal 11\n"
        "call into a non-executable mmap: killed by signal 11\n"
        "read of a munmapped hole: killed by signal 11\n"
        "exit(3), for comparison: exited 3\n"
        "kill(SIGKILL) of a spinning child: killed by signal 9\n"
        "parent survived\n")
    assert result.status == 5
    faults = result.recorder.by_kind("fault")
    assert faults["fatal"] == 5
    assert result.recorder.count("proc", "signal") == 6   # five faults and one kill


# The numbers: Linux shows 1024 / 1024 / 1024 / 0 for this sequence, and so does vmgames.
SAME_ON_BOTH = ["touch: 1024", "child writes after fork: 1024", "parent writes after child exit: 1024",
                "parent writes again: 0"]


def test_getrusage_minor_faults_across_fork(programs, run):
    host_stdout, host_status = run_on_host([programs["rusage_faults"]])
    result = run(programs["rusage_faults"])
    host_lines, our_lines = host_stdout.decode().splitlines(), result.stdout.decode().splitlines()
    assert host_status == result.status == 0          # every page held what its process wrote
    assert host_lines[:4] == our_lines[:4] == SAME_ON_BOTH
    # A child that reads first: Linux copied the parent's PTEs at fork (read-only), so its reads
    # do not fault; vmgames' child starts with empty page tables and takes a fault per page.
    assert host_lines[4:] == ["second child reads after fork: 0", "second child writes after reading: 1024",
                              "parent writes after second child exit: 1024"]
    assert our_lines[4:] == ["second child reads after fork: 1024", "second child writes after reading: 1024",
                             "parent writes after second child exit: 1024"]
    # Where Linux reuses a page nobody else maps (do_wp_page), vmgames pushes a shadow and moves
    # the page up into it: a fault all the same, with no copy.
    faults = result.faults()
    # The 1024 reads, and the children's first touches of text and rodata already in the page cache.
    assert faults["resident"] == 1024 + 4
    assert faults["cow-move"] >= 2 * 1024 and faults["cow-copy"] >= 2 * 1024


def test_pipes_between_processes(programs, run):
    result = assert_same_as_host(run, programs["pipes"])
    assert result.stdout.decode() == (
        "producer: exited 0\n"
        "parent read: line 1 from the exec'd producer\n"
        "parent read: line 2 from the exec'd producer\n"
        "parent read: line 3 from the exec'd producer\n"
        "parent read 96 bytes, then EOF (0)\n"
        "consumer: sum 5050, read returned 0 at the end\n"
        "consumer: exited 0\n"
        "producer of 1..100: exited 0\n"
        "writer of 200000 bytes: exited 0\n"
        "reader got 200000 bytes, 0 wrong\n"
        "writer to a pipe with no reader: killed by signal 13\n")
    assert result.status == 0


def test_syscall_numbers_arguments_and_range_errors_are_linux(programs):
    """Junk in the upper half of int arguments, munmap/mprotect range errors (with 64-bit wraps), max_protection,
    directories, process groups in kill and wait4, execve's EACCES and argument lists.

    The probe opens README.md and execs Makefile and userland/, so both kernels run it from the repository root.
    """
    host_stdout, host_status = run_on_host([programs["abi_edges"]], cwd=REPOSITORY)
    out = io.BytesIO()
    kernel = boot(16 << 20, root=REPOSITORY, stdout=out, stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.open_host(programs["abi_edges"]), [programs["abi_edges"]], [])
    check_before_every_syscall(kernel)
    kernel.run()
    assert_no_leak(kernel)
    assert out.getvalue().decode() == host_stdout.decode()
    assert proc.shell_status == host_status == 0
    lines = out.getvalue().decode().splitlines()
    # The classes the issue names, so that a host that changed its answers is noticed too.
    for line in ("openat(AT_FDCWD as 0x00000000ffffff9c): 1", "munmap(kernel half): EINVAL",
                 "munmap(area, ~0): EINVAL", "munmap(top page + 1 page past): EINVAL", "mprotect(PROT_SEM): 0",
                 "  mprotect(PROT_READ | PROT_WRITE): EACCES", "execve(a directory): EACCES",
                 "rax = 2^32 + getpid is getpid: 1", "open(README.md/): ENOTDIR", "open(.) is a descriptor: 1",
                 "wait4(child) again: it was reaped: ECHILD", "mprotect(length wraps to 0): ENOMEM",
                 "the area is still writable: 1", "exec'd with no argv: argc: 1",
                 "the image with 5000 arguments exited: 42", "arch_prctl(ARCH_SET_FS, TASK_SIZE_MAX + 0x800): EPERM"):
        assert line in lines
