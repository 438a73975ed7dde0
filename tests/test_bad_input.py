"""Bad input never takes the tool or the kernel down: the offender gets an error or a signal."""

import io
import re
import struct
import subprocess

import pytest
from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.tools.boot import boot

from tests.conftest import assert_no_leak
from tests.programs import EXIT_0, EXIT_WITH_RDI, VMGAMES, mmap, say, syscall_on_path_then_exit, touch

HELLO = say("ok\n")


@pytest.mark.parametrize("source, signal, what", [
    ("ud2", 4, "invalid opcode at 0x401000: ud2"),
    ("xor ecx, ecx\n    div ecx", 8, "divide error at 0x401002: div ecx"),
    ("int3", 5, "breakpoint"),
    ("hlt", 11, "general protection at 0x401000: hlt"),
    ("cli", 11, "general protection at 0x401000: cli"),
    ("xor eax, eax\n    mov cr3, rax", 11, "general protection at 0x401002: mov cr3, rax"),
    ("mov rax, 0x500000\n    jmp rax", 11, "fetch of 0x500000 (no mapping) at 0x500000: (no code mapped there)"),
    ("lea rax, [rip]\n    mov byte ptr [rax], 0x90", 11, "write of 0x401007 (permission denied)"),
    ("mov rax, 0xffffffffffffe010\n    jmp rax", 11, "fetch of 0xffffffffffffe010 (no mapping)"),
    ("xor eax, eax\n    mov rax, [rax]", 11, "read of 0x0 (no mapping)"),
])
def test_a_fatal_trap_kills_the_process_with_the_right_signal(run, source, signal, what):
    result = run(f".text\n_start:\n    {source}\n" + EXIT_0)
    assert result.proc.signal == signal
    assert result.status == 128 + signal
    assert what in result.proc.death


def test_running_out_of_ram_kills_only_the_hog(build, tmp_path):
    hog, hello = build(touch(1024), "hog"), build(HELLO, "hello")
    out = io.BytesIO()
    kernel = boot(2 << 20, root=str(tmp_path), stdout=out, stderr=io.BytesIO())
    first = kernel.spawn(kernel.fs.open_host(hog), ["hog"], [])
    second = kernel.spawn(kernel.fs.open_host(hello), ["hello"], [])
    kernel.run()
    assert first.signal == 9 and "out of memory" in first.death
    assert second.shell_status == 0
    assert out.getvalue() == b"ok\n"
    assert_no_leak(kernel)


def _hello_elf(build) -> bytes:
    with open(build(HELLO, "good"), "rb") as f:
        return f.read()


def _set_phdr(image: bytearray, index: int, field: int, value: int) -> None:
    """Set one 8-byte field of a program header (1 offset, 2 vaddr, 4 filesz, 5 memsz)."""
    phoff = struct.unpack_from("<Q", image, 32)[0]
    struct.pack_into("<Q", image, phoff + 56 * index + 8 * field, value)


def _load_segment(image: bytes, flags: int) -> int:
    """Index of the PT_LOAD program header with exactly these p_flags."""
    phoff, = struct.unpack_from("<Q", image, 32)
    phnum, = struct.unpack_from("<H", image, 56)
    for index in range(phnum):
        p_type, p_flags = struct.unpack_from("<II", image, phoff + 56 * index)
        if p_type == 1 and p_flags == flags:
            return index
    raise AssertionError(f"no PT_LOAD with flags {flags}")


def _mutations(good: bytes):
    text, rodata = _load_segment(good, 5), _load_segment(good, 4)
    image = bytearray(good)
    image[:4] = b"\x7fBAD"
    yield "bad magic", bytes(image), "bad ELF magic"
    yield "truncated", good[:40], "too short"
    image = bytearray(good)
    struct.pack_into("<Q", image, 32, len(good) + 100)
    yield "phdrs outside", bytes(image), "program headers lie outside the file"
    image = bytearray(good)
    _set_phdr(image, text, 1, len(good) + 4096)
    _set_phdr(image, text, 2, 0x401000 + len(good) + 4096)  # keep vaddr congruent with the offset
    yield "segment outside", bytes(image), "outside"
    image = bytearray(good)
    _set_phdr(image, rodata, 2, 0x401000)       # rodata's vaddr onto text's
    _set_phdr(image, rodata, 1, 0x1000)
    yield "overlapping", bytes(image), "overlap"
    image = bytearray(good)
    _set_phdr(image, text, 5, 1 << 47)          # an absurd p_memsz
    yield "absurd size", bytes(image), "outside user space"
    image = bytearray(good)
    struct.pack_into("<Q", image, 24, 0x12345678)
    yield "wild entry", bytes(image), "entry point"


def test_hostile_executables_are_refused_with_enoexec(build, tmp_path):
    good = _hello_elf(build)
    for name, image, message in _mutations(good):
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(image)
        kernel = boot(4 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO())
        with pytest.raises(SyscallError) as raised:
            kernel.spawn(kernel.fs.open_host(str(path)), [name], [])
        assert raised.value.errno == errno.ENOEXEC, name
        assert message in kernel.exec_error, (name, kernel.exec_error)
        assert_no_leak(kernel)


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*VMGAMES, *args], capture_output=True, text=True, cwd=cwd)


def test_cli_reports_a_bad_executable_without_a_traceback(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"#!/bin/sh\necho hi\n" + b"#" * 100)
    bad.chmod(0o755)      # without an execute bit it would be refused before its contents are read
    result = _cli("run", str(bad))
    assert result.returncode == 126
    assert result.stderr.strip() == f"vmgames: {bad}: cannot execute: bad ELF magic"
    missing = _cli("run", str(tmp_path / "nothing"))
    assert missing.returncode == 127 and "No such file or directory" in missing.stderr
    directory = _cli("run", str(tmp_path))
    assert directory.returncode == 126 and "Is a directory" in directory.stderr
    for result in (missing, directory):
        assert "Traceback" not in result.stderr


def test_cli_reports_malformed_assembly_with_file_and_line(tmp_path):
    source = tmp_path / "broken.s"
    source.write_text(".intel_syntax noprefix\n.globl _start\n.text\n_start:\n    mov eax, 1\n    frobnicate rax\n")
    result = _cli("asm", str(source), "-o", str(tmp_path / "broken"))
    assert result.returncode == 1
    assert f"{source}:6:" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_status_and_death_message_for_a_killed_program(tmp_path, build):
    path = build(".text\n_start:\n    ud2\n")
    result = _cli("run", path)
    assert result.returncode == 128 + 4
    assert result.stderr.strip().startswith("vmgames: prog[1]: killed by SIGILL: invalid opcode at 0x401000: ud2")


def test_cli_without_a_program_says_which_is_missing():
    result = _cli("run")
    assert result.returncode == 2
    assert "which program?" in result.stderr and "Traceback" not in result.stderr
    result = _cli("run", "--ram", "12x", "build/hello")
    assert result.returncode == 2 and "not a size: '12x'" in result.stderr


def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(build, tmp_path, capsys):
    from vmgames.tools.cli import main

    source = tmp_path / "hello.s"
    source.write_text(".intel_syntax noprefix\n.globl _start\n.text\n_start:\n" + EXIT_WITH_RDI)
    assert main(["asm", str(source), "-o", "/proc/nope/hello"]) == 1
    assert capsys.readouterr().err == "vmgames: /proc/nope/hello: No such file or directory\n"
    assert main(["run", "--stats-json", str(tmp_path), build(".text\n_start:\n" + EXIT_0)]) == 2
    assert capsys.readouterr().err == f"vmgames: --stats-json {tmp_path}: Is a directory\n"
    assert main(["experiment", "chains", "--seeds", "1", "--csv", "/proc/nope/chains.csv"]) == 2
    assert capsys.readouterr().err == "vmgames: --csv /proc/nope/chains.csv: No such file or directory\n"


def test_a_trace_that_fills_the_disk_ends_with_a_message_and_the_run_goes_on(build):
    # 5000 pages make about 4 MB of trace: the first megabyte written to /dev/full fails mid-run.
    result = _cli("run", "--trace", "/dev/full", "--stats", build(touch(5000)))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "vmgames: --trace /dev/full: No space left on device: the trace stops short of the run\n" in result.stderr
    assert re.search(r"zero-fill +500\d\n", result.stderr)   # the run went on to its end, and was counted


def test_a_host_error_resolving_a_path_is_the_guests_errno(run, tmp_path):
    """A loop of symbolic links is ELOOP, a name longer than the host takes ENAMETOOLONG: never a traceback."""
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    assert run(syscall_on_path_then_exit(2, "/loop1")).status == 40            # open: ELOOP
    assert run(syscall_on_path_then_exit(2, "/" + "a" * 300)).status == 36     # ENAMETOOLONG
    assert run(syscall_on_path_then_exit(59, "/loop1")).status == 40           # execve: ELOOP


def test_a_file_page_the_host_cannot_read_is_sigbus_and_read_is_eio(run, tmp_path, monkeypatch):
    """The pager's failure (the host file went away, a disk error) is the faulting process's SIGBUS."""
    from vmgames.kernel import fs

    (tmp_path / "data").write_bytes(b"x" * 8192)
    host_read = fs.HostFile.read

    def failing(self, offset, length):
        if self.path.endswith("/data"):
            raise SyscallError(errno.EIO)
        return host_read(self, offset, length)

    monkeypatch.setattr(fs.HostFile, "read", failing)
    mapper = f"""
.text
_start:
    lea rdi, [rip + path]
    xor esi, esi
    mov eax, 2
    syscall
    mov r12, rax
    mov edi, r12d
    lea rsi, [rip + buffer]
    mov edx, 16
    xor eax, eax
    syscall
    cmp rax, -5
    jne wrong
{mmap(4096, 1, flags=2, fd="r12")}
    mov al, [rax]
wrong:
    mov edi, 3
{EXIT_WITH_RDI}
.section .rodata
path: .asciz "/data"
.bss
buffer: .zero 16
"""
    result = run(mapper)
    assert result.proc.signal == 7 and "I/O error reading the file" in result.proc.death    # SIGBUS
    assert result.faults()["fatal"] == 1


def test_a_fetch_from_an_unmapped_address_names_that_address(run):
    result = run(".text\n_start:\n    mov eax, 1\n    jmp rax\n")
    assert "fetch of 0x1 (no mapping) at 0x1" in result.proc.death


def test_frames_freed_by_one_process_reach_the_next_zeroed(build, tmp_path):
    """A process fills 200 pages with 0xAA and exits; the next one, on the same frames, reads only zeros."""
    writer = build(f"""
.text
_start:
    lea rdi, [rip + area]
    mov ecx, 200 * 4096
    mov al, 0xAA
    rep stosb
{EXIT_0}
.bss
.align 4096
area: .zero 200 * 4096
""", "writer")
    reader = build(f"""
.text
_start:
{mmap("200 * 4096", 3)}
    mov rsi, rax
    mov ecx, 200 * 4096 / 8
    xor edi, edi
sum:
    or rdi, [rsi]
    add rsi, 8
    dec ecx
    jnz sum
    test rdi, rdi
    setnz dil
    movzx edi, dil
{EXIT_WITH_RDI}""", "reader")
    kernel = boot(1 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO())
    first = kernel.spawn(kernel.fs.open_host(writer), ["writer"], [])
    kernel.run()
    second = kernel.spawn(kernel.fs.open_host(reader), ["reader"], [])
    kernel.run()
    assert (first.shell_status, second.shell_status) == (0, 0)
    assert kernel.allocator.total < 2 * 200     # 1 MiB of RAM: the reader's pages can only be the writer's frames
    assert_no_leak(kernel)
