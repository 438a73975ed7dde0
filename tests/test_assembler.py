"""The assembler against GNU as + ld, and its error reporting.

Every corpus program (tests/asm_corpus/*.s and userland/*.s) is assembled by
us and by ``as --64`` + ``ld -static`` with ld told to use our section
addresses; the section contents must be byte-identical and both executables,
run natively, must print the same and exit the same way.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vmgames.tools.assembler import AssemblerWarning, AssemblyError, assemble, assemble_with_warnings
from vmgames.tools.assembler.keystone_worker import KeystoneJob, encode_all

from tests.programs import EXIT_0

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "asm_corpus").glob("*.s")) + sorted((ROOT / "userland").glob("*.s"))

# Command lines to run each program with (default: no arguments).
RUNS = {
    "touch.s": [[], ["5"], ["0"], ["12x"]],
    "args.s": [[], ["one"], ["a", "bb", "ccc"]],
    "yes.s": [],    # writes for ever: tests/test_cli.py runs it natively, into a pipe it closes
}

pytestmark = pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                                reason="GNU binutils are the reference")


# ---- reading ELF files ------------------------------------------------------------------------

def elf_sections(image: bytes) -> dict[str, tuple[int, int, int, bytes]]:
    """name -> (type, address, size, contents) for every section of an ELF64 image."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    result = {}
    for name, kind, _flags, address, offset, size, *_ in headers[1:]:
        end = image.index(b"\0", names_offset + name)
        section_name = image[names_offset + name:end].decode()
        contents = b"" if kind == 8 else image[offset:offset + size]
        result[section_name] = (kind, address, size, contents)
    return result


def program_headers(image: bytes) -> list[tuple[int, int, int, int, int, int, int]]:
    """(type, flags, offset, vaddr, filesz, memsz, align) of each program header."""
    phoff, = struct.unpack_from("<Q", image, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", image, 0x36)
    rows = []
    for i in range(phnum):
        p_type, flags, offset, vaddr, _paddr, filesz, memsz, align = struct.unpack_from(
            "<IIQQQQQQ", image, phoff + i * phentsize)
        rows.append((p_type, flags, offset, vaddr, filesz, memsz, align))
    return rows


def symbols(image: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (value, binding, section index) from .symtab."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, _ = struct.unpack_from("<HHH", image, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
    symtab = next(h for h in headers if h[1] == 2)
    strtab = headers[symtab[6]]
    result = {}
    for offset in range(symtab[4] + 24, symtab[4] + symtab[5], 24):
        name, info, _other, shndx, value, _size = struct.unpack_from("<IBBHQQ", image, offset)
        start = strtab[4] + name
        result[image[start:image.index(b"\0", start)].decode()] = (value, info >> 4, shndx)
    return result


# ---- building both ways -----------------------------------------------------------------------

def build_ours(source: Path, out: Path) -> bytes:
    image, messages = assemble_with_warnings(source.read_text(), str(source))
    assert messages == []
    out.write_bytes(image)
    out.chmod(0o755)
    return image


def build_gnu(source: Path, out: Path, ours: bytes) -> bytes:
    """as + ld, with ld told to put each section where our assembler put it."""
    obj = out.with_suffix(".o")
    subprocess.run(["as", "--64", "-o", str(obj), str(source)], check=True, capture_output=True)
    starts = [f"--section-start={name}={address:#x}"
              for name, (_, address, _, _) in elf_sections(ours).items() if name in (".text", ".rodata", ".data",
                                                                                        ".bss")]
    subprocess.run(["ld", "-static", "--build-id=none", "-z", "noexecstack", "-o", str(out), str(obj), *starts],
                   check=True, capture_output=True)
    return out.read_bytes()


def run_natively(executable: Path, args: list[str]) -> tuple[bytes, bytes, int]:
    """Run as ./program from its own directory, so both builds see the same argv[0]."""
    done = subprocess.run(["./program", *args], cwd=executable.parent, capture_output=True, timeout=20, env={},
                          check=False)
    return done.stdout, done.stderr, done.returncode


@pytest.mark.parametrize("source", CORPUS, ids=[p.name for p in CORPUS])
def test_matches_gnu_as_and_ld(source: Path, tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "gnu").mkdir()
    ours = build_ours(source, tmp_path / "ours" / "program")
    gnu = build_gnu(source, tmp_path / "gnu" / "program", ours)
    our_sections, gnu_sections = elf_sections(ours), elf_sections(gnu)
    for name in (".text", ".rodata", ".data"):
        assert our_sections.get(name, (0, 0, 0, b""))[3] == gnu_sections.get(name, (0, 0, 0, b""))[3], name
    assert our_sections.get(".bss", (0, 0, 0))[2] == gnu_sections.get(".bss", (0, 0, 0))[2]
    assert struct.unpack_from("<Q", ours, 0x18) == struct.unpack_from("<Q", gnu, 0x18)  # entry point
    for args in RUNS.get(source.name, [[]]):
        assert run_natively(tmp_path / "ours" / "program", args) == run_natively(tmp_path / "gnu" / "program", args)


ENCODE_ONLY = sorted((ROOT / "tests" / "asm_corpus" / "encode_only").glob("*.s"))


@pytest.mark.parametrize("source", ENCODE_ONLY, ids=[p.name for p in ENCODE_ONLY])
def test_encodings_match_gnu_as(source: Path, tmp_path: Path) -> None:
    ours = build_ours(source, tmp_path / "ours")
    gnu = build_gnu(source, tmp_path / "gnu", ours)
    for name in (".text", ".data"):
        assert elf_sections(ours)[name][3] == elf_sections(gnu)[name][3], name


def test_code_padding_matches_gnu_for_every_size(tmp_path: Path) -> None:
    """One .p2align 9 after 512-n bytes, for n = 0..300: every NOP pattern and both jump-over forms."""
    source = ".intel_syntax noprefix\n.text\n.globl _start\n_start:\n" + "".join(
        f".fill {512 - n}, 1, 0xcc\n.p2align 9\n" for n in range(301))
    path = tmp_path / "padding.s"
    path.write_text(source)
    ours = build_ours(path, tmp_path / "ours")
    gnu = build_gnu(path, tmp_path / "gnu", ours)
    assert elf_sections(ours)[".text"][3] == elf_sections(gnu)[".text"][3]


_BRANCHES = ["jmp", "je", "jne", "jb", "jg", "call", "loop", "jrcxz"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_BRANCHES), st.integers(0, 11), st.integers(0, 140)),
                min_size=2, max_size=12))
def test_jump_relaxation_matches_gnu(tmp_path_factory, blocks: list[tuple[str, int, int]]) -> None:
    """Random jumps between blocks of random size: same short/long choices as GNU as."""
    tmp_path = tmp_path_factory.mktemp("relax")
    count = len(blocks)
    lines = [".intel_syntax noprefix", ".text", ".globl _start", "_start:"]
    for number, (mnemonic, target, padding) in enumerate(blocks):
        target %= count
        if mnemonic in ("loop", "jrcxz") and abs(target - number) > 0:
            mnemonic = "jmp"  # rel8-only branches would be out of range: GNU and we both reject those
        lines += [f"block{number}:", f"    {mnemonic} block{target}", f"    .fill {padding}, 1, 0x90"]
    path = tmp_path / "relax.s"
    path.write_text("\n".join(lines) + "\n")
    ours = build_ours(path, tmp_path / "ours")
    gnu = build_gnu(path, tmp_path / "gnu", ours)
    assert elf_sections(ours)[".text"][3] == elf_sections(gnu)[".text"][3]


def relaxation_cascade(branches: int) -> str:
    """Each jump reaches its target only while the next jump is short, and the last one never is:
    relaxation grows one jump per round, from the last to the first."""
    lines = [".intel_syntax noprefix", ".globl _start", "_start:"]
    for number in range(branches):
        lines += [f"jump{number}: jmp target{number}", f".fill {62 + number % 2}, 1, 0x90"]
        if number:
            lines.append(f"target{number - 1}:")
    lines += [".fill 200, 1, 0x90", f"target{branches - 1}:", "ret"]
    return "\n".join(lines) + "\n"


def test_a_relaxation_cascade_matches_gnu(tmp_path: Path) -> None:
    path = tmp_path / "cascade.s"
    path.write_text(relaxation_cascade(300))
    ours = build_ours(path, tmp_path / "ours")
    gnu = build_gnu(path, tmp_path / "gnu", ours)
    assert elf_sections(ours)[".text"][3] == elf_sections(gnu)[".text"][3]
    assert elf_sections(ours)[".text"][3].count(b"\xe9") == 300  # every jump ended long


def test_elf_layout_is_ld_like() -> None:
    image = assemble((ROOT / "tests" / "asm_corpus" / "directives.s").read_text(), "directives.s")
    sections = elf_sections(image)
    assert [name for name in sections] == [".text", ".rodata", ".data", ".bss", ".symtab", ".strtab", ".shstrtab"]
    assert sections[".text"][1] == 0x401000
    for name in (".rodata", ".data", ".bss"):
        assert sections[name][1] % 0x1000 == 0
    loads = [row for row in program_headers(image) if row[0] == 1]
    text, rodata, data = sections[".text"], sections[".rodata"], sections[".data"]
    bss_end = sections[".bss"][1] + sections[".bss"][2]
    assert loads == [
        (1, 5, text[1] - 0x400000, text[1], text[2], text[2], 0x1000),
        (1, 4, rodata[1] - 0x400000, rodata[1], rodata[2], rodata[2], 0x1000),
        (1, 6, data[1] - 0x400000, data[1], data[2], bss_end - data[1], 0x1000),
    ]
    table = symbols(image)
    assert table["_start"] == (0x401000, 1, 1)  # global, in .text
    assert table["counter"][1:] == (0, 3)      # local, in .data
    assert table["SYS_exit"] == (60, 0, 0xFFF1)  # absolute


def test_bss_only_program_gets_a_file_size_zero_segment() -> None:
    image = assemble(".intel_syntax noprefix\n.bss\nbuf: .space 10000\n.text\n.globl _start\n_start:\n"
                     " mov byte ptr [buf + 9999], 1\n" + EXIT_0)
    loads = [row for row in program_headers(image) if row[0] == 1]
    assert loads[-1][1] == 6 and loads[-1][4] == 0 and loads[-1][5] == 10000
    assert loads[-1][3] == 0x402000 and loads[-1][2] % 0x1000 == 0
    assert ".data" not in elf_sections(image)


# ---- errors -----------------------------------------------------------------------------------

ERRORS = [
    # (source, line, message fragment)
    ("nop\n.frobnicate 3\n", 2, "unknown directive '.frobnicate'"),
    ("_start:\n  mov rax, offset nowhere\n", 2, "undefined symbol 'nowhere'"),
    (".data\n.quad 1\n.quad missing + 4\n", 3, "undefined symbol 'missing'"),
    ("_start:\n  jmp nowhere\n", 2, "undefined symbol 'nowhere'"),
    ("_start:\n  nop\n  movx rax, 1\n", 3, "cannot encode 'movx rax, 1': Invalid mnemonic"),
    ("_start:\n  mov rax, rbx, rcx\n", 2, "cannot encode 'mov rax, rbx, rcx': Invalid operand"),
    ("a: nop\nb: nop\na: nop\n", 3, "symbol 'a' is already defined (line 1)"),
    (".data\n.byte 1 +\n", 2, "expression ends too early"),
    (".data\n.long (2\n", 2, "missing ')' in expression"),
    (".data\n.long 1/0\n", 2, "division by zero"),
    (".bss\n.space 4\n.byte 1\n", 3, ".byte puts data in .bss"),
    (".bss\n.ascii \"x\"\n", 2, ".ascii puts data in .bss"),
    (".bss\n  nop\n", 2, "instructions are only supported in .text, not in .bss"),
    ('.data\n.ascii "abc\n', 2, "unterminated string"),
    ("nop\n/* open\n\n", 2, "unterminated /* comment"),
    ("_start:\n1: .space 200\n  loop 1b\n", 3, "does not fit in 1 byte"),
    (".data\n.space later\nlater:\n", 2, "the size of .space must be a constant"),
    (".globl _start, main\n_start: nop\n", 1, "global symbol 'main' is never defined"),
    (".data\nx: .quad x * 2\n", 2, "operator '*' cannot be applied to an address"),
    (".data\na: .byte 1\n.text\nb: nop\n.data\n.quad b - a\n", 6, "cannot subtract an address in .data"),
    (".att_syntax\n", 1, "AT&T syntax is not supported"),
    (".section .init\n", 1, "unsupported section '.init'"),
    ("  mov rax, [rbx*3]\n", 1, "scale factor 3 is not 1, 2, 4 or 8"),
    ("  mov rax, `\n", 1, "unexpected character '`'"),
    ("  jmp 1b\n", 1, "backward reference to unknown label \"1:\""),
    (".data\nx: .word x\n", 2, "does not fit in 2 bytes"),
    (".equ a, b\n.equ b, a\n.data\n.quad a\n", 4, "symbol definition loop"),
    ("x: nop\n.equ x, 1\n", 2, "symbol 'x' is already defined as a label"),
    (".data\n.quad 'a', \"str\"\n", 2, ".quad does not take strings"),
    (".data\n.align 3\n", 2, "alignment 3 is not a power of 2"),
]


@pytest.mark.parametrize("source,line,message", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors_name_file_and_line(source: str, line: int, message: str) -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble(source, "broken.s")
    error = caught.value
    assert (error.filename, error.line) == ("broken.s", line)
    assert message in error.message
    assert str(error) == f"broken.s:{line}: error: {error.message}"


def test_keystone_segfault_becomes_an_error_and_the_tool_survives() -> None:
    """A buffer with section switches kills Keystone 0.9.2 with SIGSEGV: only the worker dies."""
    crashing = ".text\nnop\n.data\n.byte 1"
    jobs = [KeystoneJob(3, "nop"), KeystoneJob(7, crashing), KeystoneJob(9, "ret")]
    with pytest.raises(AssemblyError) as caught:
        encode_all(jobs, 0x401000, "crash.s")
    assert caught.value.line == 7 and caught.value.filename == "crash.s"
    assert "Keystone crashed (killed by SIGSEGV)" in caught.value.message
    # This process is fine and the next assembly works.
    results = encode_all([KeystoneJob(1, "nop"), KeystoneJob(2, "bad insn")], 0x401000, "ok.s")
    assert results[0].encoding == b"\x90"
    assert results[1].encoding is None and "KS_ERR_ASM_MNEMONICFAIL" in results[1].error
    assert assemble(".globl _start\n_start: ret\n")[:4] == b"\x7fELF"


def test_keystone_hang_becomes_an_error_naming_the_line() -> None:
    """Keystone 0.9.2 never returns from a lone backslash; the worker is killed after the timeout."""
    started = time.perf_counter()
    with pytest.raises(AssemblyError) as caught:
        encode_all([KeystoneJob(1, "nop"), KeystoneJob(4, "\\")], 0x401000, "hang.s", timeout=1.0)
    assert str(caught.value) == "hang.s:4: error: Keystone did not finish within 1 s while encoding '\\'"
    assert time.perf_counter() - started < 5


def test_text_that_would_hang_keystone_is_rejected_before_it() -> None:
    with pytest.raises(AssemblyError, match=r"hang\.s:2: error: bad instruction name '\\'"):
        assemble("nop\n\\\n", "hang.s")


def test_user_text_never_reaches_keystone_as_directives() -> None:
    """The section-switch text in a source file is parsed by us, so Keystone never sees it."""
    image = assemble(".text\n.globl _start\n_start: nop\n.data\n.byte 1\n")
    assert elf_sections(image)[".data"][3] == b"\x01"


# ---- warnings ---------------------------------------------------------------------------------

def test_missing_start_warns_like_ld() -> None:
    image, messages = assemble_with_warnings("main: nop\n", "nostart.s")
    assert messages == ["nostart.s: warning: cannot find entry symbol _start; defaulting to 0000000000401000"]
    assert struct.unpack_from("<Q", image, 0x18)[0] == 0x401000
    with pytest.warns(AssemblerWarning, match="cannot find entry symbol _start"):
        assemble("main: nop\n", "nostart.s")


def test_truncated_constant_warns_like_gnu_as() -> None:
    image, messages = assemble_with_warnings(".globl _start\n_start: ret\n.data\n.byte 0x1ff\n", "t.s")
    assert messages == ["t.s:4: warning: value 0x1ff truncated to 0xff"]
    assert elf_sections(image)[".data"][3] == b"\xff"


def test_forward_constant_as_bare_operand_is_memory_with_a_warning() -> None:
    source = ".globl _start\n_start:\n  mov edx, length\n  ret\n.equ length, 12\n"
    image, messages = assemble_with_warnings(source, "f.s")
    assert messages == [("f.s:3: warning: 'length' is not defined as a constant before this line, so (as in GNU as) "
                         "it is a memory operand here; write OFFSET length to use its value")]
    assert elf_sections(image)[".text"][3][:7] == bytes.fromhex("8b14250c000000")  # mov edx, [0xc]


def test_assembling_hello_is_fast() -> None:
    source = (ROOT / "userland" / "hello.s").read_text()
    assemble(source, "hello.s")
    start = time.perf_counter()
    for _ in range(5):
        assemble(source, "hello.s")
    assert (time.perf_counter() - start) / 5 < 0.5


_SOUP = ["mov", "rax", ",", "[", "]", "rip", "+", "-", "*", "msg", "offset", "1", "0x10", "'a'", '"s"', ".byte",
         ".quad", ".data", ".text", ".bss", ":", "lbl", "1b", "1f", "(", ")", ".equ", "x", "=", ".", "jmp", "call",
         "qword", "ptr", "fs", ".align", "3", ".space", "\n", "#", "/*", "*/", ";", "lea", "push", ".ascii", "\\",
         "<<", "%", "/"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_SOUP), max_size=25))
def test_garbage_gives_an_assembly_error_or_an_image_never_a_traceback(words: list[str]) -> None:
    source = ".data\nmsg: .byte 1\n.text\n" + " ".join(words)
    try:
        image, _ = assemble_with_warnings(source, "soup.s")
    except AssemblyError as error:
        assert error.filename == "soup.s" and (error.line is None or 1 <= error.line <= source.count("\n") + 1)
    else:
        assert image[:4] == b"\x7fELF"


def test_rodata_directive_is_accepted_as_a_shorthand() -> None:
    """`.rodata` is not a GNU as directive; we accept it as `.section .rodata`."""
    short = assemble(".globl _start\n_start: ret\n.rodata\nmsg: .ascii \"hi\"\n")
    long = assemble(".globl _start\n_start: ret\n.section .rodata\nmsg: .ascii \"hi\"\n")
    assert short == long
    assert elf_sections(short)[".rodata"][3] == b"hi"
