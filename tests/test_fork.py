"""fork, exec, wait and kill, with FreeBSD-style shadow chains, counted exactly."""

import io

from vmgames.kernel import errno
from vmgames.tools.boot import boot

from tests.conftest import assert_no_leak, check_before_every_syscall
from tests.programs import (
    EXIT_0,
    EXIT_WITH_NEGATED_RAX,
    EXIT_WITH_RDI,
    FORK,
    FORK_AND_WRITE,
    WAIT4_RDI,
    WAIT4_RDI_STATUS,
    syscall_on_path_then_exit,
)


def test_fork_isolates_writes_and_wait_returns_the_status(run):
    result = run(FORK_AND_WRITE)
    # The child saw 1 and wrote 7 (exit 8); the parent's own write of 2 survived: 8 * 10 + 2.
    assert result.status == 82
    # The child's fetch of the text finds it in the page cache: resident, not read from the file again.
    assert result.faults() == {"file": 1, "zero-fill": 2, "resident": 2, "cow-copy": 2}
    # Both processes pushed a shadow on their first write; when the child exited, the bss
    # object had one reference left (the parent's shadow) and collapsed into it.
    assert result.recorder.by_kind("object")["shadow"] == 2
    assert result.recorder.by_kind("object")["collapse"] == 1
    # B's own page was hidden by the parent's copy: the collapse freed it as dead, and moved nothing.
    assert result.recorder.count("page", "dead") == 1
    assert result.recorder.count("page", "move") == 0
    # Faults through the bss entry walked at most the shadow and B.
    assert max(result.recorder.fault_depths) == 2
    # fork write-protects the parent's two present writable pages (bss, stack); each COW copy
    # replaces a mapped frame; CR3 is loaded for the parent, the child, and the parent again.
    assert result.recorder.by_kind("tlb") == {"invalidate-page": 4, "invalidate-all": 3}
    assert result.recorder.count("syscall", "fork") == 1 and result.recorder.count("proc", "exit") == 2


def test_a_write_after_the_child_exits_moves_the_page_instead_of_copying(run):
    result = run(f"""
.text
_start:
    mov qword ptr [rip + value], 1
{FORK}
    test rax, rax
    jz child
    mov rdi, rax
{WAIT4_RDI}
    mov qword ptr [rip + value], 5
    mov rdi, [rip + value]
{EXIT_WITH_RDI}
child:
{EXIT_0}
.bss
.align 4096
value: .zero 8
""")
    assert result.status == 5
    # The shadow pushed by the parent's write is the only user of the page's object: move it up.
    assert result.faults()["cow-move"] == 1
    assert "cow-copy" not in result.faults()
    assert result.recorder.count("page", "copy") == 0


def test_exec_of_argv0_with_new_arguments(run):
    result = run(f"""
.text
_start:
    cmp qword ptr [rsp], 2
    je second
    mov rdi, [rsp + 8]
    lea rsi, [rip + args]
    xor edx, edx
    mov eax, 59
    syscall
{EXIT_WITH_NEGATED_RAX}
second:
    mov rsi, [rsp + 16]
    movzx edi, byte ptr [rsi]
{EXIT_WITH_RDI}
.data
args: .quad name, again, 0
.section .rodata
name: .asciz "prog"
again: .asciz "again"
""")
    assert result.status == ord("a")
    assert result.recorder.count("proc", "exec") == 2
    assert result.proc.name == "prog"


def test_exec_of_a_missing_non_elf_or_non_executable_file_fails_and_the_caller_continues(run, tmp_path):
    (tmp_path / "text.txt").write_text("not a program\n" * 10)
    (tmp_path / "script.txt").write_text("not a program either\n" * 10)
    (tmp_path / "script.txt").chmod(0o755)
    (tmp_path / "directory").mkdir()
    assert run(syscall_on_path_then_exit(59, "/no/such/program")).status == errno.ENOENT
    assert run(syscall_on_path_then_exit(59, "/script.txt")).status == errno.ENOEXEC
    # As Linux: no execute bit, or a directory, is EACCES before the contents are read.
    assert run(syscall_on_path_then_exit(59, "/text.txt")).status == errno.EACCES
    assert run(syscall_on_path_then_exit(59, "/directory")).status == errno.EACCES


def test_wait4_without_children_is_echild_and_wnohang_returns_zero(run):
    result = run(f"""
.text
_start:
    mov rdi, -1
{WAIT4_RDI}
    cmp rax, -10
    jne fail
{FORK}
    test rax, rax
    jz child
    mov rdi, -1
    xor esi, esi
    mov edx, 1
    xor r10d, r10d
    mov eax, 61
    syscall
    mov rdi, rax
{EXIT_WITH_RDI}
child:
    mov eax, 24
    syscall
{EXIT_0}
fail:
    mov eax, 60
    mov edi, 99
    syscall
""")
    # The child has not exited when the parent polls.
    assert result.status == 0


def test_kill_with_sigkill_is_reported_by_wait4(run):
    result = run(f"""
.text
_start:
{FORK}
    test rax, rax
    jz spin
    mov r12, rax
    mov rdi, rax
    mov esi, 9
    mov eax, 62
    syscall
    mov rdi, r12
{WAIT4_RDI_STATUS}
    mov edi, dword ptr [rip + status]
{EXIT_WITH_RDI}
spin:
    jmp spin
.bss
status: .zero 4
""")
    assert result.status == 9      # the wait status of death by SIGKILL is the signal number
    assert result.recorder.count("proc", "signal") == 1


def test_orphans_are_adopted_and_reaped_by_init(run):
    result = run(f"""
.text
_start:
{FORK}
    test rax, rax
    jnz parent
{FORK}
    test rax, rax
    jz grandchild
    mov eax, 60
    mov edi, 1
    syscall
grandchild:
    mov ecx, 100000
wait_a_while:
    dec ecx
    jnz wait_a_while
    mov eax, 60
    mov edi, 2
    syscall
parent:
    xor ebx, ebx
reap:
    mov rdi, -1
{WAIT4_RDI_STATUS}
    test rax, rax
    js done
    mov eax, dword ptr [rip + status]
    shr eax, 8
    add ebx, eax
    jmp reap
done:
    mov edi, ebx
{EXIT_WITH_RDI}
.bss
status: .zero 4
""")
    # init reaped its child (status 1) and, after adoption, its grandchild (status 2).
    assert result.status == 3
    assert len(result.kernel.processes) == 1


def test_a_fork_bomb_hits_the_process_limit(build, tmp_path):
    bomb = build(f"""
.text
_start:
{FORK}
    test rax, rax
    jns _start
{EXIT_WITH_NEGATED_RAX}""")
    kernel = boot(16 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO(),
                    max_procs=32)
    init = kernel.spawn(kernel.fs.open_host(bomb), ["bomb"], [])
    kernel.run()
    assert init.shell_status == errno.EAGAIN
    assert kernel.recorder.count("syscall", "fork") > 31
    assert sum(1 for p in kernel.processes.values()) <= 32
    assert_no_leak(kernel)


def test_running_out_of_ram_in_fork_fails_it_cleanly(build, tmp_path):
    program = build(f"""
.text
_start:
    mov qword ptr [rip + value], 1
{FORK}
{EXIT_WITH_NEGATED_RAX}
.bss
value: .zero 8
""")
    kernel = boot(4 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO())
    # No pageout daemon to make room (it would drop the program's clean text page, and fork would succeed).
    kernel.allocator.pagedaemon = None
    init = kernel.spawn(kernel.fs.open_host(program), ["prog"], [])
    handler = kernel.machine.syscall_handler

    def fork_with_no_free_frame() -> None:
        stolen = []
        if kernel.machine.cpu.rax == 57:
            while kernel.allocator.free_count:
                stolen.append(kernel.allocator.alloc(zero=False))
        handler()
        for page in stolen:
            kernel.allocator.free(page)

    kernel.machine.syscall_handler = fork_with_no_free_frame
    check_before_every_syscall(kernel)
    kernel.run()
    assert init.shell_status == errno.ENOMEM
    assert len(kernel.processes) == 1
    assert_no_leak(kernel)


def test_exec_closes_close_on_exec_descriptors_and_keeps_the_others(run):
    # pipe2(fds, O_CLOEXEC) gives fds 3 and 4; dup(3) and dup(4) give 5 and 6 without the flag,
    # so the pipe keeps a reader and a writer across the exec.
    result = run(f"""
.text
_start:
    cmp qword ptr [rsp], 2
    je second
    lea rdi, [rip + fds]
    mov esi, 0x80000
    mov eax, 293
    syscall
    mov edi, 3
    mov eax, 32
    syscall
    mov edi, 4
    mov eax, 32
    syscall
    mov rdi, [rsp + 8]
    lea rsi, [rip + args]
    xor edx, edx
    mov eax, 59
    syscall
{EXIT_WITH_NEGATED_RAX}
second:
    mov edi, 4
    lea rsi, [rip + byte]
    mov edx, 1
    mov eax, 1
    syscall
    mov rbx, rax
    mov edi, 6
    lea rsi, [rip + byte]
    mov edx, 1
    mov eax, 1
    syscall
    neg rbx
    imul rdi, rbx, 10
    add rdi, rax
{EXIT_WITH_RDI}
.data
args: .quad name, again, 0
fds: .long 0, 0
.section .rodata
name: .asciz "prog"
again: .asciz "again"
byte: .ascii "x"
""")
    # fd 4 was closed by exec (EBADF = 9); fd 6, its dup without the flag, still writes 1 byte.
    assert result.status == 9 * 10 + 1
