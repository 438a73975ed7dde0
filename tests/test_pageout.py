"""Memory pressure: the pageout daemon's queues and aging, the swap pager, and the out-of-memory killer.

Programs that need more than --ram run to the end with --swap, print what they print on Linux, and leave
nothing on swap; the counters say what the daemon did.  Without swap, the process using the most memory is
killed, and the kernel says so.
"""

import hashlib
import json
import os
import subprocess

import orjson
import pytest
from vmgames.tools.cli import main

from tests import invariants

ROOT = os.path.join(os.path.dirname(__file__), "..")
BUILD = os.path.join(ROOT, "build")
PRESSURE = os.path.join(BUILD, "pressure")
TOUCH = os.path.join(BUILD, "touch")
RAM = 8 << 20        # 2,047 frames for the programs
SWAP = 64 << 20


def _stats(tmp_path, capfd, *arguments):
    path = tmp_path / "stats.json"
    status = main(["run", "--stats-json", str(path), *arguments])
    out, err = capfd.readouterr()
    return status, out, err, json.loads(path.read_text())


def test_touching_four_times_ram_completes_with_swap(tmp_path, capfd):
    """The issue's own check: vmgames run --ram 8M --swap 64M --stats build/touch 8192."""
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "8M", "--swap", "64M", TOUCH, "8192")
    assert (status, out, err) == (0, "touched 8192 pages\n", "")
    vm = stats["freebsd_vmstat"]
    pressure = stats["memory_pressure"]
    # 8,192 pages written once, in 2,047 frames: at least 8,192 - 2,047 of them went to swap, in clusters.
    assert vm["swappgsout"] >= 8192 - 2047 and vm["swapout"] < vm["swappgsout"]
    assert vm["pdwakeups"] > 0 and vm["pdpages"] >= vm["swappgsout"]
    assert vm["tcached"] >= vm["swappgsout"] and pressure["swap_peak"] == vm["swappgsout"]
    # Everything went when touch exited; nobody was killed.
    assert pressure["swap_used"] == 0 and pressure["swap_blocks_freed"] == pressure["swap_peak"]
    assert pressure["processes_killed_out_of_memory"] == 0 and stats["faults"]["fatal"] == 0
    # Each accessed bit the daemon cleared was a TLB invalidation (a page's, or a full flush past 33).
    aging = stats["tlb_by_reason"]["aging"]
    assert pressure["accessed_bits_cleared"] > 0 and aging["invalidate_page"] + aging["invalidate_all"] > 0
    assert aging["invalidate_page"] <= pressure["accessed_bits_cleared"]


@pytest.fixture(scope="module")
def on_linux():
    """What build/pressure prints on the host, for the arguments the tests use."""
    def _on_linux(*arguments):
        return subprocess.run([PRESSURE, *arguments], capture_output=True, check=True).stdout
    return _on_linux


def _checked_at_every_wakeup(kernel):
    """Hold the kernel to its invariants before and after every time the pageout daemon runs."""
    daemon = kernel.allocator.pagedaemon

    def checked(pages):
        invariants.check(kernel)
        found = daemon(pages)
        invariants.check(kernel)
        return found

    kernel.allocator.pagedaemon = checked


@pytest.mark.parametrize("page_used", ["accessed-bit", "unmap"])
def test_a_hot_and_cold_working_set_larger_than_ram_reads_back_what_it_wrote(page_used, run, on_linux,
                                                                               monkeypatch):
    arguments = ("3000", "10", "6")
    import tests.conftest as conftest

    boot = conftest.boot

    def booted(*args, **kwargs):
        kernel = boot(*args, **kwargs)
        _checked_at_every_wakeup(kernel)
        return kernel

    monkeypatch.setattr(conftest, "boot", booted)
    result = run(PRESSURE, *arguments, ram=RAM, swap=SWAP, page_used=page_used, root="/")
    assert (result.status, result.stdout) == (0, on_linux(*arguments))
    recorder = result.recorder
    assert recorder.count("swap", "out") > 0 and recorder.count("fault", "swap-in") > 0
    aging = recorder.count_reason("pte", "write", "aging")
    if page_used == "unmap":
        # No accessed bit is read: every page the daemon looks at is unmapped, and a touch after that faults.
        assert aging == 0
        assert recorder.count_reason("pte", "write", "pageout") > recorder.count("swap", "out")
        assert recorder.count("fault", "resident") > 100
    else:
        assert aging > 0


def test_page_used_emulation_takes_faults_where_the_accessed_bit_takes_none(run):
    arguments = ("3000", "10", "6")
    with_bit = run(PRESSURE, *arguments, ram=RAM, swap=SWAP, root="/")
    emulated = run(PRESSURE, *arguments, ram=RAM, swap=SWAP, root="/", page_used="unmap")
    assert with_bit.stdout == emulated.stdout
    assert emulated.recorder.count("fault", "resident") > 10 * max(1, with_bit.recorder.count("fault", "resident"))


def test_the_same_run_under_pressure_is_the_same_run(run):
    digests = []
    for _ in range(2):
        events = []
        run(PRESSURE, "2500", "20", "3", ram=RAM, swap=SWAP, root="/", events=events)
        assert any(e["type"] == "swap" for e in events)
        digests.append(hashlib.sha256(b"".join(orjson.dumps(e) for e in events)).hexdigest())
    assert digests[0] == digests[1]


def test_hot_pages_stay_in_memory_and_cold_ones_go(run):
    """The activity count at work: the hot tenth of a working set twice RAM's size is written every round and
    is (nearly) never read back from swap; the cold pages drawn at random are."""
    events = []
    result = run(PRESSURE, "4000", "10", "10", ram=RAM, swap=SWAP, root="/", events=events)
    assert result.status == 0
    area = next(e["address"] for e in events if e["type"] == "fault" and e["kind"] == "zero-fill"
                and e["address"] >= 0x7F0000000000)
    hot_end = area + 400 * 4096
    swapped_in = [e["address"] for e in events if e["type"] == "fault" and e["kind"] == "swap-in"]
    hot = sum(area <= a < hot_end for a in swapped_in)
    cold = len(swapped_in) - hot
    assert cold > 1000 and hot < cold / 20, (hot, cold)


def test_without_swap_the_process_using_the_most_memory_is_killed(tmp_path, capfd):
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "8M", TOUCH, "8192")
    assert status == 128 + 9 and out == ""
    assert err.startswith("vmgames: kernel: Out of memory: Killed process 1 (touch) total-vm:")
    # The fault that found no frame: the next page's write, or the fetch of the text page, which the daemon
    # dropped (clean: the file has it) to make room.
    assert "touch[1]: killed by SIGKILL: " in err and "(out of memory) at 0x401051: mov byte ptr [rax], 1" in err
    assert stats["memory_pressure"]["processes_killed_out_of_memory"] == 1 and stats["faults"]["fatal"] == 1
    # Before killing, the daemon tried: it looked at pages and found no clean one to take but the file's.
    assert stats["freebsd_vmstat"]["pdwakeups"] > 0 and stats["freebsd_vmstat"]["swappgsout"] == 0


OOM_PARENT = r"""
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void)
{
    char *area = mmap(NULL, 1200 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 1200; i++)
        area[i * 4096] = 1;
    pid_t child = fork();
    if (child == 0) {
        execl("/touch", "touch", "1000", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    printf("parent: the child ended with %d\n", status);
    return 0;
}
"""


def test_the_largest_process_dies_not_the_one_that_faults(tmp_path, capfd):
    """A parent holding 1,200 pages waits while its child (a new image: nothing shared) touches 1,000 more in
    8M of RAM without swap: the parent is the largest, and it is killed; the child finishes."""
    source = tmp_path / "oom_parent.c"
    source.write_text(OOM_PARENT)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp_path / "oom_parent"), str(source)], check=True)
    (tmp_path / "touch").write_bytes(open(TOUCH, "rb").read())
    (tmp_path / "touch").chmod(0o755)
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "8M", "--root", str(tmp_path),
                                     str(tmp_path / "oom_parent"))
    assert out == "touched 1000 pages\n" and status == 128 + 9
    assert "Out of memory: Killed process 1 (oom_parent)" in err and "oom_parent[1]: killed by SIGKILL" in err
    pressure = stats["memory_pressure"]
    assert pressure["processes_killed_out_of_memory"] == 1
    # First the daemon threw away the page tables of the parent, asleep in waitpid: that freed too little.
    assert pressure["address_spaces_whose_page_tables_were_thrown_away"] == 1


def test_clean_file_pages_are_dropped_and_read_again_without_swap(run):
    """With no swap only a file's pages can be reused: near the end of RAM the program's own text and data go
    (clean, to the cache queue, then reused) and are read from the file again; it still finishes."""
    arguments = ("1980", "50", "4")
    roomy = run(PRESSURE, *arguments, ram=2 * RAM, root="/")
    tight = run(PRESSURE, *arguments, ram=RAM, root="/")
    assert tight.stdout == roomy.stdout and tight.status == 0
    recorder = tight.recorder
    assert roomy.recorder.count("page", "cache") == 0 and recorder.count("page", "cache") > 0
    assert recorder.count("swap", "out") == 0 and recorder.count("page", "reuse") > 0
    assert recorder.count("page", "pagein") > roomy.recorder.count("page", "pagein")
    assert recorder.count("page", "reactivate") > 0


@pytest.mark.parametrize(("swap", "bytes_"), [("1K", "1,024"), ("4095", "4,095"), ("2T", "2,199,023,255,552")])
def test_swap_of_less_than_a_page_or_more_than_a_terabyte_is_refused(swap, bytes_, capfd):
    assert main(["run", "--ram", "8M", "--swap", swap, TOUCH, "100"]) == 2
    assert capfd.readouterr().err == f"vmgames: --swap is 0 (none) or 4K, a page, to 1T, not {bytes_} bytes\n"


def test_swap_is_counted_in_whole_pages(tmp_path, capfd):
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "8M", "--swap", "8193", TOUCH, "100")
    assert status == 0 and stats["memory_pressure"]["swap_blocks"] == 2


@pytest.mark.parametrize("bad", ["--swap=lots", "--swap=-1", "--page-used=sometimes"])
def test_bad_pressure_options_are_refused(bad, capfd):
    with pytest.raises(SystemExit) as stopped:
        main(["run", bad, TOUCH])
    assert stopped.value.code == 2
    assert bad.split("=")[0] in capfd.readouterr().err


def test_several_cpus_clear_accessed_bits_with_shootdowns(tmp_path, capfd):
    """With a reader thread, the address space is loaded on both CPUs: an accessed bit the daemon clears on one
    CPU is a shootdown to the other, as the paper's cost of aging says it must be."""
    arguments = ["3000", "10", "6", "1", "1"]
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "8M", "--swap", "64M", "--cpus", "2", "--check-tlb",
                                     PRESSURE, *arguments)
    assert (status, err) == (0, "")
    assert out.encode() == subprocess.run([PRESSURE, *arguments], capture_output=True, check=True).stdout
    aging = stats["tlb_by_reason"]["aging"]
    assert aging["shootdowns"] > 0 and aging["ipis"] == aging["shootdowns"]
    assert stats["tlb_by_reason"]["pageout"]["shootdowns"] > 0


def test_a_page_unmapped_for_pageout_without_its_invalidation_is_caught(tmp_path, capfd):
    """The daemon's unmapping is a TLB invalidation like munmap's: forgotten, the sanitizer names it.  (The
    aging pass's own invalidation, a full flush past 33 pages, would cover for it: it is forgotten too.)"""
    status = main(["run", "--ram", "8M", "--swap", "64M", "--check-tlb", "--skip-invalidation", "pageout",
                   "--skip-invalidation", "aging", PRESSURE, "2500", "10", "2"])
    err = capfd.readouterr().err.splitlines()
    assert status == 3 and err[0].startswith("vmgames: --check-tlb: the TLB may still translate 0x")
    assert "but the PTE is now not present" in err[0] and "(reason pageout: frame 0x" in err[0]


def test_an_accessed_bit_cleared_without_its_invalidation_loses_references_not_data(tmp_path, capfd):
    """Linux's x86 ptep_clear_flush_young does not flush: a TLB entry that still holds the translation lets
    the program use the page without setting the bit again, so the daemon sees fewer references, but nothing
    the program reads changes, and the sanitizer has nothing to say (the rights and the frame are the same).
    (Here the pageout daemon's unmapping flushes the TLB in the same passes, so no reference is lost either.)"""
    arguments = ["3000", "10", "6"]
    status, out, err, flushed = _stats(tmp_path, capfd, "--ram", "8M", "--swap", "64M", PRESSURE, *arguments)
    status_skipped, out_skipped, err_skipped, skipped = _stats(
        tmp_path, capfd, "--ram", "8M", "--swap", "64M", "--check-tlb", "--skip-invalidation", "aging", PRESSURE,
        *arguments)
    assert (status_skipped, out_skipped, err_skipped) == (status, out, err) == (0, out, "")
    assert flushed["tlb_by_reason"]["aging"]["invalidate_page"] > 0
    assert skipped["tlb_by_reason"].get("aging", {"invalidate_page": 0})["invalidate_page"] == 0


def test_the_trace_of_a_run_under_pressure_follows_the_schema_and_perfetto_counts_queues_and_swap(tmp_path, capfd):
    from vmgames.tools import perfetto, trace_schema

    path = tmp_path / "touch.jsonl"
    assert main(["run", "--ram", "8M", "--swap", "64M", "--trace", str(path), TOUCH, "4000"]) == 0
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines[1:]]
    assert all(trace_schema.validate_event(event) == [] for event in events)
    kinds = {(e["type"], e["kind"]) for e in events}
    assert {("pageout", "wakeup"), ("pageout", "scan"), ("pageout", "unmap"), ("swap", "write"), ("swap", "out"),
            ("page", "deactivate"), ("page", "launder"), ("page", "reuse")} <= kinds
    assert {e["pid"] for e in events if e["type"] == "pageout"} == {0}
    converted = tmp_path / "touch.json"
    with open(converted, "wb") as out:
        perfetto.convert(str(path), out)
    counters = [e for e in json.loads(converted.read_text())["traceEvents"] if e["ph"] == "C"]
    queues = [e["args"] for e in counters if e["name"] == "page queues"]
    swap = [e["args"]["blocks"] for e in counters if e["name"] == "swap blocks used"]
    wakeups = [e for e in events if e["type"] == "pageout" and e["kind"] == "wakeup"]
    assert len(queues) == len(swap) == len(wakeups) > 0
    assert set(queues[0]) == {"active", "inactive", "cache", "wired", "free"}
    assert swap == sorted(swap) and swap[-1] > 1000      # touch writes every page once: swap only fills
    assert main(["report", str(path)]) == 0
    report = capfd.readouterr().out
    assert "swap pager pages paged out" in report and "page daemon wakeups" in report


SHARERS = os.path.join(BUILD, "sharers")


def test_thrown_away_page_tables_are_rebuilt_by_faults(run, monkeypatch):
    """The page tables of 4 children asleep in read() are thrown away (the daemon's last resort): they free
    their tables, keep their pages in their objects, and on waking fault them in again and read the same."""
    import tests.conftest as conftest

    boot = conftest.boot
    dropped = []

    def booted(*args, **kwargs):
        kernel = boot(*args, **kwargs)
        handler = kernel.machine.syscall_handler

        def syscall():
            # Once every child has said it is ready (a write each), at the parent's next kernel entry.
            if not dropped and kernel.current.pid == 1 and kernel.recorder.count("syscall", "write") == 4:
                invariants.check(kernel)
                tables = sum(len(p.vmspace.pmap.tables) for p in kernel.processes.values() if p.pid != 1)
                dropped.append((kernel.pageout._throw_away_tables(), tables))
                invariants.check(kernel)
                dropped.append(sum(len(p.vmspace.pmap.tables) for p in kernel.processes.values() if p.pid != 1))
            handler()

        kernel.machine.syscall_handler = syscall
        return kernel

    monkeypatch.setattr(conftest, "boot", booted)
    result = run(SHARERS, "4", "64", "16", root="/")
    assert result.stdout == b"sharers: 4 children, 64 shared pages, 16 private: ok\n" and result.status == 0
    (freed, before), after = dropped
    # Every child's tables went but its root (its CR3): none had its address space loaded.
    assert freed and after == 4 < before
    assert result.recorder.count("pageout", "drop-tables") == 4
    # Each child faulted its 64 shared pages in again (they were still resident in the shared object).
    for pid in range(2, 6):
        assert result.recorder.count("fault", "resident", pid=pid) >= 64


@pytest.mark.parametrize(("ram", "seed"), [("1M", "0"), ("1536K", "0"), ("1M", "2"), ("1M", "6")])
def test_two_cpus_in_tiny_ram_read_back_what_they_wrote(ram, seed, tmp_path, capfd):
    """A reader thread on the other CPU, in RAM so small that frames which held code are refilled inside a
    fault: Unicorn drops the running engine's translations only when its block ends (before, the block
    chained itself from freed memory: wrong data, then a crash in Unicorn).  With seeds 2 and 6 the main
    thread's CPU idled between its turns and left the address space on an IPI (leave-mm), then ran the thread
    again without loading it: out of the pmap's CPUs, it missed the invalidation of a page the daemon took."""
    arguments = ["2000", "10", "10", "1", "1"]
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", ram, "--swap", "64M", "--cpus", "2", "--seed", seed,
                                     PRESSURE, *arguments)
    assert (status, err) == (0, ""), out
    assert out.encode() == subprocess.run([PRESSURE, *arguments], capture_output=True, check=True).stdout
    assert stats["freebsd_vmstat"]["swappgsin"] > 0



# Found by a review of the memory-pressure change (each failed before its fix).
UNMAP_MOST = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    for (int round = 0; round < 4; round++) {
        char *a = mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (long i = 0; i < n; i++)
            a[i * 4096] = 1;
        munmap(a + 4096, (n - 1) * 4096);    /* keep one page of each round's */
        printf("round %d\n", round);
    }
    return 0;
}
"""

EXEC_WITH_BIG_ARGUMENTS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    static char *args[200], big[100][4000];
    if (argc > 2) {
        printf("exec'd with %d arguments\n", argc);
        return 0;
    }
    long n = atol(argv[1]);
    char *a = mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < n; i++)
        a[i * 4096] = 1;
    args[0] = argv[0];
    args[1] = "1";
    for (int i = 0; i < 100; i++) {
        memset(big[i], 'a' + i % 26, 3999);
        args[2 + i] = big[i];
    }
    execv(argv[0], args);
    return 1;
}
"""


def _compiled(tmp_path, name, source):
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp_path / name), str(tmp_path / f"{name}.c")], check=True)
    return str(tmp_path / name)


def test_munmap_of_most_of_an_object_frees_its_pages_and_swap_at_once(tmp_path, capfd):
    """The unmapped range of an object only this map reaches goes at munmap (FreeBSD's one-mapping case), not
    when the object dies: 4 rounds of 3,000 pages fit in 1M of RAM and 16M of swap."""
    program = _compiled(tmp_path, "unmap_most", UNMAP_MOST)
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "1M", "--swap", "16M", "--root", "/", program, "3000")
    assert (status, out, err) == (0, "round 0\nround 1\nround 2\nround 3\n", "")
    assert stats["memory_pressure"]["swap_used"] == 0


def test_rmap_scan_finds_the_mappings_of_an_image_being_replaced_by_exec(tmp_path, capfd):
    """--rmap scan probes every live address space, the one exec is tearing down too."""
    program = _compiled(tmp_path, "exec_big", EXEC_WITH_BIG_ARGUMENTS)
    for rmap in ("pv", "scan"):
        status, out, err, _ = _stats(tmp_path, capfd, "--ram", "1M", "--swap", "16M", "--rmap", rmap, "--root", "/",
                                     program, "150")
        assert (status, out, err) == (0, "exec'd with 102 arguments\n", "")


THREADS_THEN_A_CHILD = r"""
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#define PAGE 4096
static int p1[2], p2[2];
static void *thr(void *x) { char c; read(p1[0], &c, 1); return 0; }
int main(int argc, char **argv) {
  long big = atol(argv[1]), small = atol(argv[2]); int nthr = argc > 3 ? atoi(argv[3]) : 2;
  setvbuf(stdout, 0, _IONBF, 0);
  pipe(p1); pipe(p2);
  pid_t c = fork();
  if (c == 0) {
    char ch; read(p2[0], &ch, 1);
    char *a = mmap(0, small*PAGE, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < small; i++) a[i*PAGE] = 1;
    printf("child done\n"); _exit(0);
  }
  pthread_t t[256]; for (int i = 0; i < nthr; i++) pthread_create(&t[i], 0, thr, 0);
  char *a = mmap(0, big*PAGE, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  for (long i = 0; i < big; i++) a[i*PAGE] = 1;
  write(p2[1], "x", 1);
  int st; waitpid(c, &st, 0);
  printf("parent: child status %d\n", st);
  return 0;
}
"""


def test_the_killer_kills_once_though_the_victims_threads_fault_as_they_exit(tmp_path, capfd):
    """A victim's threads write their clear_child_tid as they exit, in tables the daemon threw away: those faults
    must not wake the daemon and the killer again (it recursed, once per thread, and logged kills twice)."""
    program = _compiled(tmp_path, "threads_child", THREADS_THEN_A_CHILD)
    status, out, err, stats = _stats(tmp_path, capfd, "--ram", "4M", "--root", "/", program, "600", "600", "2")
    assert out == "child done\n" and status == 128 + 9
    assert err.count("Out of memory: Killed process") == 1 and stats["memory_pressure"][
        "processes_killed_out_of_memory"] == 1
