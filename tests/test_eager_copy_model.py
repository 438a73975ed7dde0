"""Property: random fork/write/read/wait/exec/exit scripts read the same bytes on vmgames as in an
eager-copy model (fork copies everything), and every process exits with the same status.

The scripts, the interpreter program and the model are in tests/eager_copy.py.  Each run also
checks the kernel's invariants before every syscall, that every process finished and that no
frame leaked.  A property test that never reaches the interesting paths proves little, so the
VM paths the examples took are tallied and the tally is checked too.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.eager_copy import (
    BSS,
    DATA,
    HEAP,
    MMAP,
    PAGE,
    REGION_PAGES,
    Exec,
    Fork,
    Proc,
    Protect,
    Read,
    Remap,
    Trunc,
    Wait,
    Write,
    count_processes,
    describe,
    encode,
    model,
    run_on_vmgames,
)

MAX_DEPTH = 4            # generations below the root
MAX_STEPS = 30           # steps per process
MAX_PROCESSES = 10
MAX_EXECS = 2            # per process
QUANTA = (1_000_000, 200, 50, 17)   # instructions per slice: from run-to-block to fine interleaving

INTERESTING = ("cow-copy", "cow-move", "protection", "shadow", "collapse", "bypass")

# What the examples did, summed over all of them (fault kinds, object events, deepest chain).
TALLY: Counter[str] = Counter()


# Strategies.

OFFSETS = st.one_of(st.sampled_from([0, 1, 8, 2047, 2048, 4095]), st.integers(0, PAGE - 1))


@st.composite
def locations(draw):
    region = draw(st.integers(0, 3))
    return region, draw(st.integers(0, REGION_PAGES[region] - 1)), draw(OFFSETS)


STEP_KINDS = ["write", "read"] * 4 + ["fork", "fork", "wait", "wait", "exec", "trunc", "remap", "protect"]


@st.composite
def processes(draw, depth: int = 0, budget: list[int] | None = None):
    """A process's steps; `budget` is how many more processes the whole tree may have."""
    if budget is None:
        budget = [MAX_PROCESSES - 1]
    steps = []
    forks = 0           # forks since the image started: what Wait(n) counts
    unwaited: list[int] = []
    execs = 0
    for _ in range(draw(st.integers(0, MAX_STEPS))):
        kind = draw(st.sampled_from(STEP_KINDS))
        if kind == "write":
            steps.append(Write(*draw(locations()), draw(st.integers(0, 255))))
        elif kind == "read":
            steps.append(Read(*draw(locations())))
        elif kind == "fork" and depth < MAX_DEPTH and budget[0] > 0:
            budget[0] -= 1
            steps.append(Fork(draw(processes(depth + 1, budget))))
            unwaited.append(forks)
            forks += 1
        elif kind == "wait" and unwaited:
            which = draw(st.sampled_from(unwaited))
            unwaited.remove(which)
            steps.append(Wait(which))
        elif kind == "exec" and execs < MAX_EXECS:
            execs += 1
            forks, unwaited = 0, []
            steps.append(Exec())
        elif kind == "trunc":
            steps.append(Trunc(draw(st.integers(0, REGION_PAGES[HEAP]))))
        elif kind in ("remap", "protect"):
            region = draw(st.integers(0, 3))
            first = draw(st.integers(0, REGION_PAGES[region] - 1))
            count = draw(st.integers(1, REGION_PAGES[region] - first))
            steps.append((Remap if kind == "remap" else Protect)(region, first, count))
    return Proc(tuple(steps), draw(st.integers(0, 255)))


# Hand-written scripts.

# fork, then the parent writes the shared page first, then the child (cow-copy on both sides).
PARENT_THEN_CHILD = Proc((
    Write(BSS, 0, 0, 1), Write(DATA, 1, 100, 11), Write(HEAP, 0, 5, 21), Write(MMAP, 2, 4095, 31),
    Fork(Proc((Read(BSS, 0, 0), Write(BSS, 0, 0, 3), Read(BSS, 0, 0), Read(DATA, 1, 100), Write(DATA, 1, 100, 13),
               Read(DATA, 1, 100), Read(HEAP, 0, 5), Write(HEAP, 0, 5, 23), Read(MMAP, 2, 4095),
               Write(MMAP, 2, 4095, 33), Read(MMAP, 2, 4095)), 5)),
    Write(BSS, 0, 0, 2), Write(DATA, 1, 100, 12), Write(HEAP, 0, 5, 22), Write(MMAP, 2, 4095, 32),
    Read(BSS, 0, 0), Wait(0), Read(BSS, 0, 0), Read(DATA, 1, 100), Read(HEAP, 0, 5), Read(MMAP, 2, 4095)), 0)

# The child exits before the parent writes: the parent's page moves up instead of being copied.
CHILD_EXITS_FIRST = Proc((
    Write(BSS, 1, 7, 1), Write(MMAP, 0, 7, 2), Fork(Proc((Read(BSS, 1, 7),), 4)), Wait(0),
    Write(BSS, 1, 7, 5), Write(MMAP, 0, 7, 6), Read(BSS, 1, 7), Read(MMAP, 0, 7)), 1)

# A child exits (its parent's chain collapses), then grandchildren make deeper chains.
COLLAPSE_THEN_GRANDCHILDREN = Proc((
    Write(BSS, 0, 0, 1), Write(BSS, 1, 0, 2), Write(DATA, 0, 0, 3),
    Fork(Proc((Write(BSS, 0, 0, 9),), 2)), Wait(0),
    Write(BSS, 0, 0, 4),
    Fork(Proc((
        Write(BSS, 1, 0, 5),
        Fork(Proc((Read(BSS, 0, 0), Read(BSS, 1, 0), Read(DATA, 0, 0), Write(BSS, 0, 0, 6),
                   Fork(Proc((Read(BSS, 0, 0), Read(BSS, 1, 0), Write(BSS, 1, 0, 7), Read(BSS, 1, 0)), 8)),
                   Read(BSS, 1, 0), Wait(0), Read(BSS, 0, 0)), 3)),
        Write(BSS, 0, 0, 10), Read(BSS, 1, 0), Wait(0), Read(BSS, 0, 0)), 4)),
    Read(BSS, 0, 0), Read(BSS, 1, 0), Wait(1), Read(BSS, 0, 0), Read(BSS, 1, 0)), 0)

# exec in a child: a fresh image (file data again, empty bss), while the parent keeps its memory.
EXEC_IN_CHILD = Proc((
    Write(BSS, 0, 0, 1), Write(DATA, 0, 3, 2), Write(HEAP, 1, 0, 3),
    Fork(Proc((Read(DATA, 0, 3), Exec(), Read(BSS, 0, 0), Read(DATA, 0, 3), Read(HEAP, 1, 0),
               Write(DATA, 0, 3, 4), Read(DATA, 0, 3), Fork(Proc((Read(DATA, 0, 3),), 6)), Wait(0)), 7)),
    Write(DATA, 0, 3, 5), Wait(0), Read(BSS, 0, 0), Read(DATA, 0, 3), Read(HEAP, 1, 0)), 0)

# brk shrinks a heap shared copy-on-write with a child, and grows it again.
TRUNCATE_SHARED_HEAP = Proc((
    Write(HEAP, 0, 1, 1), Write(HEAP, 2, 1, 2),
    Fork(Proc((Trunc(1), Read(HEAP, 0, 1), Read(HEAP, 2, 1), Write(HEAP, 2, 1, 3), Read(HEAP, 2, 1)), 0)),
    Trunc(2), Read(HEAP, 2, 1), Wait(0), Read(HEAP, 0, 1)), 0)

# Every page of the shared object is shadowed above it when a sibling exits: the chain is bypassed.
BYPASS = Proc((
    Write(BSS, 0, 0, 1),
    Fork(Proc((Fork(Proc((), 0)), Wait(0), Write(BSS, 0, 0, 2), Read(BSS, 0, 0)), 3)),
    Write(BSS, 0, 0, 4),
    Fork(Proc((Write(BSS, 0, 0, 5),), 6)),
    Write(BSS, 0, 0, 7), Wait(1), Read(BSS, 0, 0), Wait(0), Read(BSS, 0, 0)), 0)

# mprotect takes write rights away and gives them back (protection faults); fresh pages mapped over
# shared ones, in the parent and in the child, read zero.
PROTECT_AND_REMAP = Proc((
    Write(MMAP, 0, 0, 1), Write(BSS, 2, 0, 2), Protect(MMAP, 0, 3), Write(MMAP, 0, 0, 3),
    Fork(Proc((Remap(MMAP, 0, 1), Read(MMAP, 0, 0), Protect(BSS, 1, 2), Write(BSS, 2, 0, 4), Read(BSS, 2, 0),
               Remap(DATA, 1, 1), Read(DATA, 1, 0), Read(DATA, 2, 0)), 5)),
    Read(MMAP, 0, 0), Wait(0), Read(BSS, 2, 0), Remap(DATA, 0, 3), Read(DATA, 1, 0)), 0)

# Each with what it is there to make the kernel do.
EXAMPLES = {
    "parent-then-child": (PARENT_THEN_CHILD, {"cow-copy", "collapse"}),
    "child-exits-first": (CHILD_EXITS_FIRST, {"cow-move", "protection"}),
    "collapse-then-grandchildren": (COLLAPSE_THEN_GRANDCHILDREN, {"collapse", "bypass", "chain depth 4"}),
    "exec-in-child": (EXEC_IN_CHILD, {"exec"}),
    "truncate-shared-heap": (TRUNCATE_SHARED_HEAP, {"cow-copy"}),
    "bypass": (BYPASS, {"bypass"}),
    "protect-and-remap": (PROTECT_AND_REMAP, {"protection"}),
}


# The check.

def check_script(script: Proc, quantum: int) -> Counter[str]:
    """Run `script` on vmgames and in the model, compare; returns what the kernel did (and tallies it)."""
    code = encode(script)
    expected, expected_status = model(code)
    with tempfile.TemporaryDirectory() as directory:
        outcome = run_on_vmgames(code, Path(directory), quantum=quantum)
    recorder = outcome.kernel.recorder
    context = f"quantum {quantum}, script:\n{describe(script)}"
    assert outcome.stderr == b"", f"{outcome.stderr.decode(errors='replace')}\n{context}"
    assert recorder.count("proc", "signal") == 0, context
    assert recorder.count("proc", "exit") == count_processes(script), context
    for ident in sorted(set(expected) | set(outcome.logs)):
        assert outcome.logs.get(ident) == expected.get(ident), \
            f"process {ident}: vmgames logged {outcome.logs.get(ident)}, the model {expected.get(ident)}; {context}"
    assert outcome.status == expected_status, context

    did = Counter(recorder.by_kind("fault"))
    did.update(recorder.by_kind("object"))
    did.update(recorder.by_kind("proc"))
    TALLY.update(did)
    did[f"chain depth {outcome.max_depth}"] = 1
    TALLY["max chain depth"] = max(TALLY["max chain depth"], outcome.max_depth)
    TALLY["examples"] += 1
    return did


@pytest.mark.parametrize("quantum", QUANTA)
@pytest.mark.parametrize("name", EXAMPLES)
def test_hand_written_scripts_agree_with_the_model(name, quantum):
    script, expected = EXAMPLES[name]
    did = check_script(script, quantum)
    assert {kind for kind in expected if did[kind]} == expected, dict(did)


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=processes(), quantum=st.sampled_from(QUANTA))
def random_scripts_agree_with_the_model(script, quantum):
    did = check_script(script, quantum)
    for kind in INTERESTING:
        if did[kind]:
            event(kind)


def test_random_scripts_agree_with_the_eager_copy_model():
    TALLY.clear()
    random_scripts_agree_with_the_model()
    # The examples must have reached the interesting paths, not only zero-fill.
    for kind in INTERESTING:
        assert TALLY[kind] > 0, f"no example exercised {kind}: {dict(TALLY)}"
    assert TALLY["exec"] > 0 and TALLY["max chain depth"] >= 4, dict(TALLY)
