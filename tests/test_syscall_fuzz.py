"""Wild syscall arguments never take the kernel down.

Hypothesis writes programs that make a sequence of syscalls, each number
from the implemented set or anywhere else, with arguments from the values
that break kernels: zero, -1, 32-bit boundaries, the top of user space, the
kernel half, pointers into the program's own memory (its stack, data and
text) and page-aligned addresses.  Every run must end with each process
exited or killed by a signal, the kernel's invariants holding before every
syscall, no frame leaked and every file's pages equal to its bytes
(tests/conftest.run).  A Python exception anywhere fails the test.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vmgames.kernel.syscall import TABLE

REGISTERS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
# fork and vfork double the processes at each call; two at most keep a run small.
FORKS = {57, 58}
NUMBERS = sorted(set(TABLE) - FORKS) + [-1, 262, 500, 0x4000_0027, 1 << 32 | 39]
WILD = [0, 1, 2, 3, 7, 0x22, 4096, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FF9C, 1 << 32,
        0x7FFF_FFFF_F000, 0x7FFF_FFFF_FFFF, 1 << 47, 0xFFFF_8000_0000_0000, (1 << 64) - 1, (1 << 64) - 4096,
        (1 << 63), 0x40_0000, 0x40_1000]
# Valid pointers, computed at run time: the stack, the data area, the text.
POINTERS = {"stack": "mov {reg}, rsp", "data": "lea {reg}, [rip + area]", "text": "lea {reg}, [rip + _start]"}

argument = st.one_of(st.sampled_from(WILD), st.sampled_from(sorted(POINTERS)),
                     st.integers(min_value=0, max_value=(1 << 64) - 1))
call = st.tuples(st.sampled_from(NUMBERS), st.lists(argument, min_size=6, max_size=6))


def program(calls: list[tuple[int, list]], forks: int) -> str:
    lines = [".text", "_start:"]
    for i, (number, args) in enumerate(calls):
        for reg, value in zip(REGISTERS, args, strict=True):
            lines.append(POINTERS[value].format(reg=reg) if isinstance(value, str) else f"    mov {reg}, {value:#x}")
        lines += [f"    mov rax, {number & ((1 << 64) - 1):#x}", "    syscall"]
        if i < forks:
            lines += ["    mov eax, 57", "    syscall"]
    lines += ["    mov eax, 231", "    xor edi, edi", "    syscall",
              ".data", ".align 4096", "area: .zero 8192"]
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(call, min_size=1, max_size=12), forks=st.integers(min_value=0, max_value=2),
       ram=st.sampled_from([16 << 20, 160 << 10]))
def test_wild_syscalls_end_in_an_exit_or_a_signal_and_the_kernel_holds(run, calls, forks, ram):
    """With 16 MiB of RAM, and with 40 frames, where any call may find RAM exhausted."""
    result = run(program(calls, forks), ram=ram)
    assert result.proc.state == "zombie"
    assert 0 <= result.proc.shell_status <= 255


def test_a_futex_wait_with_a_zero_timeout_times_out_at_once_and_runs_on(run):
    """Found by the fuzzer: the sleep's timer is due as the slice ends, so the task is awake before the scheduler
    sees it slept; it must still make the call again (to get ETIMEDOUT) and be queued once."""
    result = run("""
.text
_start:
    lea rdi, [rip + word]
    xor esi, esi                # FUTEX_WAIT
    xor edx, edx                # expected value: the word's, so it waits
    lea r10, [rip + zero]       # a timeout of 0 s 0 ns
    mov eax, 202
    syscall
    mov rdi, rax
    neg rdi                     # exit status: ETIMEDOUT (110)
    mov eax, 60
    syscall
.data
word: .quad 0
zero: .quad 0, 0
""")
    assert result.proc.shell_status == 110
