"""Programs built with glibc and musl (gcc -static, musl-gcc -static) run on vmgames as on the host's kernel.

Each program in userland/libc prints what it observes, in an order its own
waits force, and exits with a status; the same binary runs natively and on
vmgames, and stdout and status must be identical.  Then the counters show
the VM side of what the C library did: threads share one address space (no
CR3 load between them), vfork copies nothing.
"""

import os
import re
import shutil
import subprocess

import pytest
from vmgames.kernel.exec import ET_DYN_BASE
from vmgames.tools import stats

from tests.test_c_programs import run_on_host
from tests.test_cli import vmgames

USERLAND_LIBC = os.path.join(os.path.dirname(__file__), "..", "userland", "libc")
PROGRAMS = ["threads", "processes", "timing", "thread_exits", "signals", "memory", "errors"]
ETIMEDOUT_TEXT = {"glibc": "Connection timed out", "musl": "Operation timed out"}    # each one's strerror
COMPILERS = {"glibc": ["gcc", "-static", "-O1", "-pthread"], "musl": ["musl-gcc", "-static", "-O1"]}


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """(program, libc) -> path of the binary, every program compiled with both C libraries."""
    out = tmp_path_factory.mktemp("libc")
    paths = {}
    for libc, command in COMPILERS.items():
        if shutil.which(command[0]) is None:
            pytest.fail(f"{command[0]} is needed for the C library tests (.ci/run installs it)")
        for name in PROGRAMS:
            path = str(out / f"{name}.{libc}")
            subprocess.run([*command, "-o", path, os.path.join(USERLAND_LIBC, f"{name}.c")], check=True)
            paths[name, libc] = path
    return paths


def same_as_host(run, path, *args):
    host_stdout, host_status = run_on_host([path, *args])
    result = run(path, *args, ram=64 << 20)
    assert result.stdout.decode() == host_stdout.decode()
    assert result.status == host_status
    return result


@pytest.mark.parametrize("libc", COMPILERS)
def test_threads_share_a_counter_a_condition_and_their_exit_values(programs, run, libc):
    result = same_as_host(run, programs["threads", libc])
    assert result.stdout == b"counter 40000 sum 64 same pid 1\n"
    kernel = result.kernel
    assert kernel.recorder.count("proc", "thread") == 4
    assert kernel.recorder.count("proc", "thread-exit") == 4
    assert kernel.recorder.count("proc", "exit") == 1
    # Five threads of one process: the address space is loaded once and never switched.
    assert kernel.machine.cr3_loads == 1
    assert kernel.recorder.count("tlb", "invalidate-all") == 1


@pytest.mark.parametrize("libc", COMPILERS)
def test_fork_vfork_posix_spawn_and_abort_give_linuxs_statuses(programs, run, libc):
    result = same_as_host(run, programs["processes", libc])
    assert result.status == 3
    lines = result.stdout.decode().splitlines()
    assert "vfork parent resumed: child wrote 5" in lines
    assert "abort: killed by signal 6" in lines
    assert lines[-1] == "no more children: ECHILD"
    kernel = result.kernel
    # vfork and posix_spawn share the parent's address space: no copy of it is made for them.
    assert kernel.recorder.count("proc", "vfork") == 2
    assert kernel.recorder.count("proc", "fork") == 2


@pytest.mark.parametrize("libc", COMPILERS)
def test_sleeps_and_lock_timeouts_run_on_the_virtual_clock(programs, run, libc):
    result = same_as_host(run, programs["timing", libc])
    assert result.stdout.decode().splitlines() == [
        "nanosleep 5ms: 0, slept enough: yes",
        "clock_nanosleep absolute: 0, reached: yes",
        "nanosleep with 1e9 ns: -1 (Invalid argument)",
        f"timedlock on a held mutex: {ETIMEDOUT_TEXT[libc]}",
        f"cond_timedwait with no signal: {ETIMEDOUT_TEXT[libc]}",
        "joined the sleeper"]


@pytest.mark.parametrize("libc", COMPILERS)
def test_a_process_ends_with_its_last_thread_or_with_exit_from_any(programs, run, libc):
    result = same_as_host(run, programs["thread_exits", libc])
    assert result.stdout.decode().splitlines() == [
        "child whose thread called exit(5): exited 5",
        "the last thread runs after main's pthread_exit"]


@pytest.mark.parametrize("libc", COMPILERS)
def test_handlers_catch_faults_signals_and_interrupt_calls_as_on_linux(programs, run, libc):
    result = same_as_host(run, programs["signals", libc])
    assert result.status == 139                      # the last fault, with SIGSEGV back to its default
    assert result.stdout.decode().splitlines() == [
        "write barrier: 1 fault, at offset 100, si_code 2 (SEGV_ACCERR), value 3",
        "SIGUSR1 handled 1 time(s), on the alternate stack: yes",
        "blocked SIGUSR1: pending 1, handled 1",
        "after sigsuspend: handled 2, errno EINTR: yes",
        "SIGCHLD: 1, si_code 1 (CLD_EXITED), child status 4",
        "read interrupted: -1, Interrupted system call",
        "write to a pipe without reader, SIGPIPE ignored: -1, Broken pipe",
        "abort: killed by 6"]
    signals_sent = []
    result = run(programs["signals", libc], ram=64 << 20, events=signals_sent)
    sent = [(e["target"], e["signal"]) for e in signals_sent if e["type"] == "proc" and e["kind"] == "signal"]
    # The write barrier's SIGSEGV, two SIGUSR1s, SIGCHLD per child, the SIGALRM that interrupts the read,
    # abort's SIGABRT, the final SIGSEGV; SIGPIPE is ignored, so it is not even sent.
    assert sent == [(1, 11), (1, 10), (1, 10), (1, 17), (1, 14), (1, 17), (4, 6), (1, 17), (1, 11)]
    # Both SIGSEGVs are fatal faults in the fault counts: the first one reached its handler.
    assert result.kernel.recorder.count("fault", "fatal", pid=1) == 2
    # --stats' signals: the nine sent above; handlers started for SIGUSR1 twice, SIGCHLD for each of the three
    # children, SIGALRM once; the write barrier's SIGSEGV is the one fault handled.
    counters = stats.collect(result.kernel.recorder, 0, 1)
    assert counters["signals"] == {"sent": 9, "handled": 6, "faults_handled": 1}


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    """userland/libc/processes.c built three more ways: static PIE, and dynamic (PIE and not)."""
    out = tmp_path_factory.mktemp("hello")
    source = os.path.join(USERLAND_LIBC, "processes.c")
    paths = {}
    for name, flags in (("static-pie", ["-static-pie"]), ("dynamic", []), ("dynamic-no-pie", ["-no-pie"])):
        paths[name] = str(out / name)
        subprocess.run(["gcc", "-O1", *flags, "-o", paths[name], source], check=True)
    return paths


def test_a_static_pie_is_placed_where_linux_places_it(hello, run):
    assert same_as_host(run, hello["static-pie"]).status == 3
    events = []
    run(hello["static-pie"], ram=64 << 20, events=events)
    text_faults = [e["address"] for e in events if e["type"] == "fault" and e["access"] == "fetch" and e["pid"] == 1]
    # Linux's ELF_ET_DYN_BASE with randomization off: the first instruction is in the file's first pages.
    assert ET_DYN_BASE == 0x5555_5555_4000
    assert all(ET_DYN_BASE <= address < ET_DYN_BASE + (1 << 20) for address in text_faults)


@pytest.mark.parametrize("kind", ["dynamic", "dynamic-no-pie"])
def test_a_dynamic_program_without_its_interpreter_under_the_root_says_so(hello, tmp_path, kind):
    result = vmgames("run", "--root", str(tmp_path), hello[kind])
    assert result.returncode == 127
    assert result.stderr.decode() == (f"vmgames: {hello[kind]}: No such file or directory: its interpreter "
                             f"/lib64/ld-linux-x86-64.so.2 is not under the guest root {tmp_path} (No such file or "
                             "directory); a dynamically linked program of the host runs with --root /\n")


@pytest.mark.parametrize("libc", COMPILERS)
def test_madvise_mremap_and_shared_memory_behave_as_on_linux(programs, run, libc):
    result = same_as_host(run, programs["memory", libc])
    assert result.stdout.decode().splitlines()[:4] == [
        "private after DONTNEED: a 0 0 a",
        "after the child's DONTNEED: parent sees b; the child saw 0; shared word 42",
        "/dev/zero mappings: shared sees 77, private sees 0",
        "private file copy: XLF; after DONTNEED: ELF"]
    events = []
    run(programs["memory", libc], ram=64 << 20, events=events)
    # The first MADV_DONTNEED: two resident pages of an object only this process maps are unmapped and freed
    # at once, before the call returns.
    first = next(i for i, e in enumerate(events) if e["type"] == "pte" and e.get("reason") == "madvise")
    end = next(i for i, e in enumerate(events) if i > first and e["type"] == "syscall")
    assert events[end]["kind"] == "madvise"
    assert sum(e["type"] == "pte" and e["reason"] == "madvise" for e in events[first:end]) == 2
    assert sum(e["type"] == "page" and e["kind"] == "free" for e in events[first:end]) == 2


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")
def test_gdb_shows_threads_as_threads_of_their_process_and_stops_the_one_that_hits(tmp_path):
    from tests.test_gdb_stub import gdb

    program = str(tmp_path / "threads")
    subprocess.run(["gcc", "-static", "-O0", "-g", "-pthread", "-o", program,
                    os.path.join(USERLAND_LIBC, "threads.c")], check=True)
    output, vm_output, status = gdb(program, "break work", "continue", "continue", "info threads", "p (long)arg",
                                    "delete", "continue")
    assert "Thread 3 hit Breakpoint 1, work (arg=0x1)" in output
    assert re.search(r"\* 3 +Thread 3 \(threads \[1\] thread 3, runnable\) work \(arg=0x1\)", output)
    assert re.search(r"  1 +Thread 1 \(threads \[1\], runnable\)", output)
    assert "$1 = 1\n" in output
    assert "counter 40000 sum 64 same pid 1" in vm_output and status == 0


def test_a_dynamic_program_runs_with_the_hosts_libraries_and_shares_libcs_text(hello, run):
    host_stdout, host_status = run_on_host([hello["dynamic"]])
    events = []
    result = run(hello["dynamic"], ram=64 << 20, events=events, root="/")
    assert (result.stdout, result.status) == (host_stdout, host_status)
    libc = {e["object"] for e in events if e["type"] == "object" and e["kind"] == "create"
            and (e["path"] or "").endswith("/libc.so.6")}
    assert len(libc) == 1                   # one VM object for the library, whoever maps it
    spawned = next(e["child"] for e in events if e["type"] == "proc" and e["kind"] == "vfork"
                   and any(x["type"] == "proc" and x["kind"] == "exec" and x["pid"] == e["child"] for x in events))
    libc_faults = [e for e in events if e["type"] == "fault" and e["pid"] == spawned and e["object"] in libc]
    # The posix_spawned program maps libc again after its exec: of the 65 pages it touches, 64 are already
    # in the page cache (the first process read them) and one only it needs is read from the file.
    kinds = [e["kind"] for e in libc_faults]
    assert (kinds.count("resident"), kinds.count("file"), len(kinds)) == (64, 1, 65)


@pytest.mark.parametrize("libc", COMPILERS)
def test_the_thread_signal_and_memory_calls_fail_as_linuxs_do(programs, run, libc):
    """Bad flags, pointers, sizes and signal numbers: each call's error is the host kernel's, line for line."""
    result = same_as_host(run, programs["errors", libc])
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 42 and lines[0].split()[-1] == "-22"       # clone(CLONE_THREAD without SIGHAND): EINVAL
