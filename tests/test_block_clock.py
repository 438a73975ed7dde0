"""The instruction clock counts whole translated blocks (emulator/clock.py, emulator/_native.c); held against its
reference, a count of every instruction (the clock's slow range over every address, as it counted before).

The same program with the same options must give the same trace, event for event and time for time, whichever
way its instructions are counted: through faults in the middle of blocks, syscalls, budgets that end inside a
block (small quanta and interleaves), several CPUs, and a table of block counts forgotten on every kernel entry.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from vmgames.kernel.observer import Observer
from vmgames.kernel.vmmeter import record
from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot

from tests.conftest import PRELUDE

ROOT = Path(__file__).resolve().parent.parent

# rdtsc, rdrand and cpuid in a loop (their answers come from the clock and the seed), then a division by zero.
ANSWERS = """
.text
_start:
    mov r12, 300
again:
    rdtsc
    add r13, rax
    rdrand rax
    xor r13, rax
    mov eax, 1
    cpuid
    add r13, rbx
    dec r12
    jnz again
    mov [rip + area], r13
    mov rdi, 1
    lea rsi, [rip + area]
    mov rdx, 8
    mov eax, 1
    syscall
    xor ecx, ecx
    mov eax, 7
    div ecx
.data
area: .zero 8
"""


class _Forgetful(Observer):
    """Drops the clock's table of block counts at every check the kernel makes (each CPU's turn and slice)."""

    checks_limits = True

    def check_limits(self, kernel) -> None:
        for processor in kernel.machine.processors:
            processor.clock.forget_blocks()


def trace_of(program: str, args: list[str], every_instruction: bool, forgetful: bool = False,
             **options) -> tuple[list, bytes, int]:
    out = io.BytesIO()
    kernel = boot(options.pop("ram", 16 << 20), root=str(ROOT), stdout=out, stderr=io.BytesIO(), **options)
    events: list = []
    kernel.recorder.sink = lambda *event: events.append(record(*event))
    if every_instruction:
        for processor in kernel.machine.processors:
            processor.clock.count_every_instruction(True)
            processor.drop_translations()
    if forgetful:
        kernel.observe(_Forgetful())
    kernel.spawn(kernel.fs.open_host(program), [program, *args], [])
    kernel.run()
    return events, out.getvalue(), kernel.machine.retired


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clock") / "answers"
    path.write_bytes(assemble(PRELUDE + ANSWERS, "answers.s"))
    path.chmod(0o755)
    return str(path)


CASES = [
    ("build/touch", ["300"], {}),
    ("build/touch", ["300"], {"quantum": 997}),
    ("build/cowfork", [], {"quantum": 101}),
    ("build/threads", [], {"cpus": 4, "interleave": 1009}),
    ("build/pressure", ["1024", "20", "3"], {"quantum": 9973}),
    ("build/stale_tlb", [], {"cpus": 2, "interleave": 503}),
    # Frames that held code refilled inside faults: runs ended by the deferred drop of translations.
    ("build/pressure", ["1500", "20", "3"], {"ram": 4 << 20, "swap": 16 << 20}),
]


@pytest.mark.parametrize("program, args, options", CASES, ids=[f"{c[0][6:]}-{c[2]}" for c in CASES])
def test_whole_blocks_give_the_trace_that_every_instruction_gives(program, args, options):
    blocks = trace_of(str(ROOT / program), args, every_instruction=False, **options)
    reference = trace_of(str(ROOT / program), args, every_instruction=True, **options)
    assert blocks[2] == reference[2] > 0
    assert blocks[1] == reference[1]
    assert blocks[0] == reference[0]


def test_rdtsc_rdrand_cpuid_and_a_faulting_division_count_as_before(answers):
    blocks = trace_of(answers, [], every_instruction=False, quantum=211)
    reference = trace_of(answers, [], every_instruction=True, quantum=211)
    assert blocks == reference
    assert any(event["type"] == "proc" and event.get("signal") == 8 for event in blocks[0])     # SIGFPE


def test_a_table_forgotten_at_every_turn_still_counts_exactly(answers):
    """Every block's count is then learnt again: its translation is dropped and Unicorn says it anew."""
    for program, args, options in [(answers, [], {"quantum": 211}),
                                   (str(ROOT / "build/threads"), [], {"cpus": 2, "interleave": 2003})]:
        forgetful = trace_of(program, args, every_instruction=False, forgetful=True, **options)
        reference = trace_of(program, args, every_instruction=True, **options)
        assert forgetful == reference


def test_the_clock_counts_blocks_not_instructions():
    """Whole blocks, not a hook per instruction: the touch loop stops at a block's entry only at quantum ends."""
    kernel = boot(16 << 20, root=str(ROOT), stdout=io.BytesIO(), stderr=io.BytesIO(), quantum=100_000)
    kernel.spawn(kernel.fs.open_host(str(ROOT / "build/touch")), ["touch", "2000"], [])
    kernel.run()
    clock = kernel.machine.clock
    assert kernel.machine.retired > 8000
    assert clock.entry_stops <= kernel.machine.retired // 100_000 + 40


def test_under_pressure_on_two_cpus_the_counts_agree_and_the_run_repeats():
    """The one place the two ways of counting may part: a budget's last block, translated anew, fetches its code
    page through the TLB again and so sets its accessed bit, which the pageout daemon may read (docs/architecture.md,
    Unicorn facts 8).  Instructions and output agree; each way repeats itself exactly."""
    options = {"ram": 4 << 20, "swap": 16 << 20, "cpus": 2, "interleave": 4999}
    program = str(ROOT / "build/pressure")
    blocks = trace_of(program, ["1500", "20", "3"], every_instruction=False, **options)
    reference = trace_of(program, ["1500", "20", "3"], every_instruction=True, **options)
    assert blocks[1:] == reference[1:] and blocks[1].endswith(b": ok\n")
    assert trace_of(program, ["1500", "20", "3"], every_instruction=False, **options) == blocks
