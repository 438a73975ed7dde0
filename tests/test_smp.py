"""Several CPUs: one engine, CR3 and TLB each over the one RAM; shootdowns counted exactly; the same run
gives the same trace; threads run on every CPU with the host's output."""

import json
import os
import re
import shutil
import subprocess

import pytest
from vmgames.tools.cli import main

from tests.programs import CLONE_THREAD, EXIT_0, mmap
from tests.test_gdb_stub import _start as _gdb_start

ROOT = os.path.join(os.path.dirname(__file__), "..")
THREADS = os.path.join(ROOT, "build", "threads")


# A thread spins reading a page while the main thread write-protects it: the one PTE change the program makes
# that takes a right away, on an address space two CPUs have loaded.  `area` is the page; `flags` (another
# page) says the thread started (1) and is told to stop (2); the thread then exits alone and main exits 0.
MPROTECT_UNDER_A_READER = f"""
.text
_start:
{mmap(8192, 3)}
    mov rbx, rax                       # rbx: the page read, rbx + 4096: the flags
    mov qword ptr [rbx], 7
{CLONE_THREAD}    test rax, rax
    jz thread
wait_start:
    cmp qword ptr [rbx + 4096], 1
    jne wait_start
    mov rdi, rbx                       # mprotect(area, 4096, PROT_READ)
    mov esi, 4096
    mov edx, 1
    mov eax, 10
    syscall
    mov qword ptr [rbx + 4096], 2
wait_exit:
    cmp qword ptr [rbx + 4096], 3
    jne wait_exit
    mov eax, 231
    xor edi, edi
    syscall
thread:
    mov qword ptr [rbx + 4096], 1
spin:
    mov rax, [rbx]
    cmp qword ptr [rbx + 4096], 2
    jne spin
    mov qword ptr [rbx + 4096], 3
{EXIT_0}
"""


def _tlb(events):
    return [(e["cpu"], e["kind"], e.get("reason"), e.get("targets"), e.get("pages"))
            for e in events if e["type"] == "tlb" and e.get("reason") != "context-switch"]


def test_one_cpu_invalidates_locally_and_sends_no_ipi(run):
    events = []
    result = run(MPROTECT_UNDER_A_READER, events=events, cpus=1)
    assert result.status == 0
    assert _tlb(events) == [(0, "invalidate-page", "mprotect", None, None)]


@pytest.mark.parametrize("cpus", [2, 4])
def test_a_write_protect_is_shot_down_on_the_other_cpu_running_the_process(run, cpus):
    events = []
    result = run(MPROTECT_UNDER_A_READER, events=events, cpus=cpus)
    assert result.status == 0
    (sender,) = {cpu for cpu, kind, *_ in _tlb(events) if kind == "invalidate-page"}
    tlb = _tlb(events)
    (receiver,) = {cpu for cpu, kind, *_ in tlb if kind == "ipi-invlpg"}
    assert sender != receiver
    # Locally an invlpg, one IPI for the page to the one other CPU with the address space loaded, taken there.
    assert tlb == [(sender, "invalidate-page", "mprotect", None, None),
                   (sender, "shootdown", "mprotect", 1, 1),
                   (receiver, "ipi-invlpg", "mprotect", None, 1)]
    counts = result.kernel.recorder
    assert counts.count("tlb", "shootdown") == 1 and counts.count("tlb", "ipi-invlpg") == 1
    # The CPUs the process never ran on have nothing to do with it.
    assert result.kernel.cpus[sender].processor.tlb.page_invalidations == 1
    assert result.kernel.cpus[receiver].processor.tlb.page_invalidations == 1


def test_the_same_run_gives_the_same_events_and_another_seed_another_interleaving(run):
    def trace(seed):
        events = []
        assert run(THREADS, events=events, cpus=4, seed=seed, root="/").stdout.count(b"\n") > 0
        return events

    first = trace(0)
    assert first == trace(0)
    other = trace(1)
    assert [e["cpu"] for e in other] != [e["cpu"] for e in first]


@pytest.mark.parametrize("cpus", [1, 2, 4, 8])
def test_a_pthreads_program_prints_what_it_prints_on_linux(cpus, capfd):
    host = subprocess.run([THREADS], capture_output=True, check=True).stdout
    capfd.readouterr()
    assert main(["run", "--cpus", str(cpus), THREADS]) == 0
    assert capfd.readouterr().out.encode() == host


def test_every_cpu_runs_threads_and_idles_in_the_open(capfd):
    assert main(["run", "--cpus", "4", "--stats", THREADS]) == 0
    err = capfd.readouterr().err
    rows = err[err.index("cpu  instructions"):].splitlines()[1:5]
    assert [row.split()[0] for row in rows] == ["0", "1", "2", "3"]
    assert all(int(row.split()[1].replace(",", "")) > 0 for row in rows)     # each ran instructions


@pytest.mark.parametrize(("argv", "message"), [
    (["--cpus", "0"], "--cpus must be 1 to 8, not 0"),
    (["--cpus", "9"], "--cpus must be 1 to 8, not 9"),
    (["--interleave", "0"], "--interleave must be positive"),
])
def test_bad_cpu_options_are_refused_in_one_line(argv, message, capfd):
    assert main(["run", *argv, THREADS]) == 2
    assert capfd.readouterr().err == f"vmgames: {message}\n"


STALE_TLB = os.path.join(ROOT, "build", "stale_tlb")


def _stale_tlb_run(tmp_path, *options):
    stats = tmp_path / "stats.json"
    status = main(["run", "--cpus", "2", "--stats-json", str(stats), *options, STALE_TLB])
    return status, json.loads(stats.read_text()) if stats.exists() else None


def test_a_cow_send_under_a_writer_on_another_cpu_delivers_what_was_sent(tmp_path, capfd):
    status, stats = _stale_tlb_run(tmp_path)
    assert status == 0
    assert capfd.readouterr().out.startswith("sent 262144 bytes copy-on-write while the other thread wrote ")
    sends = stats["sends"]
    assert (sends["pages_held_cow"], sends["bytes_delivered"], sends["bytes_corrupt"]) == (64, 262144, 0)
    # The send write-protected each of the 64 pages (pmap_remove_write is per page, as in FreeBSD) while the
    # writer's CPU ran the address space: a shootdown each.  A write to a page still in flight then faults and
    # gets a copy, which replaces the held frame where the main thread's CPU may cache it: that CPU idles in
    # nanosleep with the address space lazily loaded, takes the first IPI and leaves it (leave_mm), so the
    # other copies interrupt nobody.
    cow_send = stats["tlb_by_reason"]["cow-send"]
    copies = stats["pages"]["copied"] - stats["faults"]["cow-copy"]
    assert copies > 0 and cow_send["invalidate_page"] == 64 + copies
    assert cow_send["shootdowns"] == cow_send["ipis"] == 64 + 1
    assert stats["tlb_by_reason"]["leave-mm"]["invalidate_all"] == 1


def test_without_the_shootdown_the_writer_corrupts_the_pages_in_flight(tmp_path, capfd):
    status, stats = _stale_tlb_run(tmp_path, "--skip-invalidation", "remote-shootdown")
    assert status == 0
    assert stats["sends"]["bytes_corrupt"] > 0
    assert stats["tlb"]["shootdowns"] == 0
    capfd.readouterr()
    assert main(["run", "--cpus", "2", "--check-tlb", "--skip-invalidation", "remote-shootdown", STALE_TLB]) == 3
    err = capfd.readouterr().err
    assert "(reason cow-send: " in err and "had no shootdown IPI to CPU" in err


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")
def test_gdb_shows_which_cpu_each_thread_is_on_and_monitor_cpus_every_cpu():
    vm, port = _gdb_start("--cpus", "2", STALE_TLB)
    script = ["set pagination off", "set confirm off", f"target remote 127.0.0.1:{port}", "break writer",
              "continue", "info threads", "monitor cpus", "kill"]
    result = subprocess.run(["gdb", "-batch", "-nx", *(x for c in script for x in ("-ex", c)), STALE_TLB],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    vm.communicate(timeout=120)
    output = result.stdout + result.stderr
    threads = re.findall(r"stale_tlb \[1\](?: thread \d+)?, \w+, (?:last )?on cpu (\d)", output)
    assert len(threads) == 2, output
    cpus = re.findall(r"^cpu (\d)(?: \(selected\))?: (runs stale_tlb \[1\] thread \d+|idle); ", output, re.M)
    assert [cpu for cpu, _ in cpus] == ["0", "1"], output
    assert all(what.startswith("runs stale_tlb [1]") for _, what in cpus), output


@pytest.fixture(scope="module")
def smp_time(tmp_path_factory):
    """userland/libc/smp_time.c, static glibc: time across CPUs as Linux promises it."""
    path = str(tmp_path_factory.mktemp("smp") / "smp_time")
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-o", path,
                    os.path.join(ROOT, "userland", "libc", "smp_time.c")], check=True)
    return path


@pytest.mark.parametrize("cpus", [2, 4])
def test_time_never_goes_back_and_a_sleep_never_ends_early_on_any_cpu(smp_time, cpus, capfd):
    """Each CPU has its own clock; a thread that reads the time on one and then on another, or is woken by a
    timer that fired on a CPU ahead of the one it runs on next, must still see Linux's promises kept."""
    host = subprocess.run([smp_time], capture_output=True, text=True, check=True).stdout
    assert host == "clock went back 0 times; absolute sleeps ended early 0 times\n"
    capfd.readouterr()
    assert main(["run", "--cpus", str(cpus), smp_time]) == 0
    assert capfd.readouterr().out == host
