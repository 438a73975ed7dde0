"""Running programs: their output, their exit status, and exact counts of what the kernel did."""

import struct

from vmgames.kernel import errno
from vmgames.tools.boot import boot

from tests.programs import EXIT_0, EXIT_WITH_NEGATED_RAX, EXIT_WITH_RDI, mmap, say, syscall_then_exit, touch

HELLO = say("Hello, world!\n")


def test_hello_prints_and_exits_zero(run):
    result = run(HELLO)
    assert result.stdout == b"Hello, world!\n"
    assert result.status == 0
    assert result.recorder.by_kind("syscall") == {"exit": 1, "write": 1}


def test_touching_n_pages_takes_exactly_n_zero_fill_faults(run):
    for pages in (1, 64):
        result = run(touch(pages))
        assert result.status == 0
        # One fault for the text page, one for the stack page exec writes argv to, one per page touched.
        assert result.faults() == {"file": 1, "zero-fill": pages + 1}
        # Each mapping is entered once and cleared once at exit.
        assert result.recorder.count("pte", "write") == 2 * (pages + 2)
        # Loading CR3 for the process is the only flush; nothing was ever unmapped while loaded.
        assert result.recorder.by_kind("tlb") == {"invalidate-all": 1}
        assert result.proc.instructions == 2 + 4 * pages + 3


def test_runs_are_deterministic(run):
    first, second = run(touch(16)), run(touch(16))
    assert first.recorder.counts == second.recorder.counts
    assert first.kernel.machine.now == second.kernel.machine.now


def test_argv_reaches_the_program(run):
    # Exit with argc, and print argv[1].
    result = run(f"""
.text
_start:
    mov rbx, [rsp]
    mov rsi, [rsp + 16]
    xor edx, edx
count:
    cmp byte ptr [rsi + rdx], 0
    je done
    inc rdx
    jmp count
done:
    mov eax, 1
    mov edi, 1
    syscall
    mov rdi, rbx
{EXIT_WITH_RDI}""", "first", "second")
    assert result.stdout == b"first"
    assert result.status == 3


def test_write_from_a_wild_pointer_returns_efault(run):
    result = run(syscall_then_exit(1, 1, 0xDEAD0000, 10))
    assert result.status == errno.EFAULT
    assert result.stdout == b""
    # The kernel's own failed fault is recorded, and the process lives on.
    assert result.faults()["fatal"] == 1
    assert result.proc.signal == 0


def test_unknown_syscall_returns_enosys_and_is_counted(run):
    result = run(syscall_then_exit(500))
    assert result.status == errno.ENOSYS
    assert result.recorder.count("syscall", "syscall_0x1f4") == 1


def test_bad_file_descriptor_is_ebadf(run):
    assert run(syscall_then_exit(1, 7, 0, 0)).status == errno.EBADF
    assert run(syscall_then_exit(3, 99)).status == errno.EBADF


def test_getpid_and_getppid(run):
    assert run(syscall_then_exit(39)).status == 256 - 1    # exits with -1 & 0xff: pid 1
    assert run(syscall_then_exit(110)).status == 0


def test_brk_grows_a_demand_zero_heap(run):
    result = run(f"""
.text
_start:
    mov eax, 12
    xor edi, edi
    syscall
    mov rbx, rax
    lea rdi, [rax + 8192]
    mov eax, 12
    syscall
    sub rax, rbx
    cmp rax, 8192
    jne fail
    mov qword ptr [rbx + 4096], 7
    mov rdi, [rbx + 4096]
    add rdi, [rbx]
{EXIT_WITH_RDI}
fail:
    mov edi, 99
{EXIT_WITH_RDI}""")
    assert result.status == 7
    assert result.faults()["zero-fill"] == 3   # stack, and two heap pages


def test_brk_below_the_heap_start_returns_the_current_break(run):
    result = run(f"""
.text
_start:
    mov eax, 12
    xor edi, edi
    syscall
    mov rbx, rax
    mov eax, 12
    mov edi, 0x1000
    syscall
    xor edi, edi
    cmp rax, rbx
    setne dil
{EXIT_WITH_RDI}""")
    assert result.status == 0


def test_anonymous_mmap_munmap_and_the_hole_after_it(run):
    result = run(f"""
.text
_start:
{mmap(8192, 3)}
    mov rbx, rax
    mov byte ptr [rbx], 4
    mov byte ptr [rbx + 4096], 5
    lea rdi, [rbx + 4096]
    mov esi, 4096
    mov eax, 11
    syscall
    mov al, [rbx]
    mov cl, [rbx + 4096]
{EXIT_0}""")
    assert result.status == 128 + 11
    address = result.proc.death.split("read of ")[1].split()[0]
    assert "killed by SIGSEGV: read of" in result.proc.death
    assert "(no mapping)" in result.proc.death
    assert result.proc.death.endswith("mov cl, byte ptr [rbx + 0x1000]")
    # Unmapping the page that was present on the loaded address space costs one invalidation.
    assert result.recorder.by_kind("tlb") == {"invalidate-all": 1, "invalidate-page": 1}
    assert int(address, 16) % 4096 == 0


def test_mprotect_read_only_then_write_is_sigsegv_with_permission_denied(run):
    result = run(f"""
.text
_start:
    lea rbx, [rip + page]
    mov byte ptr [rbx], 1
    mov rdi, rbx
    mov esi, 4096
    mov edx, 1
    mov eax, 10
    syscall
    mov al, [rbx]
    mov byte ptr [rbx], 2
{EXIT_0}
.bss
.align 4096
page: .zero 4096
""")
    assert result.status == 128 + 11
    assert "write of" in result.proc.death and "(permission denied)" in result.proc.death
    # Taking write away from a present, loaded mapping costs one PTE write and one invalidation.
    assert result.recorder.by_kind("tlb") == {"invalidate-all": 1, "invalidate-page": 1}


def test_getrusage_counts_this_process_minor_faults(run):
    result = run(touch(10).replace(EXIT_0, f"""
    mov eax, 98
    xor edi, edi
    lea rsi, [rip + usage]
    syscall
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + usage + 64]
    mov edx, 8
    syscall
{EXIT_0}""", 1).replace(".bss\n", ".bss\nusage: .zero 144\n", 1))
    (minflt,) = struct.unpack("<q", result.stdout)
    # text, stack and 10 pages; the page of `usage` faults while the kernel writes the answer into it.
    assert minflt == 12
    assert result.recorder.count("fault", pid=1) == 13


def test_arch_prctl_sets_the_fs_base(run):
    result = run(f"""
.text
_start:
    mov eax, 158
    mov edi, 0x1002
    lea rsi, [rip + tls]
    syscall
    mov rdi, qword ptr fs:[8]
{EXIT_WITH_RDI}
.data
tls: .quad 1, 42
""")
    assert result.status == 42


def test_uname_says_linux_x86_64(run):
    result = run(f"""
.text
_start:
    mov eax, 63
    lea rdi, [rip + buf]
    syscall
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + buf]
    mov edx, 390
    syscall
{EXIT_0}
.bss
buf: .zero 390
""")
    fields = [result.stdout[i * 65:(i + 1) * 65].rstrip(b"\0") for i in range(6)]
    assert fields[0] == b"Linux" and fields[4] == b"x86_64"


def test_clock_gettime_is_virtual_time(run):
    program = f"""
.text
_start:
    mov eax, 228
    mov edi, 1
    lea rsi, [rip + ts]
    syscall
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + ts]
    mov edx, 16
    syscall
{EXIT_0}
.bss
ts: .zero 16
"""
    first, second = run(program), run(program)
    seconds, nanoseconds = struct.unpack("<qq", first.stdout)
    assert first.stdout == second.stdout
    # CLOCK_MONOTONIC counts one nanosecond per instruction: 4 instructions ran before the syscall returned.
    assert (seconds, nanoseconds) == (0, 4)


def test_sched_yield_returns_zero(run):
    assert run(syscall_then_exit(24)).status == 0


def test_private_file_mapping_copies_on_first_write(run, build, tmp_path):
    (tmp_path / "data.txt").write_bytes(b"ABCDEFGH" * 512 + b"tail")
    result = run(f"""
.text
_start:
    mov eax, 2
    lea rdi, [rip + path]
    xor esi, esi
    syscall
    mov r8, rax
    xor edi, edi
    mov esi, 8192
    mov edx, 3
    mov r10d, 2
    xor r9d, r9d
    mov eax, 9
    syscall
    mov rbx, rax
    mov byte ptr [rbx + 1], 'z'
    mov eax, 1
    mov edi, 1
    lea rsi, [rbx]
    mov edx, 4
    syscall
    mov eax, 1
    mov edi, 1
    lea rsi, [rbx + 4096]
    mov edx, 4
    syscall
{EXIT_0}
.section .rodata
path: .asciz "/data.txt"
""")
    assert result.stdout == b"AzCDtail"
    faults = result.faults()
    # First write through the needs-copy entry: a shadow object, then a copy of the file's page.
    assert faults["cow-copy"] == 1
    assert result.recorder.count("object", "shadow") == 1
    assert result.recorder.count("page", "copy") == 1
    assert (tmp_path / "data.txt").read_bytes()[:2] == b"AB"


def test_opening_a_missing_file_is_enoent_and_writing_is_erofs(run):
    missing = run(f"""
.text
_start:
    mov eax, 2
    lea rdi, [rip + path]
    xor esi, esi
    syscall
{EXIT_WITH_NEGATED_RAX}
.section .rodata
path: .asciz "/no/such/file"
""")
    assert missing.status == errno.ENOENT


def test_data_segment_is_copy_on_write_from_the_file(run):
    result = run(f"""
.text
_start:
    mov rdi, [rip + value]
    add qword ptr [rip + value], 1
    add rdi, [rip + value]
{EXIT_WITH_RDI}
.data
value: .quad 20
.align 4096
more: .zero 4096
""")
    assert result.status == 41
    # The data page comes from the file; the first write pushes a shadow and copies the page into it.
    assert result.faults()["cow-copy"] == 1
    assert result.recorder.count("object", "shadow") == 1


def test_read_from_stdin_into_a_fresh_buffer(run):
    result = run("""
.text
_start:
    xor eax, eax
    xor edi, edi
    lea rsi, [rip + buf]
    mov edx, 64
    syscall
    mov rdx, rax
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + buf]
    syscall
    mov eax, 231
    mov edi, 3
    syscall
.bss
.align 4096
buf: .zero 64
""", stdin=b"typed input\n")
    assert result.stdout == b"typed input\n"
    assert result.status == 3
    # The kernel's copyout into the untouched bss page is a zero-fill fault of this process.
    assert result.faults() == {"file": 1, "zero-fill": 2}


def test_shared_anonymous_mapping_is_one_object(run):
    result = run(f"""
.text
_start:
{mmap(4096, 3, flags=0x21)}
    mov byte ptr [rax], 9
    movzx edi, byte ptr [rax]
{EXIT_WITH_RDI}""")
    assert result.status == 9
    assert result.faults()["zero-fill"] == 2


def test_two_mappings_of_a_file_share_its_object(run, tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 4096 + b"y" * 4096)
    result = run(f"""
.text
_start:
    mov eax, 2
    lea rdi, [rip + path]
    xor esi, esi
    syscall
    mov r12, rax
    mov ebx, 2
again:
{mmap(8192, 1, flags=2, fd="r12")}
    movzx ecx, byte ptr [rax + 4096]
    dec ebx
    jnz again
    mov edi, ecx
{EXIT_WITH_RDI}
.section .rodata
path: .asciz "f"
""")
    assert result.status == ord("y")
    # Each mapping faults on the page, but the file's page is read in only once: the second mapping's fault
    # finds it in the page cache (a minor fault, "resident").
    pageins_of_file = result.recorder.count("page", "pagein") - 2   # the program's own text and rodata
    assert pageins_of_file == 1
    assert result.faults()["file"] == 2 + 1
    assert result.faults()["resident"] == 1


def test_fast_mode_gives_the_same_results_without_a_clock(run):
    result = run(touch(8), deterministic=False)
    assert result.status == 0
    assert result.faults() == {"file": 1, "zero-fill": 9}
    assert result.kernel.machine.now == 0


def test_fast_mode_preempts_a_busy_process(build, tmp_path):
    import io


    # Spawned first, the spinner would print first unless it is preempted (in host time) while it spins.
    spinner = build(f"""
.text
_start:
    mov rcx, 300000000
spin:
    dec rcx
    jnz spin
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + msg]
    mov edx, 5
    syscall
{EXIT_0}
.section .rodata
msg: .ascii "spun\\n"
""", "spin")
    hello = build(HELLO, "hello")
    out = io.BytesIO()
    kernel = boot(8 << 20, deterministic=False, root=str(tmp_path), stdout=out, stderr=io.BytesIO())
    kernel.spawn(kernel.fs.open_host(spinner), ["spin"], [])
    kernel.spawn(kernel.fs.open_host(hello), ["hello"], [])
    kernel.run()
    assert out.getvalue() == b"Hello, world!\nspun\n"


MIDDLE_PAGE_OF_THREE = """
.text
_start:
    mov eax, 9
    xor edi, edi
    mov esi, 3 * 4096
    mov edx, 3
    mov r10d, 0x22
    mov r8, -1
    xor r9d, r9d
    syscall
    mov rbx, rax
    mov byte ptr [rbx + 4096], 1
    lea rdi, [rbx + 4096]
    mov esi, 4096
    mov edx, {prot}
    mov eax, {number}
    syscall
    mov byte ptr [rbx], 3
    mov byte ptr [rbx + 8192], 3
    mov byte ptr [rbx + 4096], 2
""" + EXIT_0


def test_munmap_of_the_middle_page_of_a_mapping_leaves_a_hole(run):
    result = run(MIDDLE_PAGE_OF_THREE.format(number=11, prot=0))
    assert result.status == 128 + 11 and "(no mapping)" in result.proc.death


def test_mprotect_of_the_middle_page_of_a_mapping_makes_it_read_only(run):
    result = run(MIDDLE_PAGE_OF_THREE.format(number=10, prot=1))
    assert result.status == 128 + 11 and "(permission denied)" in result.proc.death
