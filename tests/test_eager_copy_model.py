"""Property: random scripts of processes and threads (fork, vfork, clone, wait, join, exec, exit, reads and
writes of private and shared memory, brk, mmap, mprotect, madvise) read the same bytes on vmgames as in an
eager-copy model (fork copies everything but shared pages), and every process exits with the same status.

The scripts, the interpreter program and the model are in tests/eager_copy.py.  Each run also
checks the kernel's invariants before every syscall, that every process finished and that no
frame leaked.  A property test that never reaches the interesting paths proves little, so the
VM paths the examples took are tallied and the tally is checked too.  The model itself is held to
Linux: the same programs run on the host must log what it says.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from vmgames.kernel import errno

from tests.eager_copy import (
    BSS,
    CLONE_THREAD_FLAGS,
    DATA,
    DATA_PAGES,
    HEAP,
    MAX_THREADS,
    MMAP,
    PAGE,
    REGION_PAGES,
    SHARED,
    DontNeed,
    Exec,
    Fork,
    Join,
    Proc,
    Protect,
    Read,
    Remap,
    Thread,
    Trunc,
    VFork,
    Wait,
    Write,
    count_processes,
    count_threads,
    data_pattern,
    describe,
    encode,
    executable,
    model,
    race_free,
    run_on_host,
    run_on_vmgames,
)
from tests.programs import mmap

MAX_DEPTH = 4            # generations below the root
MAX_STEPS = 30           # steps per process
MAX_THREAD_STEPS = 8     # steps per thread, and per vfork child before it execs or exits
MAX_PROCESSES = 10
MAX_SCRIPT_THREADS = 6
MAX_EXECS = 2            # per process
QUANTA = (1_000_000, 200, 50, 17)   # instructions per slice: from run-to-block to fine interleaving
RANDOM_EXAMPLES = 150    # on vmgames, about a tenth of a second each
HOST_EXAMPLES = 100      # natively on the host: a few hundredths of a second each
SA_RESTART, SA_RESTORER = 0x10000000, 0x04000000

INTERESTING = ("cow-copy", "cow-move", "protection", "shadow", "collapse", "bypass", "vfork", "thread",
               "syscall madvise", "syscall futex")

# What the examples did, summed over all of them (fault kinds, object events, deepest chain).
TALLY: Counter[str] = Counter()


# Strategies.

OFFSETS = st.one_of(st.sampled_from([0, 1, 8, 2047, 2048, 4095]), st.integers(0, PAGE - 1))
REGIONS = st.integers(0, len(REGION_PAGES) - 1)


@dataclass
class Plan:
    """What the strategies share while they draw one script."""

    processes: int = MAX_PROCESSES - 1   # how many more processes the tree may have
    threads: int = MAX_SCRIPT_THREADS    # and threads
    written: list = field(default_factory=list)    # the bytes written so far: reads go there two times in three


@st.composite
def locations(draw):
    region = draw(REGIONS)
    return region, draw(st.integers(0, REGION_PAGES[region] - 1)), draw(OFFSETS)


@st.composite
def read_locations(draw, plan: Plan):
    """Mostly a byte something wrote (a read anywhere else mostly sees zeros or the file)."""
    if plan.written and draw(st.integers(0, 2)):
        return draw(st.sampled_from(plan.written))
    return draw(locations())


@st.composite
def page_ranges(draw, region: int, plan: Plan):
    """(first, count) in `region`."""
    pages = REGION_PAGES[region]
    first = draw(st.integers(0, pages - 1))
    return first, draw(st.integers(1, pages - first))


@st.composite
def accesses(draw, plan: Plan, shared_dontneed: bool = False):
    """A read or a write (or, for a thread, MADV_DONTNEED on some of the shared region)."""
    kind = draw(st.sampled_from(["write", "read", "dontneed"] if shared_dontneed else ["write", "read"]))
    if kind == "dontneed":
        return DontNeed(SHARED, *draw(page_ranges(SHARED, plan)))
    if kind == "read":
        return Read(*draw(read_locations(plan)))
    location = draw(locations())
    plan.written.append(location)
    return Write(*location, draw(st.integers(0, 255)))


# Forks and waits often enough that chains of four objects form (a process alive while its child writes).
STEP_KINDS = (["write", "read"] * 4 + ["fork"] * 3 + ["wait"] * 3
              + ["vfork", "thread", "thread", "join", "exec", "trunc", "remap", "protect", "dontneed"])


@st.composite
def processes(draw, plan: Plan, depth: int = 0):
    """A process's steps."""
    steps = []
    forks = 0           # forks and vforks since the image started: what Wait(n) counts
    unwaited: list[int] = []
    threads = 0         # threads since the image started: what Join(n) counts
    running: list[int] = []
    execs = 0

    def join_all():
        steps.extend(Join(thread) for thread in running)
        running.clear()

    for _ in range(draw(st.integers(0, MAX_STEPS))):
        kind = draw(st.sampled_from(STEP_KINDS))
        if kind in ("write", "read"):
            steps.append(draw(accesses(plan)))
        elif kind in ("fork", "vfork") and depth < MAX_DEPTH and plan.processes > 0:
            plan.processes -= 1
            if kind == "fork":
                steps.append(Fork(draw(processes(plan, depth + 1))))
            else:
                steps.append(VFork(draw(vfork_children(plan, depth + 1))))
            unwaited.append(forks)
            forks += 1
        elif kind == "thread" and threads < MAX_THREADS and plan.threads > 0:
            plan.threads -= 1
            steps.append(Thread(Proc(tuple(draw(st.lists(accesses(plan, shared_dontneed=True),
                                                          max_size=MAX_THREAD_STEPS))))))
            running.append(threads)
            threads += 1
        elif kind == "join" and running:
            which = draw(st.sampled_from(running))
            running.remove(which)
            steps.append(Join(which))
        elif kind == "wait" and unwaited:
            which = draw(st.sampled_from(unwaited))
            unwaited.remove(which)
            steps.append(Wait(which))
        elif kind == "exec" and execs < MAX_EXECS:
            join_all()
            execs += 1
            forks, unwaited, threads = 0, [], 0
            steps.append(Exec())
        elif kind == "dontneed":
            region = draw(REGIONS)
            if region != SHARED:
                join_all()      # dropping private pages under a running thread's feet would race
            steps.append(DontNeed(region, *draw(page_ranges(region, plan))))
        elif kind == "trunc":
            join_all()
            steps.append(Trunc(draw(st.integers(0, REGION_PAGES[HEAP]))))
        elif kind in ("remap", "protect"):
            join_all()
            region = draw(REGIONS)
            steps.append((Remap if kind == "remap" else Protect)(region, *draw(page_ranges(region, plan))))
    join_all()
    return Proc(tuple(steps), draw(st.integers(0, 255)))


@st.composite
def vfork_children(draw, plan: Plan, depth: int):
    """Reads and writes in the parent's memory, then the exit, or an exec and a process's steps."""
    shared = tuple(draw(st.lists(accesses(plan), max_size=MAX_THREAD_STEPS)))
    if draw(st.booleans()):
        return Proc(shared, draw(st.integers(0, 255)))
    rest = draw(processes(plan, depth))
    return Proc((*shared, Exec(), *rest.steps), rest.code)


@st.composite
def scripts(draw):
    """A random script, without the steps whose outcome would depend on the schedule."""
    return race_free(draw(processes(Plan())))


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

# A shared mapping made before the forks: children see each other's writes once ordered by a wait.
SHARED_ACROSS_FORKS = Proc((
    Write(SHARED, 0, 0, 1), Write(BSS, 0, 0, 1),
    Fork(Proc((Read(SHARED, 0, 0), Write(SHARED, 0, 0, 2), Write(SHARED, 2, 4095, 3), Write(BSS, 0, 0, 9),
               Fork(Proc((Read(SHARED, 0, 0), Write(SHARED, 1, 7, 4)), 5)), Wait(0), Read(SHARED, 1, 7)), 6)),
    Wait(0), Read(SHARED, 0, 0), Read(SHARED, 2, 4095), Read(SHARED, 1, 7), Read(BSS, 0, 0),
    Fork(Proc((Read(SHARED, 0, 0), Write(SHARED, 0, 0, 7)), 8)), Wait(1), Read(SHARED, 0, 0)), 0)

# exec gives the child a shared region of its own; fresh shared pages mapped over some after a fork are
# shared with the later children only; mprotect and MADV_DONTNEED keep what shared pages hold.
SHARED_EXEC_AND_REMAP = Proc((
    Write(SHARED, 0, 0, 1), Write(SHARED, 1, 0, 2),
    Fork(Proc((Exec(), Read(SHARED, 0, 0), Write(SHARED, 0, 0, 3),
               Fork(Proc((Read(SHARED, 0, 0), Write(SHARED, 0, 1, 4)), 5)), Wait(0), Read(SHARED, 0, 1)), 6)),
    Fork(Proc((Read(SHARED, 1, 0), Write(SHARED, 1, 0, 7)), 8)),
    Remap(SHARED, 1, 1), Write(SHARED, 1, 0, 9), Write(SHARED, 0, 0, 10),
    Fork(Proc((Read(SHARED, 1, 0), Write(SHARED, 1, 0, 11), Protect(SHARED, 0, 2), DontNeed(SHARED, 0, 3),
               Read(SHARED, 1, 0), Read(SHARED, 0, 0)), 12)),
    Wait(0), Wait(1), Wait(2), Read(SHARED, 0, 0), Read(SHARED, 1, 0)), 0)

# A vfork child writes the parent's memory (pages copy-on-write with an earlier child: the copies are the
# parent's), the parent sees it; another vfork child execs and goes on as a process of its own.
VFORK_IN_THE_PARENTS_MEMORY = Proc((
    Write(BSS, 0, 0, 1), Write(HEAP, 0, 0, 2), Write(DATA, 0, 0, 3), Write(MMAP, 0, 0, 4),
    Fork(Proc((Read(BSS, 0, 0), Read(DATA, 0, 0), Read(DATA, 2, 100)), 9)),
    VFork(Proc((Read(BSS, 0, 0), Write(BSS, 0, 0, 5), Write(HEAP, 0, 0, 6), Write(DATA, 0, 0, 7),
                Write(MMAP, 0, 0, 8), Write(SHARED, 0, 0, 9), Write(DATA, 2, 100, 10)), 11)),
    Read(BSS, 0, 0), Read(HEAP, 0, 0), Read(DATA, 0, 0), Read(MMAP, 0, 0), Read(SHARED, 0, 0), Read(DATA, 2, 100),
    Wait(0), Wait(1),
    VFork(Proc((Write(BSS, 1, 0, 12), Exec(), Read(BSS, 1, 0), Write(BSS, 1, 0, 13),
                Fork(Proc((Read(BSS, 1, 0),), 14)), Wait(0)), 15)),
    Read(BSS, 1, 0), Wait(2)), 0)

# Threads write pages copy-on-write with a child, and the shared region; the process forks while they run
# (the child reads only what no thread writes), and sees their writes once it has joined them.
THREADS = Proc((
    Write(BSS, 0, 0, 1), Write(BSS, 0, 8, 2), Write(HEAP, 1, 0, 3),
    Fork(Proc((Read(BSS, 0, 0), Read(BSS, 0, 8)), 4)),
    Thread(Proc((Read(BSS, 0, 0), Write(BSS, 0, 0, 5), Write(SHARED, 0, 0, 6), Write(HEAP, 1, 0, 7)))),
    Thread(Proc((Write(BSS, 0, 8, 8), Write(MMAP, 2, 4095, 9), DontNeed(SHARED, 0, 1)))),
    Read(DATA, 0, 0),
    Fork(Proc((Read(BSS, 1, 0), Read(MMAP, 0, 0), Read(HEAP, 0, 0)), 10)),
    Join(1), Join(0),
    Read(BSS, 0, 0), Read(BSS, 0, 8), Read(SHARED, 0, 0), Read(HEAP, 1, 0), Read(MMAP, 2, 4095), Wait(0), Wait(1),
    Thread(Proc((Write(BSS, 0, 0, 11),))), Join(2), Exec(), Read(BSS, 0, 0)), 0)

# MADV_DONTNEED: anonymous pages read zero again, the data's file pages the file's bytes (pages a child
# still reaches start over in the parent alone), shared pages keep theirs.
DONT_NEED = Proc((
    Write(BSS, 0, 0, 1), Write(MMAP, 1, 5, 2), Write(HEAP, 0, 0, 3), Write(DATA, 0, 0, 4), Write(DATA, 1, 7, 5),
    Write(SHARED, 0, 0, 6),
    Fork(Proc((DontNeed(BSS, 0, 1), Read(BSS, 0, 0), DontNeed(DATA, 0, 2), Read(DATA, 0, 0), Read(DATA, 1, 7),
               Read(MMAP, 1, 5)), 7)),
    DontNeed(MMAP, 0, 3), Read(MMAP, 1, 5), DontNeed(SHARED, 0, 3), Read(SHARED, 0, 0),
    Wait(0), Read(BSS, 0, 0), Read(DATA, 0, 0), DontNeed(BSS, 0, 4), Read(BSS, 0, 0),
    DontNeed(HEAP, 0, 3), Read(HEAP, 0, 0), Write(HEAP, 0, 0, 8), Read(HEAP, 0, 0),
    Remap(DATA, 1, 1), Write(DATA, 1, 7, 9), DontNeed(DATA, 1, 1), Read(DATA, 1, 7)), 0)

# Each with what it is there to make the kernel do.
EXAMPLES = {
    "parent-then-child": (PARENT_THEN_CHILD, {"cow-copy", "collapse"}),
    "child-exits-first": (CHILD_EXITS_FIRST, {"cow-move", "protection"}),
    "collapse-then-grandchildren": (COLLAPSE_THEN_GRANDCHILDREN, {"collapse", "bypass", "chain depth 4"}),
    "exec-in-child": (EXEC_IN_CHILD, {"exec"}),
    "truncate-shared-heap": (TRUNCATE_SHARED_HEAP, {"cow-copy"}),
    "bypass": (BYPASS, {"bypass"}),
    "protect-and-remap": (PROTECT_AND_REMAP, {"protection"}),
    "shared-across-forks": (SHARED_ACROSS_FORKS, {"zero-fill", "resident"}),
    "shared-exec-and-remap": (SHARED_EXEC_AND_REMAP, {"exec", "syscall madvise"}),
    "vfork-in-the-parents-memory": (VFORK_IN_THE_PARENTS_MEMORY, {"vfork", "cow-copy", "exec"}),
    "threads": (THREADS, {"thread", "thread-exit", "cow-copy"}),
    "dont-need": (DONT_NEED, {"syscall madvise", "cow-copy"}),
}

# MADV_DONTNEED on the data region's last page, where the file's data ends: Linux maps the file there and exec
# zeroes the page's tail by writing it, a private copy; dropped, the page reads the file's bytes again.
DONT_NEED_PARTIAL_DATA_PAGE = Proc((Write(DATA, 2, 0, 1), DontNeed(DATA, 2, 1), Read(DATA, 2, 0)), 0)


# The check.

def check_script(script: Proc, quantum: int, ram: int = 16 << 20, swap: int = 0) -> Counter[str]:
    """Run `script` on vmgames (with `ram` and `swap`) and in the model, compare; returns what the kernel did
    (and tallies it)."""
    code = encode(script)
    program = executable(code)
    expected, expected_status = model(code, program)
    with tempfile.TemporaryDirectory() as directory:
        outcome = run_on_vmgames(program, Path(directory), quantum=quantum, ram=ram, swap=swap)
    recorder = outcome.kernel.recorder
    context = f"quantum {quantum}, script:\n{describe(script)}"
    assert outcome.stderr == b"", f"{outcome.stderr.decode(errors='replace')}\n{context}"
    assert recorder.count("proc", "signal") == 0, context
    assert recorder.count("proc", "exit") == count_processes(script), context
    assert recorder.count("proc", "thread") == recorder.count("proc", "thread-exit") == count_threads(script), context
    for ident in sorted(set(expected) | set(outcome.logs)):
        assert outcome.logs.get(ident) == expected.get(ident), \
            f"task {ident}: vmgames logged {outcome.logs.get(ident)}, the model {expected.get(ident)}; {context}"
    assert outcome.status == expected_status, context

    did = Counter(recorder.by_kind("fault"))
    did.update(recorder.by_kind("object"))
    did.update(recorder.by_kind("proc"))
    did.update({f"swap {kind}": count for kind, count in recorder.by_kind("swap").items()})
    did.update({f"syscall {name}": count for name, count in recorder.by_kind("syscall").items()})
    TALLY.update(did)
    did[f"chain depth {outcome.max_depth}"] = 1
    TALLY["max chain depth"] = max(TALLY["max chain depth"], outcome.max_depth)
    TALLY["examples"] += 1
    return did


def check_on_host(script: Proc) -> None:
    """The model against Linux: the same program, run natively, logs what the model says."""
    code = encode(script)
    program = executable(code)
    expected, expected_status = model(code, program)
    with tempfile.TemporaryDirectory() as directory:
        logs, status, stderr = run_on_host(program, Path(directory))
    assert (logs, status, stderr) == (expected, expected_status, b""), f"on Linux; script:\n{describe(script)}"


@pytest.mark.parametrize("quantum", QUANTA)
@pytest.mark.parametrize("name", EXAMPLES)
def test_hand_written_scripts_agree_with_the_model(name, quantum):
    script, expected = EXAMPLES[name]
    did = check_script(script, quantum)
    assert {kind for kind in expected if did[kind]} == expected, dict(did)


@pytest.mark.parametrize("name", EXAMPLES)
def test_hand_written_scripts_agree_with_linux(name):
    check_on_host(EXAMPLES[name][0])


def test_hand_written_scripts_are_race_free():
    for script, _ in EXAMPLES.values():
        assert race_free(script) == script, describe(script)


def test_dont_need_on_the_partial_data_page_reads_the_file_again():
    code = encode(DONT_NEED_PARTIAL_DATA_PAGE)
    assert model(code, executable(code)) == ({0: [("X", bytes([data_pattern()[(DATA_PAGES - 1) * PAGE], 0]))]}, 0)
    check_on_host(DONT_NEED_PARTIAL_DATA_PAGE)
    check_script(DONT_NEED_PARTIAL_DATA_PAGE, QUANTA[0])


def test_races_are_found_and_dropped():
    """A read of what a concurrent task writes, in either order, and a fork's copy of a byte a thread writes."""
    script = Proc((
        Fork(Proc((Write(SHARED, 0, 0, 1),), 0)),
        Read(SHARED, 0, 0), Write(SHARED, 0, 1, 2),
        Thread(Proc((Write(BSS, 0, 0, 3), Read(BSS, 0, 1)))),
        Write(BSS, 0, 1, 4),
        Fork(Proc((Read(BSS, 0, 0), Read(BSS, 0, 2)), 0)),
        Join(0), Read(BSS, 0, 0), Wait(0), Read(SHARED, 0, 0), Wait(1)), 0)
    assert race_free(script) == Proc((
        Fork(Proc((Write(SHARED, 0, 0, 1),), 0)),
        Write(SHARED, 0, 1, 2),
        Thread(Proc((Write(BSS, 0, 0, 3), Read(BSS, 0, 1)))),
        Fork(Proc((Read(BSS, 0, 2),), 0)),
        Join(0), Read(BSS, 0, 0), Wait(0), Read(SHARED, 0, 0), Wait(1)), 0)


@settings(max_examples=RANDOM_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=scripts(), quantum=st.sampled_from(QUANTA))
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


@settings(max_examples=HOST_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=scripts())
def test_random_scripts_run_on_linux_as_the_model_says(script):
    check_on_host(script)


# What the interpreter's threads and vfork children rely on, against Linux.

def host_status(build, source: str) -> int:
    return subprocess.run([build(source, "host")], timeout=60).returncode


# A thread's exit clears its CLONE_CHILD_CLEARTID word and wakes the futex there with a shared wake (Linux's
# mm_release), which does not wake a FUTEX_WAIT_PRIVATE sleeper: the keys differ (FUT_OFF_MMSHARED).  That is
# why glibc's pthread_join, and Join here, wait with FUTEX_WAIT.  The private wait times out: ETIMEDOUT.
PRIVATE_WAIT_FOR_A_THREADS_EXIT = f"""
.text
_start:
{mmap(PAGE, 3)}
    lea rsi, [rax + {PAGE}]
    mov edi, {CLONE_THREAD_FLAGS:#x}
    lea rdx, [rip + tid]
    mov r10, rdx
    xor r8d, r8d
    mov eax, 56
    syscall
    test rax, rax
    jz thread
    lea rdi, [rip + tid]
    mov edx, eax                    # the tid, which CLONE_PARENT_SETTID wrote there
    mov esi, 128                    # FUTEX_WAIT_PRIVATE
    lea r10, [rip + timeout]
    mov eax, 202
    syscall
    neg rax
    mov rdi, rax
    mov eax, 231
    syscall
thread:
    lea rdi, [rip + pause]
    xor esi, esi
    mov eax, 35                     # nanosleep: the process is asleep on the futex when the thread exits
    syscall
    xor edi, edi
    mov eax, 60
    syscall
.data
timeout: .quad 0, 200000000
pause: .quad 0, 20000000
.bss
tid: .zero 8
"""


def test_a_threads_exit_does_not_wake_a_private_futex_wait(build, run):
    assert host_status(build, PRIVATE_WAIT_FOR_A_THREADS_EXIT) == errno.ETIMEDOUT
    assert run(PRIVATE_WAIT_FOR_A_THREADS_EXIT).status == errno.ETIMEDOUT


def vfork_signalled_by_its_child(flags: int) -> str:
    """vfork, with a handler for SIGUSR1 (adding 10 to `caught`) installed with `flags`; the child sends SIGUSR1
    to its parent and exits.  The parent exits with 1 if vfork gave the child's pid, else with -vfork's result,
    plus `caught`."""
    return f"""
.text
_start:
    lea rsi, [rip + action]
    lea rax, [rip + handler]
    mov [rsi], rax
    mov qword ptr [rsi + 8], {flags:#x}
    lea rax, [rip + restorer]
    mov [rsi + 16], rax
    mov edi, 10                     # SIGUSR1
    xor edx, edx
    mov r10d, 8
    mov eax, 13                     # rt_sigaction
    syscall
    mov eax, 58                     # vfork
    syscall
    test rax, rax
    jz child
    mov rdi, 1
    jg done
    neg rax
    mov rdi, rax
done:
    add rdi, [rip + caught]
    mov eax, 231
    syscall
child:
    mov eax, 110                    # getppid
    syscall
    mov rdi, rax
    mov esi, 10
    mov eax, 62                     # kill(getppid(), SIGUSR1)
    syscall
    xor edi, edi
    mov eax, 60
    syscall
handler:
    add qword ptr [rip + caught], 10
    ret
restorer:
    mov eax, 15                     # rt_sigreturn
    syscall
.bss
action: .zero 32
caught: .zero 8
"""


# A vfork parent sleeps killable (Linux's wait_for_vfork_done): a caught signal waits until the child has exited
# or exec'd, then vfork returns the child's pid and the handler runs, once, with or without SA_RESTART.
@pytest.mark.parametrize("flags", [SA_RESTORER, SA_RESTORER | SA_RESTART], ids=["no-restart", "restart"])
def test_a_caught_signal_does_not_end_vfork_early(build, run, flags):
    source = vfork_signalled_by_its_child(flags)
    assert host_status(build, source) == 11
    result = run(source)
    assert (result.status, result.recorder.count("proc", "vfork")) == (11, 1)


# Under memory pressure: RAM of 24 or 32 frames (the interpreter, its tables and the scripts' pages do not fit),
# and swap.  The pageout daemon unmaps, launders and reuses pages under every script; what each task reads must
# not change.
PRESSURE_RAM = (96 << 10, 128 << 10)
PRESSURE_SWAP = 4 << 20
PRESSURE_EXAMPLES = 40


@pytest.mark.parametrize("ram", PRESSURE_RAM)
@pytest.mark.parametrize("name", EXAMPLES)
def test_hand_written_scripts_agree_with_the_model_in_tiny_ram_with_swap(name, ram):
    # The paths differ from those in plenty of RAM (a page the daemon took comes back by a swap-in, not by the
    # protection fault the script aims at); what the tasks read may not.
    did = check_script(EXAMPLES[name][0], QUANTA[1], ram=ram, swap=PRESSURE_SWAP)
    assert did["swap out"] > 0 or ram > PRESSURE_RAM[0], dict(did)


@settings(max_examples=PRESSURE_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=scripts(), quantum=st.sampled_from(QUANTA))
def random_scripts_agree_with_the_model_under_pressure(script, quantum):
    check_script(script, quantum, ram=PRESSURE_RAM[0], swap=PRESSURE_SWAP)


def test_random_scripts_agree_with_the_model_in_tiny_ram_with_swap():
    TALLY.clear()
    random_scripts_agree_with_the_model_under_pressure()
    # Pages went out to swap and came back in, across forks and collapses.
    assert TALLY["swap out"] > 0 and TALLY["swap in"] > 0 and TALLY["swap-in"] > 0, dict(TALLY)
    assert TALLY["collapse"] > 0 and TALLY["cow-copy"] > 0, dict(TALLY)
