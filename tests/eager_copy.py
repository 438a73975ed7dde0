"""Scripts of processes, threads and their steps, run on vmgames and on a naive eager-copy model.

the quality bars of the design notes: memory semantics are checked against a naive
reference in which fork copies everything; any program's observable output
must be identical under both, only the counts differ.

A *script* is a tree of tasks (`Proc`), each a list of steps over five
memory regions:

  region 0  bss     BSS_PAGES pages of .bss, zero
  region 1  data    DATA_PAGES pages: .data initialised from the file (DATA_FILE_BYTES of
                    `data_pattern`), then zeros; its last page is the partial page exec copies
                    (on Linux a private mapping of the file's page, the tail zeroed by writing it)
  region 2  heap    HEAP_PAGES pages from brk
  region 3  mmap    MMAP_PAGES pages of an anonymous private mmap
  region 4  shared  SHARED_PAGES pages of an anonymous MAP_SHARED mmap, made before anything forks:
                    the image that mapped it and every process forked from it see the same pages

Steps: `Write(region, page, offset, value)`, `Read(region, page, offset)` (the
byte read is appended to the task's log), `Fork(child)` (the child runs its
own steps, the parent goes on), `VFork(child)` (vfork: the child runs its
reads and writes in the parent's address space while the parent sleeps, then
exits, or execs and goes on as a process of its own), `Wait(n)` (wait4 for the
n-th child forked or vforked since the image started; logs the two low bytes
of the wait status), `Thread(child)` (clone a thread, on a stack mmapped for
it, that runs its steps in the same address space and exits), `Join(n)` (wait
on the futex word the kernel clears when the n-th thread of the image exits,
then unmap its stack), `Exec()` (execve of the same program: a fresh image
that goes on with the next step), `Trunc(pages)` (brk the heap down to
`pages` pages and back up: the pages above come back zero), `Remap(region,
first, count)` (mmap MAP_FIXED fresh anonymous pages, private or shared like
the region's, over some of a region's: they read zero), `Protect(region,
first, count)` (mprotect read-only, then read-write again: nothing changes but
the page tables), `DontNeed(region, first, count)` (madvise MADV_DONTNEED:
private pages read again what they were mapped with, zeros or the file's
bytes; shared pages keep what they hold), and finally `exit(proc.code)`.

Processes run concurrently with their parents, and threads with their
process, so what a read sees can depend on the schedule; a script does not
say.  The model runs one schedule (each task runs to its end when it is
made) and finds, with vector clocks, the reads and writes that race: two
accesses to a byte, one a write, with no order between them (creating a
task, vfork's end, wait and join order tasks), or a read of a byte a fork
copied while a thread of the parent could still be writing it.  `race_free`
drops those steps until none is left: what remains reads the same under every
schedule.  A thread runs reads, writes and MADV_DONTNEED on the shared region;
its process joins its threads before it changes its mappings otherwise, execs
or exits (`encode` checks).

`encode` flattens a script into a byte-code table; `program_source` is one
assembly program, the same for every script, that interprets the table it
finds in .rodata (assembled once: `executable` writes a script's table into
it).  `model` interprets the same table in Python with eager copies.  Every
task writes its log to stdout in one write() per image (header: kind, logical
id, length): 'E' before an exec, 'X' at exit, whose last byte is the exit
code.  Logs are per logical task, so how the scheduler interleaves tasks
cannot change them.
"""

from __future__ import annotations

import functools
import io
import struct
import subprocess
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE
from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot

from tests.conftest import PRELUDE, assert_no_leak, check_before_every_syscall
from tests.programs import EXIT_WITH_RDI, WAIT4_RDI_STATUS, mmap

PAGE = 4096
BSS, DATA, HEAP, MMAP, SHARED = range(5)
REGION_NAMES = ("bss", "data", "heap", "mmap", "shared")
BSS_PAGES, DATA_PAGES, HEAP_PAGES, MMAP_PAGES, SHARED_PAGES = 4, 3, 3, 3, 3
REGION_PAGES = (BSS_PAGES, DATA_PAGES, HEAP_PAGES, MMAP_PAGES, SHARED_PAGES)
DATA_FILE_BYTES = (DATA_PAGES - 1) * PAGE + 2048   # the data segment ends inside its last page
MAX_SLOTS = 16         # forks and vforks per image
MAX_THREADS = 8        # threads per image
MAX_TASKS = 256        # logical ids are one byte
LOG_SHIFT = 9
LOG_BYTES = 1 << LOG_SHIFT    # each task's log buffer (one per logical id): a header and the bytes of one image
THREAD_STACK = PAGE
CODE_BYTES = 4096 * 8       # room for a script's instructions in the interpreter
STRINGS_BYTES = 1024        # and for its execs' arguments

# clone's flags for a thread, as glibc's pthread_create passes them (without CLONE_SETTLS: no TLS here).
CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x100000 | 0x200000
FUTEX_WAIT = 0   # not FUTEX_WAIT_PRIVATE: the kernel's wake at a thread's exit is a shared one (as glibc's join)
MADV_DONTNEED = 4

(OP_EXIT, OP_WRITE, OP_READ, OP_FORK, OP_WAIT, OP_EXEC, OP_TRUNC, OP_REMAP, OP_PROTECT, OP_VFORK, OP_THREAD,
 OP_JOIN, OP_DONTNEED) = range(13)
INSTRUCTION = struct.Struct("<BBBBI")   # op, a, b, c, d


@functools.cache
def data_pattern() -> bytes:
    """What the program's .data array holds in the file."""
    return bytes(((i * 131) ^ (i >> 7) ^ 0x5A) & 0xFF for i in range(DATA_FILE_BYTES))


# The script language.

@dataclass(frozen=True)
class Write:
    region: int
    page: int
    offset: int
    value: int


@dataclass(frozen=True)
class Read:
    region: int
    page: int
    offset: int


@dataclass(frozen=True)
class Fork:
    child: Proc


@dataclass(frozen=True)
class VFork:
    child: Proc     # reads and writes, then the exit or an Exec (after which anything)


@dataclass(frozen=True)
class Thread:
    child: Proc     # reads, writes and DontNeed(SHARED, ...); its code is only logged


@dataclass(frozen=True)
class Wait:
    fork: int    # which fork or vfork of this image (0 = the first since the image started)


@dataclass(frozen=True)
class Join:
    thread: int  # which thread of this image (0 = the first since the image started)


@dataclass(frozen=True)
class Exec:
    pass


@dataclass(frozen=True)
class Trunc:
    pages: int


@dataclass(frozen=True)
class Remap:
    region: int
    first: int
    count: int


@dataclass(frozen=True)
class Protect:
    region: int
    first: int
    count: int


@dataclass(frozen=True)
class DontNeed:
    region: int
    first: int
    count: int


@dataclass(frozen=True)
class Proc:
    steps: tuple = ()
    code: int = 0


MAKERS = (Fork, VFork, Thread)
RANGES = (Remap, Protect, DontNeed)


def describe(proc: Proc, indent: str = "") -> str:
    """The script as an indented listing, for failure messages."""
    lines = []
    for step in proc.steps:
        if isinstance(step, MAKERS):
            lines.append(f"{indent}{type(step).__name__.lower()}:")
            lines.append(describe(step.child, indent + "    "))
        elif isinstance(step, Write):
            lines.append(f"{indent}write {REGION_NAMES[step.region]}[{step.page}][{step.offset}] = {step.value}")
        elif isinstance(step, Read):
            lines.append(f"{indent}read {REGION_NAMES[step.region]}[{step.page}][{step.offset}]")
        else:
            lines.append(f"{indent}{step}")
    lines.append(f"{indent}exit {proc.code}")
    return "\n".join(lines)


def count_processes(proc: Proc) -> int:
    """The root and every process forked or vforked below it (threads are not processes)."""
    return 1 + sum(count_processes(s.child) for s in proc.steps if isinstance(s, (Fork, VFork)))


def count_threads(proc: Proc) -> int:
    return sum(isinstance(s, Thread) + count_threads(s.child) for s in proc.steps if isinstance(s, MAKERS))


# Byte code.

Origin = tuple[tuple[int, ...], int]    # (the task's path in the script: step indexes from the root, step index)


@dataclass
class Code:
    instructions: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    strings: bytearray = field(default_factory=bytearray)
    origins: list[Origin] = field(default_factory=list)    # the step each instruction comes from

    def table(self) -> bytes:
        return b"".join(INSTRUCTION.pack(*i) for i in self.instructions)


PROCESS, VFORK_CHILD, THREAD = "process", "vfork child", "thread"


def encode(root: Proc) -> Code:
    """Flatten a script: each task's instructions are contiguous; a fork, vfork or clone names its child's first.

    Logical ids are given in the order tasks are laid out (the root is 0).  ValueError if the script asks
    what the interpreter cannot do, or what would make its logs depend on the schedule.
    """
    code = Code()
    pending: deque = deque([(root, 0, None, (), PROCESS)])   # (task, id, instruction to patch, path, kind)
    next_id = 1
    while pending:
        proc, ident, made_at, path, kind = pending.popleft()
        if made_at is not None:
            op, a, b, c, _ = code.instructions[made_at]
            code.instructions[made_at] = (op, a, b, c, len(code.instructions))
        forks, threads = 0, 0
        live: set[int] = set()          # threads not joined yet
        logged = 1                      # log bytes of this image, with the exit code's
        shares = kind != PROCESS        # still in another task's address space
        for index, step in enumerate(proc.steps):
            here = len(code.instructions)
            code.origins.append((path, index))
            if kind == THREAD and not isinstance(step, (Write, Read)) \
                    and not (isinstance(step, DontNeed) and step.region == SHARED):
                raise ValueError(f"a thread's steps are reads, writes and DontNeed(SHARED), not {step}")
            if shares and kind == VFORK_CHILD and not isinstance(step, (Write, Read, Exec)):
                raise ValueError(f"a vfork child reads and writes before it execs, it cannot {step}")
            if live and not isinstance(step, (Write, Read, Fork, VFork, Wait, Thread, Join)) \
                    and not (isinstance(step, DontNeed) and step.region == SHARED):
                raise ValueError(f"{step} while threads run: join them first")
            if isinstance(step, Write):
                _check_address(step)
                code.instructions.append((OP_WRITE, step.region, step.page, step.value, step.offset))
            elif isinstance(step, Read):
                _check_address(step)
                code.instructions.append((OP_READ, step.region, step.page, 0, step.offset))
                logged += 1
            elif isinstance(step, MAKERS):
                if next_id >= MAX_TASKS:
                    raise ValueError("too many tasks")
                if isinstance(step, Thread):
                    if threads >= MAX_THREADS:
                        raise ValueError("too many threads in one image")
                    code.instructions.append((OP_THREAD, next_id, threads, 0, 0))
                    live.add(threads)
                    threads += 1
                    child_kind = THREAD
                else:
                    if forks >= MAX_SLOTS:
                        raise ValueError("too many forks in one image")
                    vfork = isinstance(step, VFork)
                    code.instructions.append((OP_VFORK if vfork else OP_FORK, next_id, forks, 0, 0))
                    forks += 1
                    child_kind = VFORK_CHILD if vfork else PROCESS
                pending.append((step.child, next_id, here, (*path, index), child_kind))
                next_id += 1
            elif isinstance(step, Wait):
                if not 0 <= step.fork < forks:
                    raise ValueError(f"wait for fork {step.fork}, but this image forked {forks} times")
                code.instructions.append((OP_WAIT, 0, step.fork, 0, 0))
                logged += 2
            elif isinstance(step, Join):
                if step.thread not in live:
                    raise ValueError(f"join thread {step.thread}, but this image has no such thread running")
                live.remove(step.thread)
                code.instructions.append((OP_JOIN, 0, step.thread, 0, 0))
            elif isinstance(step, Exec):
                # The new image gets the index of this instruction as argv[1] and goes on after it.
                _check_log(logged)
                offset = len(code.strings)
                code.strings += str(here).encode() + b"\0"
                code.instructions.append((OP_EXEC, ident, 0, 0, offset))
                forks, threads, logged, shares = 0, 0, 1, False
            elif isinstance(step, Trunc):
                if not 0 <= step.pages <= HEAP_PAGES:
                    raise ValueError(f"cannot truncate the heap to {step.pages} pages")
                code.instructions.append((OP_TRUNC, 0, step.pages, 0, 0))
            elif isinstance(step, RANGES):
                if not (0 <= step.region < len(REGION_PAGES) and 0 <= step.first and 1 <= step.count
                        and step.first + step.count <= REGION_PAGES[step.region]):
                    raise ValueError(f"{step} is outside its region")
                op = {Remap: OP_REMAP, Protect: OP_PROTECT, DontNeed: OP_DONTNEED}[type(step)]
                code.instructions.append((op, step.region, step.first, step.count, 0))
            else:
                raise TypeError(step)
        if live:
            raise ValueError(f"exit with threads {sorted(live)} not joined")
        if kind == THREAD and proc.code:
            raise ValueError("a thread exits 0: nothing waits for its code")
        _check_log(logged)
        code.origins.append((path, len(proc.steps)))
        code.instructions.append((OP_EXIT, proc.code & 0xFF, 0, 0, 0))
    return code


def _check_address(step: Write | Read) -> None:
    if not (0 <= step.region < len(REGION_PAGES) and 0 <= step.page < REGION_PAGES[step.region]
            and 0 <= step.offset < PAGE):
        raise ValueError(f"{step} is outside its region")


def _check_log(logged: int) -> None:
    if logged > LOG_BYTES - 4:
        raise ValueError(f"{logged} log bytes in one image: at most {LOG_BYTES - 4}")


# The eager-copy model.

Epoch = tuple[int, int]     # (task, the task's own clock then): one access
Clock = dict[int, int]      # a vector clock: task -> the last of its steps known to have happened before


def _happened_before(epoch: Epoch, clock: Clock) -> bool:
    task, time = epoch
    return clock.get(task, 0) >= time


def _join(clock: Clock, other: Clock) -> None:
    for task, time in other.items():
        clock[task] = max(clock.get(task, 0), time)


@dataclass(eq=False)
class Page:
    """One page of the model's memory: its bytes, and who accessed them when (to find races)."""

    data: bytearray
    shared: bool = False                # MAP_SHARED: fork shares it instead of copying it
    pristine: bytes | None = None       # what MADV_DONTNEED brings back to a private page (None: zeros)
    writes: dict[int, Epoch] = field(default_factory=dict)         # offset -> its last write
    reads: dict[int, list[Epoch]] = field(default_factory=dict)    # offset -> the reads since
    unknown: set[int] = field(default_factory=set)    # bytes a fork copied while another task could write them

    @classmethod
    def fresh(cls, shared: bool = False, pristine: bytes | None = None) -> Page:
        return cls(bytearray(pristine or bytes(PAGE)), shared, pristine)

    def fork_copy(self, clock: Clock) -> Page:
        """The child's copy at a fork by a task at `clock`: a byte last written by a task the fork is not
        ordered after may have been copied before that write or after it."""
        racing = {offset for offset, epoch in self.writes.items() if not _happened_before(epoch, clock)}
        return Page(bytearray(self.data), pristine=self.pristine, unknown=self.unknown | racing)


Memory = list[list[Page]]    # region -> its pages


def initial_memory(partial_page: bytes | None = None) -> Memory:
    """A fresh image's memory; `partial_page` is the file's page under the data region's last one."""
    memory = [[Page.fresh(shared=region == SHARED) for _ in range(pages)] for region, pages in enumerate(REGION_PAGES)]
    pattern = data_pattern()
    for index in range(DATA_PAGES - 1):
        memory[DATA][index] = Page.fresh(pristine=pattern[index * PAGE:(index + 1) * PAGE])
    memory[DATA][-1] = Page(bytearray(pattern[(DATA_PAGES - 1) * PAGE:].ljust(PAGE, b"\0")), pristine=partial_page)
    return memory


def partial_data_page(executable: bytes) -> bytes:
    """The page of the file the data region's last page maps on Linux: the end of .data, then whatever the file
    holds after it (the symbol table).  exec zeroes the rest of the page in memory, by writing it: a private
    copy, which MADV_DONTNEED drops, so that the page reads the file again."""
    phoff, = struct.unpack_from("<Q", executable, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", executable, 0x36)
    for at in range(phoff, phoff + phnum * phentsize, phentsize):
        kind, flags, offset = struct.unpack_from("<IIQ", executable, at)
        if kind == 1 and flags & 2:      # PT_LOAD, PF_W: the data segment, data_area at its start
            start = offset + (DATA_PAGES - 1) * PAGE
            return executable[start:start + PAGE].ljust(PAGE, b"\0")
    raise ValueError("no writable segment")


Logs = dict[int, list[tuple[str, bytes]]]


@dataclass(eq=False)
class Task:
    """A task the model ran: its clock at its exit, its exit code, and its clock when it let a vfork parent go."""

    clock: Clock
    code: int
    released: Clock


class Model:
    """Runs the byte code with every fork copying the whole memory (but the shared pages), each new task to its
    end before its maker goes on; the logs, the root's exit code, and the instructions that race."""

    def __init__(self, code: Code, executable: bytes | None = None) -> None:
        self.table = code.instructions
        self.partial_page = partial_data_page(executable) if executable is not None else None
        self.logs: Logs = defaultdict(list)
        self.races: set[int] = set()
        self.status = self._run(0, 0, initial_memory(self.partial_page), {}).code
        self.logs = dict(self.logs)

    def _run(self, pc: int, ident: int, memory: Memory, clock: Clock) -> Task:
        clock = dict(clock)
        clock.setdefault(ident, 0)
        log = bytearray()
        forks: dict[int, Task] = {}      # slot -> the child
        threads: dict[int, Task] = {}    # slot -> the thread
        released: Clock | None = None
        while True:
            here = pc
            op, a, b, c, d = self.table[pc]
            pc += 1
            clock[ident] += 1
            if op == OP_WRITE:
                self._write(here, ident, clock, memory[a][b], d, c)
            elif op == OP_READ:
                log.append(self._read(here, ident, clock, memory[a][b], d))
            elif op == OP_FORK:
                copy = [[page if page.shared else page.fork_copy(clock) for page in pages] for pages in memory]
                forks[b] = self._run(d, a, copy, clock)
            elif op == OP_VFORK:
                forks[b] = self._run(d, a, memory, clock)
                _join(clock, forks[b].released)
            elif op == OP_THREAD:
                threads[b] = self._run(d, a, memory, clock)
            elif op == OP_JOIN:
                _join(clock, threads.pop(b).clock)
            elif op == OP_WAIT:
                child = forks.pop(b)
                log += bytes([0, child.code])     # wait status: exit code << 8
                _join(clock, child.clock)
            elif op == OP_EXEC:
                self.logs[a].append(("E", bytes(log)))
                released = released or dict(clock)
                log, memory, forks, threads = bytearray(), initial_memory(self.partial_page), {}, {}
            elif op == OP_TRUNC:
                memory[HEAP][b:] = [Page.fresh() for _ in range(HEAP_PAGES - b)]
            elif op == OP_REMAP:
                memory[a][b:b + c] = [Page.fresh(shared=a == SHARED) for _ in range(c)]
            elif op == OP_DONTNEED:
                memory[a][b:b + c] = [page if page.shared else Page.fresh(pristine=page.pristine)
                                      for page in memory[a][b:b + c]]
            elif op == OP_PROTECT:
                pass
            elif op == OP_EXIT:
                log.append(a)
                self.logs[ident].append(("X", bytes(log)))
                return Task(dict(clock), a, released or dict(clock))
            else:
                raise AssertionError(f"bad op {op}")

    def _read(self, here: int, ident: int, clock: Clock, page: Page, offset: int) -> int:
        last = page.writes.get(offset)
        if offset in page.unknown or last is not None and not _happened_before(last, clock):
            self.races.add(here)
        page.reads.setdefault(offset, []).append((ident, clock[ident]))
        return page.data[offset]

    def _write(self, here: int, ident: int, clock: Clock, page: Page, offset: int, value: int) -> None:
        last = page.writes.get(offset)
        if last is not None and not _happened_before(last, clock) \
                or not all(_happened_before(read, clock) for read in page.reads.get(offset, ())):
            self.races.add(here)
        page.writes[offset] = (ident, clock[ident])
        page.reads[offset] = []
        page.unknown.discard(offset)
        page.data[offset] = value


def model(code: Code, executable: bytes | None = None) -> tuple[Logs, int]:
    """The per-task logs and the root's exit code of a race-free script's byte code (`executable`: the program
    it runs in, for what MADV_DONTNEED brings back to the data region's last page)."""
    run = Model(code, executable)
    if run.races:
        raise ValueError(f"the script races at steps {sorted(code.origins[i] for i in run.races)}")
    return run.logs, run.status


def race_free(script: Proc) -> Proc:
    """`script` without the reads and writes whose bytes depend on the schedule: dropping some can make others
    race (a read that followed a dropped write now follows an earlier one), so again until none does."""
    while True:
        code = encode(script)
        racing = {code.origins[i] for i in Model(code).races}
        if not racing:
            return script
        script = _without(script, (), racing)


def _without(proc: Proc, path: tuple[int, ...], steps: set[Origin]) -> Proc:
    kept = []
    for index, step in enumerate(proc.steps):
        if (path, index) in steps:
            continue
        if isinstance(step, MAKERS):
            step = type(step)(_without(step.child, (*path, index), steps))
        kept.append(step)
    return Proc(tuple(kept), proc.code)


# The program: one interpreter for every script.

def program_source() -> str:
    """The interpreter, with room in .rodata for a script's code and exec arguments (`executable` fills it)."""
    def rows(data: bytes, width: int = 8) -> str:
        """`data` (a multiple of 8 bytes long) as .quad lines: an eighth of the values .byte would take."""
        quads = [hex(q) for (q,) in struct.iter_unpack("<Q", data)]
        return "\n".join("    .quad " + ", ".join(quads[i:i + width]) for i in range(0, len(quads), width))

    dispatch = "\n".join(f"    cmp eax, {op}\n    je {label}" for op, label in (
        (OP_WRITE, "op_write"), (OP_READ, "op_read"), (OP_FORK, "op_fork"), (OP_VFORK, "op_vfork"),
        (OP_WAIT, "op_wait"), (OP_THREAD, "op_thread"), (OP_JOIN, "op_join"), (OP_EXEC, "op_exec"),
        (OP_TRUNC, "op_trunc"), (OP_REMAP, "op_remap"), (OP_PROTECT, "op_protect"), (OP_DONTNEED, "op_dontneed"),
        (OP_EXIT, "op_exit")))

    # Registers: rbx the regions' addresses, r13 the code, r12 the next instruction's index, r14 the task's
    # logical id, r15 the bytes in its log, rbp argv[0].  Everything a task keeps is in registers or in
    # memory of its own (its log is logs[id]): threads and a vfork child share the parent's memory.
    return f"""
.text
_start:
    mov rbp, [rsp + 8]              # argv[0]: exec ourselves by the same name
    lea r13, [rip + code]
    xor r12d, r12d
    xor r14d, r14d
    cmp qword ptr [rsp], 2
    jb setup
    mov rsi, [rsp + 16]             # argv[1]: the index of the exec that started this image
    xor eax, eax
parse:
    movzx ecx, byte ptr [rsi]
    test ecx, ecx
    jz parsed
    imul eax, eax, 10
    sub ecx, 48
    add eax, ecx
    inc rsi
    jmp parse
parsed:
    movzx r14d, byte ptr [r13 + rax*8 + 1]
    lea r12, [rax + 1]
setup:
    lea rbx, [rip + bases]
    lea rax, [rip + bss_area]
    mov [rbx], rax
    lea rax, [rip + data_area]
    mov [rbx + 8], rax
    xor edi, edi
    mov eax, 12
    syscall                         # brk(0)
    mov [rbx + 16], rax
    lea rdi, [rax + {HEAP_PAGES * PAGE}]
    mov eax, 12
    syscall
    cmp rax, rdi
    jne die
    # the mmap region: PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
{mmap(MMAP_PAGES * PAGE, 3)}
    test rax, rax
    js die
    mov [rbx + 24], rax
    # the shared region: PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS
{mmap(SHARED_PAGES * PAGE, 3, 0x21)}
    test rax, rax
    js die
    mov [rbx + 32], rax
    xor r15d, r15d
step:
    lea rsi, [r13 + r12*8]
    inc r12
    movzx eax, byte ptr [rsi]
{dispatch}
    jmp die

this:                               # rsi = the instruction being run (syscalls take rsi)
    lea rsi, [r13 + r12*8 - 8]
    ret

address:                            # rdi = regions[a] + b * 4096 + d
    movzx ecx, byte ptr [rsi + 1]
    mov rdi, [rbx + rcx*8]
    movzx ecx, byte ptr [rsi + 2]
    shl ecx, 12
    add rdi, rcx
    mov ecx, dword ptr [rsi + 4]
    add rdi, rcx
    ret

log_base:                           # rdx = this task's log buffer
    mov rdx, r14
    shl rdx, {LOG_SHIFT}
    lea rcx, [rip + logs]
    add rdx, rcx
    ret

log_byte:                           # append al to the log
    call log_base
    mov byte ptr [rdx + r15 + 4], al
    inc r15
    ret

flush:                              # write the log as one record of kind al
    call log_base
    mov rsi, rdx
    mov byte ptr [rsi], al
    mov byte ptr [rsi + 1], r14b
    mov word ptr [rsi + 2], r15w
    lea rdx, [r15 + 4]
    mov edi, 1
    mov eax, 1
    syscall
    cmp rax, rdx
    jne die
    xor r15d, r15d
    ret

op_write:
    call address
    movzx eax, byte ptr [rsi + 3]
    mov byte ptr [rdi], al
    jmp step

op_read:
    call address
    movzx eax, byte ptr [rdi]
    call log_byte
    jmp step

op_fork:
    mov eax, 57
    jmp new_process
op_vfork:                           # inline, not in a function: the child must not return into the parent's
    mov eax, 58                     # frames; it only writes below the sleeping parent's stack pointer
new_process:
    syscall
    test rax, rax
    js die
    jz new_task
    movzx ecx, byte ptr [rsi + 2]
    lea rdx, [rip + slots]
    mov [rdx + rcx*8], rax
    jmp step
new_task:                           # a child process or a thread: its own id, instructions and log
    call this
    movzx r14d, byte ptr [rsi + 1]
    mov r12d, dword ptr [rsi + 4]
    xor r15d, r15d
    jmp step

op_wait:
    movzx ecx, byte ptr [rsi + 2]
    lea rdx, [rip + slots]
    mov rdi, [rdx + rcx*8]
{WAIT4_RDI_STATUS}
    cmp rax, rdi
    jne die
    movzx eax, byte ptr [rip + status]
    call log_byte
    movzx eax, byte ptr [rip + status + 1]
    call log_byte
    jmp step

op_thread:                          # clone a thread on a stack of its own, its tid in tids[b]
{mmap(THREAD_STACK, 3)}
    test rax, rax
    js die
    call this
    movzx ecx, byte ptr [rsi + 2]
    lea rdx, [rip + stacks]
    mov [rdx + rcx*8], rax
    lea rdx, [rip + tids]
    lea rdx, [rdx + rcx*4]          # parent_tid: the kernel writes the tid before either task runs on
    mov r10, rdx                    # child_tid: the kernel clears it, and wakes the futex, as the thread exits
    lea rsi, [rax + {THREAD_STACK}]
    mov edi, {CLONE_THREAD_FLAGS:#x}
    xor r8d, r8d
    mov eax, 56
    syscall
    test rax, rax
    js die
    jz new_task
    jmp step

op_join:                            # wait until the kernel clears tids[b], then unmap the thread's stack
    movzx ecx, byte ptr [rsi + 2]
    lea rdi, [rip + tids]
    lea rdi, [rdi + rcx*4]
join_wait:
    mov edx, dword ptr [rdi]
    test edx, edx
    jz joined
    mov esi, {FUTEX_WAIT}
    xor r10d, r10d
    mov eax, 202
    syscall                         # returns 0 when woken, -EAGAIN if the word changed first
    test rax, rax
    jz join_wait
    cmp rax, -11
    je join_wait
    jmp die
joined:
    call this
    movzx ecx, byte ptr [rsi + 2]
    lea rdx, [rip + stacks]
    mov rdi, [rdx + rcx*8]
    mov esi, {THREAD_STACK}
    mov eax, 11
    syscall
    test rax, rax
    jnz die
    jmp step

op_exec:
    mov r12, rsi
    mov al, 69                      # 'E'
    call flush
    lea rsi, [rip + argv]
    mov [rsi], rbp
    mov ecx, dword ptr [r12 + 4]
    lea rax, [rip + strings]
    add rax, rcx
    mov [rsi + 8], rax
    mov qword ptr [rsi + 16], 0
    mov rdi, rbp
    xor edx, edx
    mov eax, 59
    syscall
    jmp die

op_trunc:
    movzx edi, byte ptr [rsi + 2]
    shl edi, 12
    add rdi, [rbx + 16]
    mov eax, 12
    syscall
    cmp rax, rdi
    jne die
    mov rdi, [rbx + 16]
    add rdi, {HEAP_PAGES * PAGE}
    mov eax, 12
    syscall
    cmp rax, rdi
    jne die
    jmp step

range:                              # rdi = regions[a] + b * 4096, rsi = c * 4096
    movzx ecx, byte ptr [rsi + 1]
    mov rdi, [rbx + rcx*8]
    movzx ecx, byte ptr [rsi + 2]
    shl ecx, 12
    add rdi, rcx
    movzx esi, byte ptr [rsi + 3]
    shl esi, 12
    ret

op_remap:
    mov r10d, 0x32                  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
    cmp byte ptr [rsi + 1], {SHARED}
    jne remap_private
    mov r10d, 0x31                  # MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED
remap_private:
    call range
    mov edx, 3                      # PROT_READ | PROT_WRITE
    mov r8, -1
    xor r9d, r9d
    mov eax, 9
    syscall
    cmp rax, rdi
    jne die
    jmp step

op_protect:
    call range
    mov edx, 1                      # PROT_READ
    mov eax, 10
    syscall
    test rax, rax
    jnz die
    mov edx, 3                      # PROT_READ | PROT_WRITE
    mov eax, 10
    syscall
    test rax, rax
    jnz die
    jmp step

op_dontneed:
    call range
    mov edx, {MADV_DONTNEED}
    mov eax, 28
    syscall
    test rax, rax
    jnz die
    jmp step

op_exit:                            # exit(2): ends this thread; the process with its last one
    movzx r12d, byte ptr [rsi + 1]
    mov eax, r12d
    call log_byte
    mov al, 88                      # 'X'
    call flush
    mov edi, r12d
{EXIT_WITH_RDI}

die:                                # the interpreter lost its way: say so, and the whole process exits 222
    mov al, 68                      # 'D'
    call flush
    mov edi, 222
    mov eax, 231
    syscall

.section .rodata                    # the script: CODE_BYTES of instructions, then STRINGS_BYTES of exec arguments
code: .zero {CODE_BYTES}
strings: .zero {STRINGS_BYTES}

.data
data_area:
{rows(data_pattern())}

.bss
bss_area: .zero {BSS_PAGES * PAGE}
bases: .zero {8 * len(REGION_PAGES)}
slots: .zero {8 * MAX_SLOTS}
stacks: .zero {8 * MAX_THREADS}
tids: .zero {4 * MAX_THREADS}
status: .zero 8
argv: .zero 24
logs: .zero {MAX_TASKS * LOG_BYTES}
"""


# Running a script on vmgames.

@dataclass
class Outcome:
    logs: Logs
    status: int
    kernel: Kernel
    stdout: bytes
    stderr: bytes
    max_depth: int    # the longest shadow chain seen at any syscall


def parse_stdout(out: bytes) -> Logs:
    logs: Logs = defaultdict(list)
    at = 0
    while at < len(out):
        if at + 4 > len(out):
            raise AssertionError(f"truncated record header at {at}: {out[at:]!r}")
        kind, ident, length = out[at], out[at + 1], int.from_bytes(out[at + 2:at + 4], "little")
        body = out[at + 4:at + 4 + length]
        if len(body) != length:
            raise AssertionError(f"truncated record at {at}")
        logs[ident].append((chr(kind), body))
        at += 4 + length
    return dict(logs)


@functools.cache
def _interpreter() -> tuple[bytes, int]:
    """The interpreter assembled once, and where its .rodata (the script's room) is in the file."""
    program = assemble(PRELUDE + program_source(), "script.s")
    phoff, = struct.unpack_from("<Q", program, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", program, 0x36)
    for at in range(phoff, phoff + phnum * phentsize, phentsize):
        kind, flags, offset = struct.unpack_from("<IIQ", program, at)
        if kind == 1 and flags == 4:     # PT_LOAD, PF_R alone: .rodata
            return program, offset
    raise AssertionError("the interpreter has no .rodata")


def executable(code: Code) -> bytes:
    """The interpreter with `code` written into its .rodata."""
    program, rodata = _interpreter()
    table, strings = code.table(), bytes(code.strings)
    if len(table) > CODE_BYTES or len(strings) > STRINGS_BYTES:
        raise ValueError(f"a script of {len(table)} bytes of code and {len(strings)} of exec arguments: too long")
    script = table.ljust(CODE_BYTES, b"\0") + strings.ljust(STRINGS_BYTES, b"\0")
    return program[:rodata] + script + program[rodata + len(script):]


def build(program: bytes, directory) -> Path:
    """`program` as an executable file in `directory`."""
    path = directory / "script"
    path.write_bytes(program)
    path.chmod(0o755)
    return path


def run_on_vmgames(program: bytes, directory, quantum: int = 1_000_000, ram: int = 16 << 20,
                   swap: int = 0) -> Outcome:
    """Run `program` (an `executable`) to the end, checking the invariants at every syscall."""
    path = build(program, directory)
    out, err = io.BytesIO(), io.BytesIO()
    kernel = boot(ram, root=str(directory), stdout=out, stderr=err, quantum=quantum, swap=swap)
    proc = kernel.spawn(kernel.fs.open_host(str(path)), [str(path)], [])
    check_before_every_syscall(kernel)
    depth = _watch_chain_depth(kernel)
    kernel.run()
    assert all(p.state == ZOMBIE for p in kernel.processes.values()), "a process did not finish"
    assert_no_leak(kernel)
    return Outcome(parse_stdout(out.getvalue()), proc.shell_status, kernel, out.getvalue(), err.getvalue(),
                   depth[0])


def run_on_host(program: bytes, directory) -> tuple[Logs, int, bytes]:
    """`program` run by the host's Linux, on its cores: the logs, the exit status and stderr."""
    done = subprocess.run([str(build(program, directory))], capture_output=True, timeout=60)
    return parse_stdout(done.stdout), done.returncode, done.stderr


def _watch_chain_depth(kernel: Kernel) -> list[int]:
    """The deepest object chain of any live process, sampled at every syscall (in a one-element list)."""
    deepest = [0]
    handler = kernel.machine.syscall_handler

    def sampled() -> None:
        for p in kernel.processes.values():
            if p.state != ZOMBIE:
                for entry in p.vmspace.map.entries:
                    deepest[0] = max(deepest[0], entry.object.depth())
        handler()

    kernel.machine.syscall_handler = sampled
    return deepest
