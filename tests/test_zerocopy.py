"""Zero-copy sends: the wire, copy-on-write sends, vmsplice and its completions, with exact counts."""

from __future__ import annotations

import json
import struct

import pytest
import vmgames.kernel.trap as trap_module
from vmgames.kernel import errno
from vmgames.kernel.proc import SLEEPING
from vmgames.kernel.sink import SinkEnd
from vmgames.kernel.syscall import dispatch, syscall_name
from vmgames.kernel.syszerocopy import SPLICE_F_NONBLOCK, VMG_ZEROCOPY, ZC_WAIT
from vmgames.tools import trace_schema
from vmgames.tools.cli import main

from tests.test_pipes import (
    CLOSE,
    COMMON,
    EXIT,
    FORK,
    PIPE,
    PIPE2,
    READ,
    WAIT4,
    WRITE,
    YIELD,
    each_result_to_stdout,
    syscall,
)

OPEN, MMAP, IOCTL, MUNMAP, KILL, VMSPLICE, ZC_REAP = 2, 9, 16, 11, 62, 278, 1000
O_WRONLY, O_NONBLOCK = 1, 0o4000
WIRE = "[rip + wire]"
R, W = "[rip + fds]", "[rip + fds + 4]"

OPEN_WIRE = f"""
{syscall(OPEN, "wire_path", O_WRONLY)}
    mov dword ptr [rip + wire], eax
"""
SEND_DATA = """
.data
wire_path: .asciz "/dev/wire"
wire: .long -1
iov: .quad 0, 4096
"""
PAGE_ALIGNED_BUFFERS = """
.bss
.align 4096
page: .zero 4096
page2: .zero 4096
page3: .zero 4096
"""


def spin(iterations: int) -> str:
    """Burn 2 * iterations + 1 instructions of virtual time."""
    return f"""
    mov ecx, {iterations}
1:
    dec ecx
    jnz 1b
"""


def program(body: str, data: str = "") -> str:
    return f"""
.text
_start:
{body}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
{SEND_DATA}
{data}
{PAGE_ALIGNED_BUFFERS}
"""


def traced(run, source: str):
    """Run a program; returns (Run, every event the recorder saw)."""
    seen: list[dict] = []
    return run(source, events=seen), seen


def count(seen: list[dict], type_: str, kind: str, **fields) -> int:
    return sum(1 for e in seen if e["type"] == type_ and e["kind"] == kind
               and all(e.get(k) == v for k, v in fields.items()))


def test_a_cow_send_then_an_immediate_write_costs_one_protection_fault_and_one_copy(run):
    result, seen = traced(run, program(f"""
    mov byte ptr [rip + page], 7
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page", 4096)}
    mov byte ptr [rip + page], 8
"""))
    assert result.status == 0
    rec = result.kernel.recorder
    assert rec.count("sink", "hold") == 1 and rec.count("sink", "release") == 1
    assert rec.count("sink", "copy") == 0
    # The write: one protection fault, one page copied, and the original goes on in flight.
    assert count(seen, "fault", "protection") == 1
    assert count(seen, "page", "copy", reason="cow-send") == 1
    assert count(seen, "page", "orphan") == 1
    # By hand: the send write-protects the one mapping (a PTE write and an invlpg), and the
    # fault maps the copy in place of the held frame (a PTE write and an invlpg).
    assert count(seen, "pte", "write", reason="cow-send") == 2
    assert count(seen, "tlb", "invalidate-page", reason="cow-send") == 2
    # The peer got the page as it was at the send: 7, then zeros.
    assert rec.amount("sink", "deliver") == 4096 and rec.amount("sink", "corrupt") == 0


def test_after_the_wire_drained_the_page_write_permission_comes_back_without_a_copy(run):
    result, seen = traced(run, program(f"""
    mov byte ptr [rip + page], 7
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page", 4096)}
{spin(5000)}
    mov byte ptr [rip + page], 8
"""))
    assert result.status == 0
    assert count(seen, "sink", "release") == 1
    releases = [e["t"] for e in seen if e["kind"] == "release"]
    faults = [e["t"] for e in seen if e["type"] == "fault" and e["kind"] == "protection"]
    assert len(faults) == 1 and releases[0] <= faults[0]
    assert count(seen, "page", "copy") == 0
    assert count(seen, "tlb", "invalidate-page", reason="cow-send") == 1     # only the send's
    assert result.kernel.recorder.amount("sink", "corrupt") == 0


def test_a_plain_write_copies_and_holds_nothing(run):
    result = run(program(f"""
{OPEN_WIRE}
{syscall(WRITE, WIRE, "page", 4096)}
    mov byte ptr [rip + page], 8
"""))
    rec = result.kernel.recorder
    assert rec.amount("sink", "copy") == 4096 and rec.count("sink", "hold") == 0
    assert rec.amount("sink", "deliver") == 4096 and rec.count("fault", "protection") == 0


def test_a_cow_send_copies_the_unaligned_head_and_tail_and_holds_the_whole_pages(run):
    result = run(program(f"""
    mov byte ptr [rip + page], 1
    mov byte ptr [rip + page2], 2
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page + 100", 3996 + 4096 + 100)}
"""))
    rec = result.kernel.recorder
    # [page+100, page+4096) is copied (3996 bytes), page2 is held, [page3, page3+100) is copied.
    assert rec.count("sink", "hold") == 1
    assert rec.amount("sink", "copy") == 3996 + 100
    assert rec.amount("sink", "deliver") == 3996 + 4096 + 100


def test_vmsplice_lends_the_page_so_a_later_write_reaches_the_reader(run):
    result = run(program(f"""
    mov dword ptr [rip + page], 0x41414141
{syscall(PIPE, "fds")}
    lea rax, [rip + page]
    mov qword ptr [rip + iov], rax
    mov qword ptr [rip + iov + 8], 4
{syscall(VMSPLICE, W, "iov", 1, 0)}
    mov dword ptr [rip + page], 0x42424242
{syscall(READ, R, "buffer", 4)}
{syscall(WRITE, 1, "buffer", 4)}
"""))
    assert result.stdout == b"BBBB"
    rec = result.kernel.recorder
    assert rec.count("sink", "lend") == 1 and rec.amount("sink", "copy") == 0
    assert rec.amount("sink", "deliver") == 4 and rec.amount("sink", "corrupt") == 4


def test_completions_come_as_ranges_once_the_reader_has_taken_the_pages(run):
    vmsplice_page = f"""
    lea rax, [rip + page]
    mov qword ptr [rip + iov], rax
{syscall(VMSPLICE, W, "iov", 1, 0)}
"""
    steps = [
        syscall(PIPE, "fds"),
        vmsplice_page, vmsplice_page, vmsplice_page,
        syscall(ZC_REAP, W, "ranges", 4, 0),             # nothing taken yet: 0
        syscall(READ, R, "buffer", 4096),
        syscall(READ, R, "buffer", 4096),
        syscall(ZC_REAP, W, "ranges", 4, 0),             # ids 0 and 1: one range
        syscall(READ, R, "buffer", 4096),
        syscall(ZC_REAP, W, "ranges + 8", 4, ZC_WAIT),   # id 2
        syscall(ZC_REAP, W, "ranges", 4, ZC_WAIT),       # nothing outstanding: 0, no wait
    ]
    steps.append(syscall(WRITE, 1, "ranges", 16))       # the ranges reaped, ahead of the results
    result = run(each_result_to_stdout(steps, data=SEND_DATA + PAGE_ALIGNED_BUFFERS + ".bss\nranges: .zero 32\n"))
    assert struct.unpack("<4I", result.stdout[:16]) == (0, 1, 2, 2)
    results = struct.unpack(f"<{len(steps)}q", result.stdout[16:])
    assert results == (0, 4096, 4096, 4096, 0, 4096, 4096, 1, 4096, 1, 0, 16)
    assert result.kernel.recorder.count("sink", "complete") == 3


def test_a_blocked_reaper_wakes_when_the_reader_takes_the_page(run):
    result = run(program(f"""
{syscall(PIPE, "fds")}
    lea rax, [rip + page]
    mov qword ptr [rip + iov], rax
{syscall(VMSPLICE, W, "iov", 1, 0)}
{syscall(FORK)}
    test rax, rax
    jnz parent
{spin(1000)}
{syscall(READ, R, "buffer", 4096)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
parent:
{syscall(ZC_REAP, W, "buffer", 1, ZC_WAIT)}
    cmp rax, 1
    jne error
"""))
    assert result.status == 0
    assert result.kernel.recorder.count("syscall", "zc_reap") == 2    # slept once, then reaped 1


def test_nothing_leaks_when_a_process_exits_or_is_killed_with_pages_in_flight(run):
    # Wire: the process dies with a segfault right after sending; the peer still gets everything.
    killed = run(program(f"""
    mov byte ptr [rip + page], 1
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page", 4096)}
    lea rax, [rip + page2]
    mov qword ptr [rip + iov], rax
{syscall(VMSPLICE, WIRE, "iov", 1, 0)}
    mov byte ptr [0], 1
"""))
    assert killed.status == 128 + 11
    rec = killed.kernel.recorder
    assert rec.count("sink", "hold") + rec.count("sink", "lend") == rec.count("sink", "release") == 2
    assert rec.amount("sink", "deliver") == 8192
    # Pipe: nobody ever reads; the held pages go back when the last reader closes at exit.
    exited = run(program(f"""
{syscall(PIPE, "fds")}
{syscall(IOCTL, W, VMG_ZEROCOPY, 1)}
{syscall(WRITE, W, "page", 8192)}
"""))
    rec = exited.kernel.recorder
    assert rec.count("sink", "hold") == rec.count("sink", "release") == 2
    assert rec.amount("sink", "deliver") == 0


def test_bad_vmsplice_and_ioctl_and_zc_reap_arguments_get_linux_error_codes(run):
    def vmsplice(fd, iov, n, flags):
        return syscall(VMSPLICE, fd, iov, n, flags)

    steps = [
        syscall(PIPE2, "fds", O_NONBLOCK),
        vmsplice(77, "iov", 1, 0),                      # EBADF: no such descriptor
        vmsplice(1, "iov", 1, 0),                       # EBADF: not a pipe or a wire
        vmsplice(W, "iov", 1, 0x100),                   # EINVAL: unknown flag
        vmsplice(W, "iov", 1025, 0),                    # EINVAL: more than IOV_MAX segments
        vmsplice(W, "bad_iov", 1, 0),                   # EFAULT: the buffer is not mapped
        vmsplice(W, 0x10, 1, 0),                        # EFAULT: the iovec is not mapped
        vmsplice(W, "two_pages_one_unmapped", 1, 0),    # the mapped page only: 4096
        syscall(IOCTL, 1, VMG_ZEROCOPY, 1),             # ENOTTY: a console
        syscall(IOCTL, W, 0x5401, 0),                   # ENOTTY: an unknown request
        syscall(IOCTL, W, VMG_ZEROCOPY, 2),             # EINVAL
        syscall(ZC_REAP, R, "buffer", 1, 0),            # EBADF: a read end
        syscall(ZC_REAP, W, "buffer", 1, 4),            # EINVAL: unknown flag
    ]
    setup = f"""
{syscall(MMAP, 0, 8192, 3, 0x22)}
    mov qword ptr [rip + two_pages_one_unmapped], rax
    mov qword ptr [rip + two_pages_one_unmapped + 8], 8192
    lea rdi, [rax + 4096]
    mov esi, 4096
    mov eax, {MUNMAP}
    syscall
"""
    data = """
.data
bad_iov: .quad 0x10, 4096
two_pages_one_unmapped: .quad 0, 0
iov: .quad 0, 4096
"""
    result = run(each_result_to_stdout(steps, setup=setup, data=data))
    results = struct.unpack(f"<{len(steps)}q", result.stdout)
    assert results == (0, -errno.EBADF, -errno.EBADF, -errno.EINVAL, -errno.EINVAL, -errno.EFAULT, -errno.EFAULT,
                       4096, -errno.ENOTTY, -errno.ENOTTY, -errno.EINVAL, -errno.EBADF, -errno.EINVAL)


def test_a_full_pipe_blocks_vmsplice_unless_splice_f_nonblock_whatever_the_pipe_o_nonblock(run):
    fill = f"""
    lea rax, [rip + page]
    mov qword ptr [rip + iov], rax
    mov qword ptr [rip + iov + 8], 4096
    mov r12d, 16
1:
{syscall(VMSPLICE, W, "iov", 1, 0)}
    dec r12d
    jnz 1b
"""
    for pipe_flags in (0, O_NONBLOCK):
        nonblocking = run(each_result_to_stdout(
            [syscall(PIPE2, "fds", pipe_flags), fill + syscall(VMSPLICE, W, "iov", 1, SPLICE_F_NONBLOCK)],
            data=SEND_DATA + PAGE_ALIGNED_BUFFERS))
        assert struct.unpack("<2q", nonblocking.stdout) == (0, -errno.EAGAIN), pipe_flags
        assert nonblocking.kernel.recorder.count("sink", "lend") == 16
    # Without SPLICE_F_NONBLOCK it waits even on an O_NONBLOCK pipe; with no reader but
    # itself it can never go on: the kernel finds the deadlock and kills it.
    blocking = run(program(f"""
{syscall(PIPE2, "fds", O_NONBLOCK)}
{fill}
{syscall(VMSPLICE, W, "iov", 1, 0)}
"""))
    assert blocking.status == 128 + 9
    assert blocking.kernel.recorder.count("sink", "lend") == 16


def test_a_blocking_write_bigger_than_the_wire_waits_while_the_cpu_idles_and_returns_the_whole_count(run):
    result, seen = traced(run, program(f"""
{syscall(MMAP, 0, 1 << 20, 3, 0x22)}
    mov qword ptr [rip + iov], rax
    mov rsi, rax
{OPEN_WIRE}
    mov edi, dword ptr [rip + wire]
    mov rsi, qword ptr [rip + iov]
    mov edx, {1 << 20}
    mov eax, {WRITE}
    syscall
    cmp rax, {1 << 20}
    jne error
"""))
    assert result.status == 0
    kernel = result.kernel
    # 256K go in at once; each wait lasts until the peer has taken that 256K segment (64,000
    # instructions at 4096 bytes per 1000), so the call is made 4 times in all.
    assert kernel.recorder.count("syscall", "write") == 4
    # The peer takes 1 MiB in 256,000 instructions from the first byte sent, plus one instruction
    # for each of the 3 calls made again (the syscall instruction runs while the wire is empty).
    # The program ran for only a few: the rest was idle time, not counted as instructions retired.
    first_send = next(e["t"] for e in seen if e["type"] == "sink")
    assert kernel.machine.now == first_send + 256_000 + 3
    assert kernel.machine.idle_time == kernel.machine.now - kernel.machine.retired > 255_000
    assert kernel.recorder.amount("sink", "copy") == kernel.recorder.amount("sink", "deliver") == 1 << 20


def test_cow_sends_after_fork_never_let_either_process_write_to_the_page_in_flight(run):
    result, seen = traced(run, program(f"""
    mov byte ptr [rip + page], 1
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page", 4096)}
{syscall(FORK)}
    mov byte ptr [rip + page], 2
    test rax, rax
    jz child_done
{syscall(61, -1, 0, 0, 0)}
    mov byte ptr [rip + page], 3
child_done:
"""))
    assert result.status == 0
    rec = result.kernel.recorder
    # The child's write copies the page up (the parent still shares the object); the
    # parent's first write does too, and its second finds its own copy, writable.
    assert count(seen, "page", "copy", reason="cow") == 2
    assert count(seen, "page", "copy", reason="cow-send") == 0
    assert rec.count("sink", "hold") == rec.count("sink", "release") == 1
    assert rec.amount("sink", "deliver") == 4096 and rec.amount("sink", "corrupt") == 0


def test_a_cow_send_into_a_pipe_reaches_the_reader_as_it_was_at_the_send(run):
    result = run(program(f"""
    mov dword ptr [rip + page], 0x41414141
{syscall(PIPE, "fds")}
{syscall(IOCTL, W, VMG_ZEROCOPY, 1)}
{syscall(WRITE, W, "page", 4096)}
    mov dword ptr [rip + page], 0x42424242
{syscall(READ, R, "buffer", 4)}
{syscall(WRITE, 1, "buffer", 4)}
{syscall(WRITE, 1, "page", 4)}
"""))
    assert result.stdout == b"AAAABBBB"
    rec = result.kernel.recorder
    assert rec.count("sink", "hold") == 1 and rec.count("page", "copy") == 1
    assert rec.amount("sink", "corrupt") == 0


def test_a_cow_write_into_a_full_nonblocking_pipe_sends_what_fits_then_gets_eagain(run):
    steps = [
        syscall(PIPE2, "fds", O_NONBLOCK),
        syscall(IOCTL, W, VMG_ZEROCOPY, 1),
        syscall(WRITE, W, "big", 17 * 4096),     # 16 slots: 16 pages held
        syscall(WRITE, W, "big", 4096),          # full: EAGAIN
        syscall(WRITE, W, "big + 1", 10),        # full: EAGAIN for a copied piece too
    ]
    result = run(each_result_to_stdout(steps, data=".bss\n.align 4096\nbig: .zero 17 * 4096\n"))
    assert struct.unpack("<5q", result.stdout) == (0, 0, 16 * 4096, -errno.EAGAIN, -errno.EAGAIN)
    assert result.kernel.recorder.count("sink", "hold") == result.kernel.recorder.count("sink", "release") == 16


def test_a_trace_of_every_way_of_sending_follows_the_schema(build, tmp_path):
    source = program(f"""
    mov byte ptr [rip + page], 7
{OPEN_WIRE}
{syscall(WRITE, WIRE, "page", 100)}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, WIRE, "page", 4096)}
    mov byte ptr [rip + page], 8
{syscall(PIPE, "fds")}
    lea rax, [rip + page2]
    mov qword ptr [rip + iov], rax
{syscall(VMSPLICE, W, "iov", 1, 0)}
    mov byte ptr [rip + page2], 9
{syscall(READ, R, "buffer", 4096)}
{syscall(ZC_REAP, W, "buffer", 1, 0)}
""")
    path = tmp_path / "sends.jsonl"
    assert main(["run", "--trace", str(path), build(source)]) == 0
    header, *events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e, trace_schema.validate_event(e)) for e in events if trace_schema.validate_event(e)] == []
    sink_kinds = {e["kind"] for e in events if e["type"] == "sink"}
    assert sink_kinds == {"copy", "hold", "lend", "release", "deliver", "corrupt", "complete"}
    assert {e["kind"] for e in events if e["type"] == "page"} >= {"orphan", "copy"}


SHARED = 0x2000_0000          # a MAP_SHARED anonymous page, at a fixed address
MAP_SHARED_ANONYMOUS_FIXED = 0x01 | 0x20 | 0x10
SYNC = "[rip + sync]", "[rip + sync + 4]"     # a second pipe, child to parent: "I have sent"


def test_a_cow_send_write_protects_every_mapping_of_the_page_so_the_other_process_write_copies_it(run):
    """The page is mapped in parent and child (MAP_SHARED) when the child sends it; the parent writes."""
    result, seen = traced(run, program(f"""
{syscall(MMAP, SHARED, 4096, 3, MAP_SHARED_ANONYMOUS_FIXED)}
    mov rbx, {SHARED}
    mov dword ptr [rbx], 0x41414141
{syscall(PIPE, "fds")}
{syscall(PIPE, "sync")}
{OPEN_WIRE}
{syscall(IOCTL, WIRE, VMG_ZEROCOPY, 1)}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(READ, SYNC[0], "buffer", 1)}
    mov rbx, {SHARED}
    mov dword ptr [rbx], 0x43434343
{syscall(WRITE, W, "buffer", 1)}
{syscall(61, -1, 0, 0, 0)}
    jmp done
child:
{syscall(WRITE, WIRE, SHARED, 4096)}
{syscall(WRITE, SYNC[1], "buffer", 1)}
{syscall(READ, R, "buffer", 1)}
{syscall(WRITE, 1, SHARED, 4)}
done:
""", data=".data\nsync: .long -1, -1\n"))
    assert result.status == 0
    # The mapping is shared: the child sees the parent's write, from the copy now in the object.
    assert result.stdout == b"CCCC"
    at_shared = {"address": SHARED}
    assert count(seen, "fault", "zero-fill", **at_shared) == 1           # the parent's first write
    assert count(seen, "fault", "resident", **at_shared) == 2            # the child's send, then its read
    assert count(seen, "fault", "protection", **at_shared) == 1          # the parent's write in flight
    assert count(seen, "page", "copy", reason="cow-send") == 1
    assert count(seen, "page", "orphan") == 1
    # By hand: the send write-protects both mappings through the page's two pv entries (2 PTE
    # writes, 1 invlpg: only the child's address space is loaded); the parent's write removes the
    # child's mapping (1 PTE write, no invlpg) and maps the copy in place of the held frame (1
    # PTE write, 1 invlpg).
    assert count(seen, "pte", "write", reason="cow-send") == 4
    assert count(seen, "tlb", "invalidate-page", reason="cow-send") == 2
    rec = result.kernel.recorder
    assert rec.count("sink", "hold") == rec.count("sink", "release") == 1
    # The peer got "AAAA" as sent, not the parent's "CCCC" (and the two pipes their one byte each).
    assert rec.amount("sink", "deliver") == 4096 + 2 and rec.amount("sink", "corrupt") == 0


@pytest.fixture
def calls(monkeypatch) -> list[tuple[int, str, int | str]]:
    """Every syscall from now on as (pid, name, result or "slept"); and at each exit, as
    (pid, "half-done", n), how many blocked senders the sinks the process still has open remember."""
    seen: list[tuple[int, str, int | str]] = []

    def recording(kernel, proc, number, args):
        if number == EXIT:
            sinks = {id(f): f for f in proc.files.values() if isinstance(f, SinkEnd)}.values()
            seen.append((proc.pid, "half-done", sum(len(s.written_before_sleep) for s in sinks)))
        result = dispatch(kernel, proc, number, args)
        name = syscall_name(number)
        seen.append((proc.pid, name, "slept" if proc.state == SLEEPING else result))
        return result

    monkeypatch.setattr(trap_module, "dispatch", recording)
    return seen


def of(calls: list[tuple[int, str, int | str]], pid: int, name: str) -> list[int | str]:
    return [result for p, n, result in calls if p == pid and n == name]


PIPE_PAGES, WIRE_PAGES = 16, 64       # what a pipe and a wire (256K in flight) hold
SENDER = 2                            # the forked child's pid


def blocked_send(mode: str, sink: str, pages: int) -> str:
    """The child's send of `pages` + 1 pages: the sink takes `pages`, then the child blocks."""
    fd = WIRE if sink == "wire" else W
    if mode == "cow":
        return syscall(WRITE, fd, "big", (pages + 1) * 4096)
    return f"""
    lea rax, [rip + big]
    mov qword ptr [rip + iov], rax
    mov qword ptr [rip + iov + 8], {pages * 4096}
{syscall(VMSPLICE, fd, "iov", 1, 0)}
    lea rax, [rip + big + {pages * 4096}]
    mov qword ptr [rip + iov], rax
    mov qword ptr [rip + iov + 8], 4096
{syscall(VMSPLICE, fd, "iov", 1, 0)}
"""


@pytest.mark.parametrize("mode, sink", [("cow", "wire"), ("cow", "pipe"), ("vmsplice", "wire"), ("vmsplice", "pipe")])
def test_a_sender_killed_by_another_process_while_blocked_leaks_nothing_and_every_hold_goes(run, calls, mode, sink):
    pages = WIRE_PAGES if sink == "wire" else PIPE_PAGES
    result = run(program(f"""
{OPEN_WIRE if sink == "wire" else syscall(PIPE, "fds")}
{syscall(IOCTL, WIRE if sink == "wire" else W, VMG_ZEROCOPY, 1) if mode == "cow" else ""}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(YIELD)}
{syscall(KILL, SENDER, 9)}
{syscall(WAIT4, -1, "status", 0, 0)}
    cmp dword ptr [rip + status], 9
    jne error
{syscall(READ, R, "big", PIPE_PAGES * 4096) if sink == "pipe" else ""}
    jmp done
child:
{blocked_send(mode, sink, pages)}
    jmp error
done:
""", data=f".bss\n.align 4096\nbig: .zero {(WIRE_PAGES + 1) * 4096}\n"))
    assert result.status == 0
    sends = of(calls, SENDER, "write" if mode == "cow" else "vmsplice")
    assert sends == (["slept"] if mode == "cow" else [pages * 4096, "slept"])
    assert of(calls, 1, "kill") == [0] and of(calls, SENDER, "exit") == []
    assert of(calls, 1, "half-done") == [0]       # the killed sender's place in its write is forgotten
    rec = result.kernel.recorder
    assert rec.count("sink", "hold" if mode == "cow" else "lend") == rec.count("sink", "release") == pages
    # What the sender got in before it died still reaches the peer (the parent reads the pipe).
    assert rec.amount("sink", "deliver") == pages * 4096 and rec.amount("sink", "corrupt") == 0


READER = 2                            # the forked child, reading


def reader_that_takes_one_page_then_lets_the_writer_on() -> str:
    """The child: one page read; a yield, so the woken writer goes on; then everything, to EOF."""
    return f"""
child:
{syscall(CLOSE, W)}
{syscall(YIELD)}
{syscall(READ, R, "buffer", 4096)}
{syscall(YIELD)}
1:
{syscall(READ, R, "received", PIPE_PAGES * 4096)}
    test rax, rax
    jg 1b
    js error
"""


def writer_epilogue() -> str:
    return f"""
{syscall(CLOSE, W)}
{syscall(WAIT4, -1, "status", 0, 0)}
    cmp dword ptr [rip + status], 0
    jne error
    jmp done
"""


BIG_BUFFERS = f".bss\n.align 4096\nbig: .zero {2 * PIPE_PAGES * 4096}\nreceived: .zero {PIPE_PAGES * 4096}\n"


def test_a_blocking_cow_write_into_a_full_pipe_waits_for_the_reader_then_sends_the_rest(run, calls):
    result, seen = traced(run, program(f"""
{syscall(MMAP, SHARED, (PIPE_PAGES + 1) * 4096, 3, MAP_SHARED_ANONYMOUS_FIXED)}
{syscall(PIPE, "fds")}
{syscall(IOCTL, W, VMG_ZEROCOPY, 1)}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(WRITE, W, SHARED, (PIPE_PAGES + 1) * 4096)}
    mov rbx, {SHARED + PIPE_PAGES * 4096}
    mov byte ptr [rbx], 0x55      # the last page, still in the pipe
{writer_epilogue()}
{reader_that_takes_one_page_then_lets_the_writer_on()}
done:
""", data=BIG_BUFFERS))
    assert result.status == 0
    # 16 pages fill the pipe and the write sleeps; the reader frees one slot; made again, the write
    # sends the 17th page and returns the whole count.
    assert of(calls, 1, "write") == ["slept", (PIPE_PAGES + 1) * 4096]
    assert of(calls, READER, "read") == [4096, PIPE_PAGES * 4096, 0]
    rec = result.kernel.recorder
    assert rec.count("sink", "hold") == rec.count("sink", "release") == PIPE_PAGES + 1
    assert rec.count("sink", "copy") == 0
    # The writer's store into the page in flight (shared, so not copied by fork's copy-on-write)
    # faults and copies it; the reader gets the page as sent.
    assert count(seen, "fault", "protection", address=SHARED + PIPE_PAGES * 4096) == 1
    assert count(seen, "page", "copy", reason="cow-send") == 1
    assert rec.amount("sink", "deliver") == (PIPE_PAGES + 1) * 4096 and rec.amount("sink", "corrupt") == 0


def test_vmsplice_into_a_full_pipe_waits_for_the_reader_then_sends_what_fits(run, calls):
    def vmsplice(offset: int, pages: int) -> str:
        return f"""
    lea rax, [rip + big + {offset}]
    mov qword ptr [rip + iov], rax
    mov qword ptr [rip + iov + 8], {pages * 4096}
{syscall(VMSPLICE, W, "iov", 1, 0)}
"""

    result = run(program(f"""
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{vmsplice(0, PIPE_PAGES)}
{vmsplice(PIPE_PAGES * 4096, PIPE_PAGES)}
{writer_epilogue()}
{reader_that_takes_one_page_then_lets_the_writer_on()}
done:
""", data=BIG_BUFFERS))
    assert result.status == 0
    # The second call finds the pipe full and sleeps; made again once the reader has freed one
    # slot, it lends the one page that fits and returns, as Linux's vmsplice does.
    assert of(calls, 1, "vmsplice") == [PIPE_PAGES * 4096, "slept", 4096]
    assert of(calls, READER, "read") == [4096, PIPE_PAGES * 4096, 0]
    rec = result.kernel.recorder
    assert rec.count("sink", "lend") == rec.count("sink", "release") == PIPE_PAGES + 1
    assert rec.count("sink", "complete") == 2      # the call that slept sent nothing and has no id
    assert rec.amount("sink", "deliver") == (PIPE_PAGES + 1) * 4096 and rec.amount("sink", "corrupt") == 0


HOLE = 0x3000_0000            # three private pages mapped here, the third unmapped again


def test_a_cow_write_over_an_unmapped_page_sends_what_comes_before_it(run):
    steps = [
        syscall(WRITE, W, HOLE, 3 * 4096),             # two pages held: 8192
        syscall(WRITE, W, HOLE + 8192, 4096),          # nothing before the hole: EFAULT
        syscall(WRITE, W, HOLE + 100, 8192),           # 3996 copied, a page held: 8092
        syscall(WRITE, W, HOLE + 4196, 4096),          # 3996 copied
    ]
    setup = f"""
{syscall(PIPE2, "fds", O_NONBLOCK)}
{syscall(IOCTL, W, VMG_ZEROCOPY, 1)}
{syscall(MMAP, HOLE, 3 * 4096, 3, 0x22 | 0x10)}
{syscall(MUNMAP, HOLE + 8192, 4096)}
"""
    result = run(each_result_to_stdout(steps, setup=setup))
    assert struct.unpack("<4q", result.stdout) == (8192, -errno.EFAULT, 3996 + 4096, 3996)
    rec = result.kernel.recorder
    assert rec.count("sink", "hold") == rec.count("sink", "release") == 3
    assert rec.amount("sink", "copy") == 2 * 3996


def test_vmsplice_on_a_read_end_reads_a_lent_page_into_the_iovec_and_completes_its_send(run):
    steps = [
        syscall(PIPE, "fds"),
        syscall(VMSPLICE, W, "iov", 1, 0),                 # lends page: 4096
        syscall(VMSPLICE, R, "read_iov", 2, 0),            # 4092 bytes to buffer, the last 4 to page2
        syscall(ZC_REAP, W, "ranges", 1, 0),               # the lent page was taken: id 0 complete
        syscall(VMSPLICE, R, "read_iov", 2, SPLICE_F_NONBLOCK),    # empty: EAGAIN
        syscall(WRITE, 1, "buffer", 4),
        syscall(WRITE, 1, "page2", 4),
    ]
    setup = """
    mov dword ptr [rip + page], 0x41414141
    mov dword ptr [rip + page + 4092], 0x42424242
    lea rax, [rip + page]
    mov qword ptr [rip + iov], rax
    lea rax, [rip + buffer]
    mov qword ptr [rip + read_iov], rax
    lea rax, [rip + page2]
    mov qword ptr [rip + read_iov + 16], rax
"""
    data = SEND_DATA + PAGE_ALIGNED_BUFFERS + ".data\nread_iov: .quad 0, 4092, 0, 100\n.bss\nranges: .zero 8\n"
    result = run(each_result_to_stdout(steps, setup=setup, data=data))
    assert result.stdout[:8] == b"AAAABBBB"
    assert struct.unpack("<7q", result.stdout[8:]) == (0, 4096, 4096, 1, -errno.EAGAIN, 4, 4)
    rec = result.kernel.recorder
    assert rec.count("sink", "lend") == rec.count("sink", "release") == rec.count("sink", "complete") == 1
    assert rec.amount("sink", "deliver") == 4096 and rec.amount("sink", "corrupt") == 0


def test_vmsplice_on_an_empty_read_end_waits_for_the_writer(run, calls):
    result = run(program(f"""
    lea rax, [rip + buffer]
    mov qword ptr [rip + iov], rax
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(VMSPLICE, R, "iov", 1, 0)}
{syscall(WAIT4, -1, "status", 0, 0)}
{syscall(WRITE, 1, "buffer", 4)}
    jmp done
child:
{syscall(YIELD)}
{syscall(WRITE, W, "late", 4)}
done:
""", data='.data\nlate: .ascii "late"\n'))
    assert result.stdout == b"late"
    assert of(calls, 1, "vmsplice") == ["slept", 4]
