"""Translated code is never stale: whatever writes a frame, the next fetch from it runs what it now holds.

Unicorn notices the program's own stores into a page it translated code
from, but not the kernel's writes into RAM behind its back.  Each test runs
code from a page, has the kernel put other code there (or in the frame
behind it), and runs the page again: the exit status says which code ran.
"""

from tests.programs import EXIT_WITH_NEGATED_RAX, EXIT_WITH_RDI, FORK, WAIT4_RDI_STATUS, mmap

# mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) -> rbx
MAP_RWX_PAGE = mmap(4096, 7) + "    mov rbx, rax\n"

# Store `mov eax, 1; ret` into the page at rbx and call it: r12 = 1.
RUN_STORED_CODE = """
    mov dword ptr [rbx], 0x000001b8
    mov word ptr [rbx + 4], 0xc300
    call rbx
    mov r12d, eax
"""

# pipe(fds); write(fds[1], code2, 6): the pipe holds `mov eax, 2; ret`.
PIPE_HOLDING_CODE_2 = """
    lea rdi, [rip + fds]
    mov eax, 22
    syscall
    mov edi, [rip + fds + 4]
    lea rsi, [rip + code2]
    mov edx, 6
    mov eax, 1
    syscall
"""

# read(fds[0], rbx, 6): the kernel's copyout puts code 2 into the page at rbx.
READ_CODE_2_INTO_THE_PAGE = """
    mov edi, [rip + fds]
    mov rsi, rbx
    mov edx, 6
    xor eax, eax
    syscall
"""

# exit(10 * r12 + the value the page's code returns now)
CALL_AND_EXIT = f"""
    call rbx
    imul edi, r12d, 10
    add edi, eax
{EXIT_WITH_RDI}"""

DATA = """
.data
code2: .byte 0xb8, 2, 0, 0, 0, 0xc3
.bss
fds: .zero 8
"""


def test_code_read_into_a_page_that_already_ran_is_the_code_that_runs(run):
    result = run(".text\n_start:\n" + MAP_RWX_PAGE + RUN_STORED_CODE + PIPE_HOLDING_CODE_2
                 + READ_CODE_2_INTO_THE_PAGE + CALL_AND_EXIT + DATA)
    assert result.status == 12
    assert result.kernel.machine.translation_drops >= 1


def test_a_frame_that_ran_code_and_is_reused_runs_its_new_code(run):
    """munmap frees the frame; a new mapping zero-fills it and read() puts code 2 in."""
    result = run(".text\n_start:\n" + MAP_RWX_PAGE + RUN_STORED_CODE + """
    mov rdi, rbx
    mov esi, 4096
    mov eax, 11
    syscall
""" + MAP_RWX_PAGE + PIPE_HOLDING_CODE_2 + READ_CODE_2_INTO_THE_PAGE + CALL_AND_EXIT + DATA)
    assert result.status == 12


def test_a_copy_on_write_copy_into_a_code_page_runs_the_copy(run):
    """The child writes code 2 into a page it shares with its parent: the copy it gets runs code 2,
    the parent's page still runs code 1."""
    result = run(f"""
.text
_start:
{MAP_RWX_PAGE}{RUN_STORED_CODE}{PIPE_HOLDING_CODE_2}{FORK}
    test eax, eax
    jnz parent
{READ_CODE_2_INTO_THE_PAGE}{CALL_AND_EXIT}
parent:
    mov edi, eax
{WAIT4_RDI_STATUS}
    call rbx
    movzx edi, byte ptr [rip + status + 1]
    imul eax, eax, 100
    add edi, eax
{EXIT_WITH_RDI}{DATA}status: .zero 4
""")
    # The child exits 12; the parent adds 100 for its own code 1: 112.
    assert result.status == 112
    assert result.faults()["cow-copy"] + result.faults()["cow-move"] >= 1


def test_a_write_refused_halfway_leaves_no_stale_code(run):
    """EXIT_WITH_NEGATED_RAX after a read into a page with no write right: EFAULT, and the code is unchanged."""
    result = run(".text\n_start:\n" + MAP_RWX_PAGE + RUN_STORED_CODE + """
    mov rdi, rbx
    mov esi, 4096
    mov edx, 5
    mov eax, 10
    syscall
""" + PIPE_HOLDING_CODE_2 + READ_CODE_2_INTO_THE_PAGE + """
    cmp rax, -14
    jne wrong
""" + CALL_AND_EXIT + "wrong:\n" + EXIT_WITH_NEGATED_RAX + DATA)
    assert result.status == 11
