"""Scripts of fork/write/read/wait/exec/exit steps, run on vmgames and on a naive eager-copy model.

the quality bars of the design notes: memory semantics are checked against a naive
reference in which fork copies everything; any program's observable output
must be identical under both, only the counts differ.

A *script* is a tree of processes (`Proc`), each a list of steps over four
memory regions:

  region 0  bss     BSS_PAGES pages of .bss, zero
  region 1  data    DATA_PAGES pages: .data initialised from the file (DATA_FILE_BYTES of
                    `data_pattern`), then zeros; its last page is the partial page exec copies
  region 2  heap    HEAP_PAGES pages from brk
  region 3  mmap    MMAP_PAGES pages of an anonymous private mmap

Steps: `Write(region, page, offset, value)`, `Read(region, page, offset)` (the
byte read is appended to the process's log), `Fork(child)` (the child runs its
own steps, the parent goes on), `Wait(n)` (wait4 for the n-th child forked
since the image started; logs the two low bytes of the wait status),
`Exec()` (execve of the same program: a fresh image that goes on with the
next step), `Trunc(pages)` (brk the heap down to `pages` pages and back up:
the pages above come back zero), `Remap(region, first, count)` (mmap MAP_FIXED
fresh anonymous pages over some of a region's: they read zero),
`Protect(region, first, count)` (mprotect read-only, then read-write again:
nothing changes but the page tables), and finally `exit(proc.code)`.

`encode` flattens a script into a byte-code table; `program_source` is one
assembly program, the same for every script, that interprets the table it
finds in .rodata.  `model` interprets the same table in Python with eager
copies.  Every process writes its log to stdout in one write() per image
(header: kind, logical id, length): 'E' before an exec, 'X' at exit, whose
last byte is the exit code.  Logs are per logical process, so how the
scheduler interleaves processes cannot change them.
"""

from __future__ import annotations

import copy
import io
import struct
from collections import defaultdict
from dataclasses import dataclass, field

from kernel.kernel import Kernel
from kernel.proc import ZOMBIE
from tests.conftest import PRELUDE, assert_no_leak, check_before_every_syscall
from tests.programs import EXIT_WITH_RDI, FORK, WAIT4_RDI_STATUS, mmap
from tools.assembler import assemble
from tools.boot import boot

PAGE = 4096
BSS, DATA, HEAP, MMAP = range(4)
REGION_NAMES = ("bss", "data", "heap", "mmap")
BSS_PAGES, DATA_PAGES, HEAP_PAGES, MMAP_PAGES = 4, 3, 3, 3
REGION_PAGES = (BSS_PAGES, DATA_PAGES, HEAP_PAGES, MMAP_PAGES)
DATA_FILE_BYTES = (DATA_PAGES - 1) * PAGE + 2048   # the data segment ends inside its last page
MAX_SLOTS = 16         # forks per image
LOG_BYTES = 2 * PAGE

OP_EXIT, OP_WRITE, OP_READ, OP_FORK, OP_WAIT, OP_EXEC, OP_TRUNC, OP_REMAP, OP_PROTECT = range(9)
INSTRUCTION = struct.Struct("<BBBBI")   # op, a, b, c, d


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
class Wait:
    fork: int    # which fork of this image (0 = the first since the image started)


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
class Proc:
    steps: tuple = ()
    code: int = 0


def describe(proc: Proc, indent: str = "") -> str:
    """The script as an indented listing, for failure messages."""
    lines = []
    for step in proc.steps:
        if isinstance(step, Fork):
            lines.append(f"{indent}fork:")
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
    return 1 + sum(count_processes(s.child) for s in proc.steps if isinstance(s, Fork))


# Byte code.

@dataclass
class Code:
    instructions: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    strings: bytearray = field(default_factory=bytearray)

    def table(self) -> bytes:
        return b"".join(INSTRUCTION.pack(*i) for i in self.instructions)


def encode(root: Proc) -> Code:
    """Flatten a script: each process's instructions are contiguous; a fork names its child's first one.

    Logical process ids are given in the order processes are laid out (the root is 0).
    """
    code = Code()
    pending = [(root, 0, None)]    # (process, id, index of the fork instruction to patch)
    next_id = 1
    while pending:
        proc, ident, fork_at = pending.pop(0)
        if fork_at is not None:
            op, a, b, c, _ = code.instructions[fork_at]
            code.instructions[fork_at] = (op, a, b, c, len(code.instructions))
        slot = 0
        for step in proc.steps:
            here = len(code.instructions)
            if isinstance(step, Write):
                _check_address(step)
                code.instructions.append((OP_WRITE, step.region, step.page, step.value, step.offset))
            elif isinstance(step, Read):
                _check_address(step)
                code.instructions.append((OP_READ, step.region, step.page, 0, step.offset))
            elif isinstance(step, Fork):
                if slot >= MAX_SLOTS:
                    raise ValueError("too many forks in one image")
                if next_id > 255:
                    raise ValueError("too many processes")
                code.instructions.append((OP_FORK, next_id, slot, 0, 0))
                pending.append((step.child, next_id, here))
                next_id += 1
                slot += 1
            elif isinstance(step, Wait):
                if not 0 <= step.fork < slot:
                    raise ValueError(f"wait for fork {step.fork}, but this image forked {slot} times")
                code.instructions.append((OP_WAIT, 0, step.fork, 0, 0))
            elif isinstance(step, Exec):
                # The new image gets the index of this instruction as argv[1] and goes on after it.
                offset = len(code.strings)
                code.strings += str(here).encode() + b"\0"
                code.instructions.append((OP_EXEC, ident, 0, 0, offset))
                slot = 0
            elif isinstance(step, Trunc):
                if not 0 <= step.pages <= HEAP_PAGES:
                    raise ValueError(f"cannot truncate the heap to {step.pages} pages")
                code.instructions.append((OP_TRUNC, 0, step.pages, 0, 0))
            elif isinstance(step, (Remap, Protect)):
                if not (0 <= step.region < 4 and 0 <= step.first and 1 <= step.count
                        and step.first + step.count <= REGION_PAGES[step.region]):
                    raise ValueError(f"{step} is outside its region")
                op = OP_REMAP if isinstance(step, Remap) else OP_PROTECT
                code.instructions.append((op, step.region, step.first, step.count, 0))
            else:
                raise TypeError(step)
        code.instructions.append((OP_EXIT, proc.code & 0xFF, 0, 0, 0))
    return code


def _check_address(step: Write | Read) -> None:
    if not (0 <= step.region < 4 and 0 <= step.page < REGION_PAGES[step.region] and 0 <= step.offset < PAGE):
        raise ValueError(f"{step} is outside its region")


# The eager-copy model.

def initial_memory() -> list[bytearray]:
    memory = [bytearray(pages * PAGE) for pages in REGION_PAGES]
    memory[DATA][:DATA_FILE_BYTES] = data_pattern()
    return memory


Logs = dict[int, list[tuple[str, bytes]]]


def model(code: Code) -> tuple[Logs, int]:
    """Run the byte code with every fork copying the whole memory: per-process logs and the root's exit code."""
    logs: Logs = defaultdict(list)
    table = code.instructions

    def run(pc: int, ident: int, memory: list[bytearray]) -> int:
        log = bytearray()
        children: dict[int, int] = {}    # slot -> the child's exit code
        while True:
            op, a, b, c, d = table[pc]
            pc += 1
            if op == OP_WRITE:
                memory[a][b * PAGE + d] = c
            elif op == OP_READ:
                log.append(memory[a][b * PAGE + d])
            elif op == OP_FORK:
                children[b] = run(d, a, copy.deepcopy(memory))
            elif op == OP_WAIT:
                log += bytes([0, children.pop(b)])     # wait status: exit code << 8
            elif op == OP_EXEC:
                logs[ident].append(("E", bytes(log)))
                log, memory, children = bytearray(), initial_memory(), {}
            elif op == OP_TRUNC:
                memory[HEAP][b * PAGE:] = bytes((HEAP_PAGES - b) * PAGE)
            elif op == OP_REMAP:
                memory[a][b * PAGE:(b + c) * PAGE] = bytes(c * PAGE)
            elif op == OP_PROTECT:
                pass
            elif op == OP_EXIT:
                log.append(a)
                logs[ident].append(("X", bytes(log)))
                return a
            else:
                raise AssertionError(f"bad op {op}")

    status = run(0, 0, initial_memory())
    return dict(logs), status


# The program: one interpreter for every script.

def program_source(code: Code) -> str:
    def rows(data: bytes, width: int = 8) -> str:
        """`data` (a multiple of 8 bytes long) as .quad lines: an eighth of the values .byte would take."""
        quads = [hex(q) for (q,) in struct.iter_unpack("<Q", data)]
        return "\n".join("    .quad " + ", ".join(quads[i:i + width]) for i in range(0, len(quads), width))

    strings = "\n".join(f'    .asciz "{s.decode()}"' for s in bytes(code.strings).split(b"\0")[:-1])

    return f"""
.text
_start:
    mov rbp, [rsp + 8]              # argv[0]: exec ourselves by the same name
    lea r13, [rip + code]
    xor r12d, r12d                  # r12: index of the next instruction
    xor r14d, r14d                  # r14: logical process id
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
    lea rbx, [rip + bases]          # rbx: the four regions' addresses
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
    xor r15d, r15d                  # r15: bytes in the log
step:
    lea rsi, [r13 + r12*8]
    inc r12
    movzx eax, byte ptr [rsi]
    cmp eax, {OP_WRITE}
    je op_write
    cmp eax, {OP_READ}
    je op_read
    cmp eax, {OP_FORK}
    je op_fork
    cmp eax, {OP_WAIT}
    je op_wait
    cmp eax, {OP_EXEC}
    je op_exec
    cmp eax, {OP_TRUNC}
    je op_trunc
    cmp eax, {OP_REMAP}
    je op_remap
    cmp eax, {OP_PROTECT}
    je op_protect
    cmp eax, {OP_EXIT}
    je op_exit
    jmp die

address:                            # rdi = regions[a] + b * 4096 + d
    movzx ecx, byte ptr [rsi + 1]
    mov rdi, [rbx + rcx*8]
    movzx ecx, byte ptr [rsi + 2]
    shl ecx, 12
    add rdi, rcx
    mov ecx, dword ptr [rsi + 4]
    add rdi, rcx
    ret

log_byte:                           # append al to the log
    lea rdx, [rip + log]
    mov byte ptr [rdx + r15 + 4], al
    inc r15
    ret

flush:                              # write the log as one record of kind al
    lea rsi, [rip + log]
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
{FORK}
    test rax, rax
    js die
    jz fork_child
    movzx ecx, byte ptr [rsi + 2]
    lea rdx, [rip + slots]
    mov [rdx + rcx*8], rax
    jmp step
fork_child:
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
    call range
    mov edx, 3                      # PROT_READ | PROT_WRITE
    mov r10d, 0x32                  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
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

op_exit:
    movzx r12d, byte ptr [rsi + 1]
    mov eax, r12d
    call log_byte
    mov al, 88                      # 'X'
    call flush
    mov edi, r12d
{EXIT_WITH_RDI}

die:                                # the interpreter lost its way: say so, and exit 222
    mov al, 68                      # 'D'
    call flush
    mov edi, 222
{EXIT_WITH_RDI}

.section .rodata
code:
{rows(code.table())}
strings:
{strings}

.data
data_area:
{rows(data_pattern())}

.bss
bss_area: .zero {BSS_PAGES * PAGE}
bases: .zero 32
slots: .zero {8 * MAX_SLOTS}
status: .zero 8
argv: .zero 24
log: .zero {LOG_BYTES}
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


def run_on_vmgames(code: Code, directory, quantum: int = 1_000_000, ram: int = 16 << 20) -> Outcome:
    """Assemble the interpreter with `code`, run it to the end, check invariants at every syscall."""
    path = directory / "script"
    path.write_bytes(assemble(PRELUDE + program_source(code), "script.s"))
    path.chmod(0o755)
    out, err = io.BytesIO(), io.BytesIO()
    kernel = boot(ram, root=str(directory), stdout=out, stderr=err, quantum=quantum)
    proc = kernel.spawn(kernel.fs.open_host(str(path)), [str(path)], [])
    check_before_every_syscall(kernel)
    depth = _watch_chain_depth(kernel)
    kernel.run()
    assert all(p.state == ZOMBIE for p in kernel.processes.values()), "a process did not finish"
    assert_no_leak(kernel)
    return Outcome(parse_stdout(out.getvalue()), proc.shell_status, kernel, out.getvalue(), err.getvalue(),
                   depth[0])


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
