"""Pipes, dup and dup2: data across fork, blocking both ways, EOF, EPIPE/SIGPIPE, non-blocking, bad input."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
import vmgames.kernel.trap as trap_module
from vmgames.kernel import errno
from vmgames.kernel.pipe import PIPE_BUF, PIPE_CAPACITY
from vmgames.kernel.proc import SLEEPING
from vmgames.kernel.syscall import dispatch, syscall_name

O_NONBLOCK, O_CLOEXEC = 0o4000, 0o2000000
BAD_ADDRESS = 0x10


@dataclass
class Call:
    pid: int
    name: str
    result: int
    slept: bool      # the call blocked; it is made again when the process is woken


@pytest.fixture
def calls(monkeypatch) -> list[Call]:
    """Every syscall the kernel runs from now on, with its result, in order."""
    seen: list[Call] = []

    def recording(kernel, proc, number, args):
        result = dispatch(kernel, proc, number, args)
        seen.append(Call(proc.pid, syscall_name(number), result,
                         proc.state == SLEEPING))
        return result

    monkeypatch.setattr(trap_module, "dispatch", recording)
    return seen


def results(calls: list[Call], pid: int, name: str) -> list[int | str]:
    """The results of one process's calls of one syscall; "slept" where it blocked."""
    return ["slept" if c.slept else c.result for c in calls if c.pid == pid and c.name == name]


def syscall(number: int, *args: str | int) -> str:
    """One syscall; each argument is a number or an assembly operand to load (a `fds` entry, an address)."""
    lines = []
    for register, arg in zip(("rdi", "rsi", "rdx", "r10"), args, strict=False):
        if isinstance(arg, int):
            lines.append(f"    mov {register}, {arg}")
        elif arg.startswith("["):
            lines.append(f"    movsxd {register}, dword ptr {arg}")
        else:
            lines.append(f"    lea {register}, [rip + {arg}]")
    lines += [f"    mov eax, {number}", "    syscall"]
    return "\n".join(lines) + "\n"


READ, WRITE, CLOSE, PIPE, YIELD, DUP, DUP2, FORK, EXIT, WAIT4, DUP3, PIPE2 = \
    0, 1, 3, 22, 24, 32, 33, 57, 60, 61, 292, 293
R, W = "[rip + fds]", "[rip + fds + 4]"     # the pipe's read and write ends


def copy_to_stdout_until_eof(fd: str, chunk: int, prefix: str, yield_after_each: bool = False) -> str:
    """Read `fd` `chunk` bytes at a time and write each piece to stdout; rbx counts the bytes; exit 99 on error."""
    return f"""
    xor ebx, ebx
{prefix}_again:
{syscall(READ, fd, "buffer", chunk)}
    test rax, rax
    jz {prefix}_eof
    js error
    add rbx, rax
    mov rdx, rax
{syscall(WRITE, 1, "buffer")}
{syscall(YIELD) if yield_after_each else ""}
    jmp {prefix}_again
{prefix}_eof:
"""


WAIT_FOR_CHILD_AND_EXIT_WITH_ITS_STATUS = f"""
{syscall(WAIT4, -1, "status", 0, 0)}
    mov edi, dword ptr [rip + status]
    shr edi, 8
    mov eax, {EXIT}
    syscall
"""

COMMON = f"""
error:
    mov edi, 99
    mov eax, {EXIT}
    syscall
.data
fds: .long -1, -1
status: .long -1
.bss
buffer: .zero 4096
"""

MESSAGE = b"down the pipe, in pieces"


def each_result_to_stdout(steps: list[str], setup: str = "", data: str = "") -> str:
    """A program making the syscalls `steps` in turn, then writing their results (8 bytes each) to stdout."""
    calls = "".join(f"{step}    mov qword ptr [rip + report + {8 * i}], rax\n" for i, step in enumerate(steps))
    return f"""
.text
_start:
{setup}
{calls}
{syscall(WRITE, 1, "report", 8 * len(steps))}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.bss
report: .zero {8 * len(steps)}
{data}
"""


def test_parent_to_child_the_reader_blocks_until_data_then_sees_eof(run, calls):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
    test rax, rax
    jnz error
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, R)}
{syscall(YIELD)}
{syscall(WRITE, W, "message", len(MESSAGE))}
{syscall(CLOSE, W)}
{WAIT_FOR_CHILD_AND_EXIT_WITH_ITS_STATUS}
child:
{syscall(CLOSE, W)}
{copy_to_stdout_until_eof(R, 5, "child")}
    mov rdi, rbx
    mov eax, {EXIT}
    syscall
{COMMON}
.section .rodata
message: .ascii "{MESSAGE.decode()}"
""")
    assert result.stdout == MESSAGE
    assert result.status == len(MESSAGE)
    # The parent yielded before writing: the child's first read found the pipe empty and slept;
    # then five reads of at most 5 bytes, and EOF once the parent closed the only write end.
    assert results(calls, 2, "read") == ["slept", 5, 5, 5, 5, 4, 0]
    assert results(calls, 1, "write") == [len(MESSAGE)]


def test_request_and_reply_through_two_pipes(run):
    result = run(f"""
.text
_start:
{syscall(PIPE, "down")}
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, "[rip + down]")}
{syscall(CLOSE, W)}
{syscall(WRITE, "[rip + down + 4]", "ping", 4)}
{syscall(CLOSE, "[rip + down + 4]")}
{copy_to_stdout_until_eof(R, 100, "parent")}
{WAIT_FOR_CHILD_AND_EXIT_WITH_ITS_STATUS}
child:
{syscall(CLOSE, "[rip + down + 4]")}
{syscall(CLOSE, R)}
{syscall(READ, "[rip + down]", "buffer", 100)}
    mov r12, rax
{syscall(WRITE, W, "pong", 5)}
    mov rdx, r12
{syscall(WRITE, W, "buffer")}
    mov edi, 7
    mov eax, {EXIT}
    syscall
{COMMON}
.data
down: .long -1, -1
.section .rodata
ping: .ascii "ping"
pong: .ascii "pong:"
""")
    assert result.stdout == b"pong:ping"
    assert result.status == 7


def test_eof_only_once_every_descriptor_of_the_write_end_is_closed(run, calls):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(DUP, W)}
    mov dword ptr [rip + copy], eax
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, W)}
{syscall(CLOSE, "[rip + copy]")}
{copy_to_stdout_until_eof(R, 100, "parent")}
{WAIT_FOR_CHILD_AND_EXIT_WITH_ITS_STATUS}
child:
{syscall(CLOSE, R)}
{syscall(WRITE, W, "first", 6)}
{syscall(CLOSE, W)}
{syscall(YIELD)}
{syscall(WRITE, "[rip + copy]", "second", 7)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.data
copy: .long -1
.section .rodata
first: .ascii "first "
second: .ascii "second\\n"
""")
    assert result.stdout == b"first second\n"
    assert result.status == 0
    # After "first " and the close of one of the child's two write descriptors the parent
    # still blocks: the dup is open.  EOF comes when the child exits.
    assert results(calls, 1, "read") == ["slept", 6, "slept", 7, 0]


def test_a_reader_holding_its_own_write_end_never_sees_eof_and_dies_in_the_deadlock(run, calls):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{copy_to_stdout_until_eof(R, 100, "parent")}
    mov edi, 0
    mov eax, {EXIT}
    syscall
child:
{syscall(WRITE, W, "x", 1)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.section .rodata
x: .ascii "x"
""")
    assert result.stdout == b"x"
    assert result.status == 128 + 9
    assert "deadlock" in result.proc.death
    assert results(calls, 1, "read") == ["slept", 1, "slept"]


def test_a_write_with_no_reader_is_epipe_and_sigpipe_kills_the_writer(run, calls):
    result = run(f"""
.text
_start:
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(WAIT4, -1, "status", 0, 0)}
{syscall(WRITE, 1, "status", 4)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
child:
{syscall(PIPE, "fds")}
{syscall(CLOSE, R)}
{syscall(WRITE, W, "x", 1)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.section .rodata
x: .ascii "x"
""")
    assert struct.unpack("<i", result.stdout) == (13,)      # the wait status of death by SIGPIPE
    assert results(calls, 2, "write") == [-errno.EPIPE]
    assert "exit" not in [c.name for c in calls if c.pid == 2]
    assert result.status == 0


def test_a_writer_blocked_on_a_full_pipe_gets_sigpipe_when_the_reader_exits(run, calls):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, R)}
{syscall(WRITE, W, "area", 100000)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
child:
{syscall(CLOSE, W)}
{syscall(READ, R, "buffer", 4096)}
{syscall(YIELD)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.bss
area: .zero 100000
""")
    assert result.status == 128 + 13
    assert "killed by SIGPIPE" in result.proc.death
    # 65536 bytes went in, then a page more once the reader freed a slot; then the reader was gone.
    assert results(calls, 1, "write") == ["slept", "slept", -errno.EPIPE]
    assert results(calls, 2, "read") == [4096]


def test_dup2_redirects_stdout_into_a_pipe(run, calls):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, W)}
{syscall(WRITE, 1, "heading", 13)}
{copy_to_stdout_until_eof(R, 100, "parent")}
{WAIT_FOR_CHILD_AND_EXIT_WITH_ITS_STATUS}
child:
{syscall(DUP2, W, 1)}
    mov r12, rax
{syscall(CLOSE, R)}
{syscall(CLOSE, W)}
{syscall(WRITE, 1, "line", 17)}
    mov rdi, r12
    mov eax, {EXIT}
    syscall
{COMMON}
.section .rodata
heading: .ascii "parent read: "
line: .ascii "through the pipe\\n"
""")
    assert result.stdout == b"parent read: through the pipe\n"
    assert result.status == 1        # dup2 returned the new descriptor
    assert results(calls, 2, "write") == [17]


TRAFFIC = 200_000


def checksum(data) -> int:
    h = 0
    for byte in data:
        h = (h * 31 + byte) & 0xFFFF_FFFF_FFFF_FFFF
    return h


@pytest.mark.parametrize("writer", [
    syscall(WRITE, W, "area", TRAFFIC),
    syscall(20, W, "halves", 2),        # writev
])
def test_200000_bytes_through_a_pipe_blocking_both_ways(run, calls, writer):
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz child
{syscall(CLOSE, W)}
    xor r13d, r13d
    xor r14d, r14d
again:
{syscall(READ, R, "buffer", 1000)}
    test rax, rax
    jz eof
    js error
    add r13, rax
    cmp r13, {TRAFFIC}
    ja error                # more than was sent: stop rather than read forever
    lea rsi, [rip + buffer]
    mov rcx, rax
hash:
    movzx edx, byte ptr [rsi]
    imul r14, r14, 31
    add r14, rdx
    inc rsi
    dec rcx
    jnz hash
    jmp again
eof:
    mov qword ptr [rip + report], r14
    mov qword ptr [rip + report + 8], r13
{syscall(WAIT4, -1, "status", 0, 0)}
{syscall(WRITE, 1, "report", 20)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
child:
{syscall(CLOSE, R)}
    lea rdi, [rip + area]
    xor ecx, ecx
    xor edx, edx
fill:
    mov byte ptr [rdi + rcx], dl
    inc edx
    cmp edx, 251
    jne next
    xor edx, edx
next:
    inc rcx
    cmp rcx, {TRAFFIC}
    jne fill
{writer}
    cmp rax, {TRAFFIC}
    jne error
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.data
halves: .quad area, {TRAFFIC // 2}, area + {TRAFFIC // 2}, {TRAFFIC // 2}
.bss
report: .zero 24
area: .zero {TRAFFIC}
""")
    expected = checksum(i % 251 for i in range(TRAFFIC))
    assert struct.unpack("<QQi", result.stdout) == (expected, TRAFFIC, 0)
    writes = [c for c in calls if c.pid == 2 and c.name in ("write", "writev")]
    reads = [c for c in calls if c.pid == 1 and c.name == "read"]
    assert [c.slept for c in writes] == [True, True, True, False]    # full pipe: 65536 bytes at a time
    assert any(c.slept for c in reads)                               # empty pipe
    assert max(c.result for c in reads) == 1000


def test_writes_of_at_most_pipe_buf_bytes_are_never_interleaved(run):
    """Two writers of 4096-byte blocks and a reader making room 1000 bytes at a time, all taking turns."""
    blocks = 24
    writer = f"""
    mov r12d, {blocks}
1:
{syscall(WRITE, W, "letters", PIPE_BUF)}
    cmp rax, {PIPE_BUF}
    jne error
{syscall(YIELD)}
    dec r12d
    jnz 1b
    mov edi, 0
    mov eax, {EXIT}
    syscall
"""
    result = run(f"""
.text
_start:
{syscall(PIPE, "fds")}
{syscall(FORK)}
    test rax, rax
    jz writer_a
    lea rdi, [rip + letters]
    mov al, 0x62     # 'b'
    mov ecx, {PIPE_BUF}
    rep stosb
{syscall(FORK)}
    test rax, rax
    jz writer_b
{syscall(CLOSE, W)}
{copy_to_stdout_until_eof(R, 1000, "parent", yield_after_each=True)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
writer_a:
{writer}
writer_b:
{writer}
{COMMON}
.data
letters: .fill {PIPE_BUF}, 1, 0x61       # 'a'
""")
    out = result.stdout
    assert len(out) == 2 * blocks * PIPE_BUF
    order = ""
    for at in range(0, len(out), PIPE_BUF):
        block = out[at:at + PIPE_BUF]
        assert block == block[:1] * PIPE_BUF, f"block at {at} is mixed"
        order += block[:1].decode()
    assert order.count("a") == order.count("b") == blocks
    assert "ab" in order and "ba" in order      # the writers really took turns


def test_nonblocking_pipe_eagain_partial_writes_and_eof(run):
    steps = [
        syscall(READ, R, "buffer", 10),               # empty, writer open: EAGAIN
        syscall(WRITE, W, "area", 100_000),           # more than PIPE_BUF: what fits
        syscall(WRITE, W, "area", 1),                 # full: EAGAIN
        syscall(READ, R, "buffer", 100),              # the first slot is not free until read to its end:
        syscall(WRITE, W, "area", PIPE_BUF),          # EAGAIN
        syscall(WRITE, W, "area", PIPE_BUF + 1),      # EAGAIN
        syscall(READ, R, "buffer", 4096),             # frees the first slot
        syscall(WRITE, W, "area", PIPE_BUF + 1),      # a page goes in; its last byte does not
        syscall(CLOSE, W),
        syscall(READ, R, "buffer", 0),
        syscall(READ, R, "area", 100_000),            # what is left
        syscall(READ, R, "buffer", 10),               # empty, no writer: EOF, not EAGAIN
    ]
    result = run(each_result_to_stdout(steps, setup=f"""
{syscall(PIPE2, "fds", O_NONBLOCK)}
    test rax, rax
    jnz error
""", data=".bss\narea: .zero 100000"))
    # Linux 6.x gives the same numbers (Python's os.pipe2 on the host).
    assert list(struct.unpack(f"<{len(steps)}q", result.stdout)) == [
        -errno.EAGAIN, PIPE_CAPACITY, -errno.EAGAIN, 100, -errno.EAGAIN, -errno.EAGAIN, 4096, 4096, 0, 0,
        PIPE_CAPACITY - 100, 0]


@pytest.mark.parametrize("size, full_writes, last", [
    (100, 640, -errno.EAGAIN),      # 40 writes share a slot: 16 slots hold 64000 bytes
    (3000, 16, -errno.EAGAIN),      # no two share a slot: 48000 bytes
    (5000, 10, 4096),               # each write's last 904 bytes top up the previous write's slot
])
def test_what_a_pipe_holds_depends_on_the_sizes_of_the_writes_as_on_linux(run, size, full_writes, last):
    result = run(f"""
.text
_start:
{syscall(PIPE2, "fds", O_NONBLOCK)}
    xor ebx, ebx
again:
{syscall(WRITE, W, "area", size)}
    cmp rax, {size}
    jne full
    inc rbx
    jmp again
full:
    mov qword ptr [rip + report], rbx
    mov qword ptr [rip + report + 8], rax
{syscall(WRITE, 1, "report", 16)}
    mov edi, 0
    mov eax, {EXIT}
    syscall
{COMMON}
.bss
report: .zero 16
area: .zero {size}
""")
    assert struct.unpack("<qq", result.stdout) == (full_writes, last)


def test_bad_descriptors_flags_and_pointers_get_linux_error_codes(run):
    steps = [
        syscall(PIPE, BAD_ADDRESS),                   # EFAULT, and no descriptor is left open:
        syscall(DUP, 0),                              # so the lowest free one is still 3
        syscall(CLOSE, 3),
        syscall(PIPE2, "fds", 1),                     # O_WRONLY is not a pipe2 flag
        syscall(PIPE2, "fds", O_CLOEXEC),             # fds 3 and 4
        syscall(WRITE, R, "x", 1),                    # the read end is not writable
        syscall(READ, W, "buffer", 1),                # nor the write end readable
        syscall(READ, 99, "buffer", 1),
        syscall(WRITE, -1, "x", 1),
        syscall(CLOSE, 99),
        syscall(WRITE, W, BAD_ADDRESS, 1),
        syscall(WRITE, W, "x", 1),
        syscall(READ, R, BAD_ADDRESS, 1),             # EFAULT, and the byte stays in the pipe
        syscall(READ, R, "buffer", 10),
        syscall(DUP, 99),
        syscall(DUP2, 99, 5),
        syscall(DUP2, 0, -1),
        syscall(DUP2, 0, 1024),
        syscall(DUP2, 99, 99),
        syscall(DUP2, 4, 4),                          # same open descriptor: nothing to do
        syscall(DUP3, 4, 4, 0),                       # dup3 refuses it
        syscall(DUP3, 4, 6, 1),                       # only O_CLOEXEC
        syscall(DUP3, 99, 6, O_CLOEXEC),
        syscall(DUP3, 4, 6, O_CLOEXEC),
        syscall(DUP2, 3, 6),                          # replaces 6 (a write end) with a read end
        syscall(WRITE, 6, "x", 1),
        syscall(CLOSE, 6),
        syscall(CLOSE, 6),
        syscall(DUP, 0),                              # 3 and 4 are the pipe; 6 was closed: 5
    ]
    result = run(each_result_to_stdout(steps, data='.section .rodata\nx: .ascii "x"'))
    assert list(struct.unpack(f"<{len(steps)}q", result.stdout)) == [
        -errno.EFAULT, 3, 0, -errno.EINVAL, 0, -errno.EBADF, -errno.EBADF, -errno.EBADF, -errno.EBADF,
        -errno.EBADF, -errno.EFAULT, 1, -errno.EFAULT, 1, -errno.EBADF, -errno.EBADF, -errno.EBADF,
        -errno.EBADF, -errno.EBADF, 4, -errno.EINVAL, -errno.EINVAL, -errno.EBADF, 6, 6, -errno.EBADF,
        0, -errno.EBADF, 5]
