"""FreeBSD's `vmstat -s` names and Linux's tlb_flush reasons for vmgames' counters."""

import json

from vmgames.tools import stats
from vmgames.tools.cli import main

from tests.programs import EXIT_0, FORK, FORK_AND_WRITE, WAIT4_RDI

COW_MOVE = f"""
.text
_start:
    mov qword ptr [rip + value], 1
{FORK}
    test rax, rax
    jz child
    mov rdi, rax
{WAIT4_RDI}
    mov qword ptr [rip + value], 5
{EXIT_0}
child:
{EXIT_0}
.bss
.align 4096
value: .zero 8
"""


def _collect(result):
    return stats.collect(result.recorder, 0, result.kernel.allocator.total)


def test_the_fork_program_counted_under_freebsd_names(run):
    counters = _collect(run(FORK_AND_WRITE))
    assert counters["freebsd_vmstat"] == {
        "swtch": 3,           # CR3 loads: the parent, the child, the parent again
        "vm_faults": 7,       # file 2, zero-fill 2, resident 1, cow-copy 2 (tests/test_fork.py)
        "zfod": 2,            # the parent's bss and stack pages, before the fork
        "ozfod": 0,           # none of them took a pre-zeroed page (--prezero is off)
        "cow_faults": 2,      # the parent's write of 2 and the child's write of 7 each copy the bss page
        "cow_optim": 0,       # both processes still shared it: no page could move
        "vnodepgsin": 1,      # the text page, read from the file once; the child finds it resident
        "forks": 1,
        "forkpages": 2,       # fork write-protects the parent's two writable resident pages
        "vforks": 0,
        "tfree": 15,          # 16 frames allocated; the text page stays in the file cache
        "syscall": 5,         # fork, wait4 twice (it blocked once), exit twice
        # In 16M of RAM, memory is never short: no swap, no pageout daemon.
        **dict.fromkeys(("swapin", "swappgsin", "swapout", "swappgsout", "pdwakeups", "pdpages", "reactivated",
                         "tcached", "dfree"), 0),
    }


def test_a_moved_page_is_an_optimized_copy_on_write_fault(run):
    counters = _collect(run(COW_MOVE))
    assert counters["freebsd_vmstat"]["cow_faults"] == 1
    assert counters["freebsd_vmstat"]["cow_optim"] == 1


def test_tlb_invalidations_by_reason_with_linux_reasons(run):
    counters = _collect(run(FORK_AND_WRITE))
    # CR3 loads for the parent, the child and the parent again; fork write-protected two
    # mapped pages; each copy-on-write copy replaced a mapped frame.
    # One CPU: no shootdown, no IPI.
    local = {"shootdowns": 0, "ipis": 0}
    assert counters["tlb_by_reason"] == {
        "context-switch": {"linux": "TLB_FLUSH_ON_TASK_SWITCH", "invalidate_page": 0, "invalidate_all": 3, **local},
        "cow": {"linux": "TLB_LOCAL_MM_SHOOTDOWN", "invalidate_page": 2, "invalidate_all": 0, **local},
        "fork": {"linux": "TLB_LOCAL_MM_SHOOTDOWN", "invalidate_page": 2, "invalidate_all": 0, **local},
    }
    # /proc/vmstat counts neither a task switch's flush nor anything remote.
    assert counters["linux_vmstat"] == {"nr_tlb_remote_flush": 0, "nr_tlb_remote_flush_received": 0,
                                        "nr_tlb_local_flush_all": 0, "nr_tlb_local_flush_one": 4}


def test_stats_and_stats_json_show_the_freebsd_names(build, tmp_path, capsys):
    program = build(FORK_AND_WRITE)
    path = tmp_path / "stats.json"
    assert main(["run", "--stats", "--stats-json", str(path), program]) == 82
    table = capsys.readouterr().err
    assert any(line.startswith("  copy-on-write faults (cow_faults)") and line.endswith(" 2")
               for line in table.splitlines())
    assert any(line.startswith("  fork (TLB_LOCAL_MM_SHOOTDOWN)") and line.endswith("2 / 0")
               for line in table.splitlines())
    counters = json.loads(path.read_text())
    assert counters["freebsd_vmstat"]["forkpages"] == 2
    assert counters["tlb_by_reason"]["context-switch"]["invalidate_all"] == 3
