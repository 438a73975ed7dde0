"""The assembler against hostile input: every mistake is one ``FILE:LINE: error:`` line, in bounded time and memory.

Classes, each tried at its edges: nesting (parentheses, unary chains, symbols defined through
symbols), sizes (.space/.zero/.skip/.fill/alignment in every section, .bss of any size),
numbers (beyond 64 bits, division by zero), symbols (loops, redefinitions), text (NUL bytes,
terminal escapes, huge lines and sources, too many statements or tokens), host files
(.include/.incbin), and a random token soup.  Limits are the ones the README states.
"""

from __future__ import annotations

import struct
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vmgames.tools.assembler import AssemblyError, assemble_with_warnings

from tests.programs import EXIT_WITH_RDI, VMGAMES

ROOT = Path(__file__).resolve().parent.parent
PROLOGUE = ".intel_syntax noprefix\n.globl _start\n_start: ret\n"  # three lines: the cases start on line 4
TOO_DEEP = "expression nested too deeply (more than 100 levels of parentheses and unary operators)"
TOO_BIG = ("{} grows past 64 MiB here, the most the assembler writes for .text, .rodata and .data together "
           "(.bss may be larger)")


def assembly_error(source: str, filename: str = "h.s") -> AssemblyError:
    with pytest.raises(AssemblyError) as caught:
        assemble_with_warnings(source, filename)
    return caught.value


def section(image: bytes, wanted: str) -> tuple[int, int, bytes]:
    """(address, size, contents) of one section of an ELF64 image."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", image, 0x3C)
    headers = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * 64) for i in range(shnum)]
    names = headers[shstrndx][4]
    for name, kind, _flags, address, offset, size, *_ in headers:
        if image[names + name:image.index(b"\0", names + name)].decode() == wanted:
            return address, size, b"" if kind == 8 else image[offset:offset + size]
    raise KeyError(wanted)


def data_of(source: str) -> bytes:
    image, _ = assemble_with_warnings(PROLOGUE + ".data\n" + source, "h.s")
    return section(image, ".data")[2]


# ---- one error line for each hostile case ------------------------------------------------------

HOSTILE = [
    # nesting that would exhaust Python's recursion
    (".data\n.quad " + "(" * 1000 + "1" + ")" * 1000, 5, TOO_DEEP),
    ("mov rax, " + "(" * 10_000 + "1" + ")" * 10_000, 4, TOO_DEEP),
    (".data\n.quad " + "- " * 1000 + "1", 5, TOO_DEEP),
    (".data\n.byte " + "~" * 5000 + "1", 5, TOO_DEEP),
    ("mov rax, [rbx + " + "(" * 300 + "8" + ")" * 300 + "]", 4, TOO_DEEP),
    (".data\n.space " + "(" * 50 + "- " * 51 + "1" + ")" * 50, 5, TOO_DEEP),
    # sizes that would not fit the file or the host's memory, in every section and every spelling
    (".data\n.zero 0x100000000", 5, TOO_BIG.format(".data")),
    (".data\n.space 0x100000000, 7", 5, TOO_BIG.format(".data")),
    (".data\n.skip 1 << 40", 5, TOO_BIG.format(".data")),
    (".data\n.fill 0x20000000, 8, -1", 5, TOO_BIG.format(".data")),
    (".space 0x100000000", 4, TOO_BIG.format(".text")),
    (".fill 0x100000000", 4, TOO_BIG.format(".text")),
    (".section .rodata\n.zero 0x100000000", 5, TOO_BIG.format(".rodata")),
    (".section .rodata\n.space 40 << 20\n.data\n.space 40 << 20", 7, TOO_BIG.format(".data")),
    (".data\n.zero (64 << 20) - 1\n.byte 1", 6, TOO_BIG.format(".data")),  # .text has 1 byte already
    # alignment piling up: each pads 65535 bytes of a 2-line pair, the 1024th pair reaches 64 MiB
    (".data\n" + ".byte 1\n.balign 65536\n" * 1100, 2052, TOO_BIG.format(".data")),
    ("nop\n.balign 65536\n" * 1100, 2052, TOO_BIG.format(".text")),
    (".data\n.balign 0x100000000", 5, "alignment 4294967296 is not a power of 2 up to 65536"),
    (".p2align 64", 4, ".p2align 64 is out of range (0..16)"),
    (".p2align -1", 4, ".p2align -1 is out of range (0..16)"),
    (".bss\n.space 0x7fffffff0000", 5, ".bss would end at 0x8000003f2000, above the top of user space "
                                       "(0x7ffffffff000)"),
    (".bss\n.space 0xffffffffffffffff", 5, ".space size -1 is negative"),
    (".data\n.fill -1, 1, 0", 5, ".fill needs a non-negative repeat count and a size from 0 to 8"),
    # numbers
    (".data\n.quad 18446744073709551616", 5, "number '18446744073709551616' does not fit in 64 bits"),
    (".data\n.quad " + "9" * 5000, 5, "number '" + "9" * 30 + "..." + "9" * 30 + "' does not fit in 64 bits"),
    ("mov rax, 0x1ffffffffffffffff", 4, "number '0x1ffffffffffffffff' does not fit in 64 bits"),
    (".data\n.long 1ffffffffffffffffh", 5, "number '1ffffffffffffffffh' does not fit in 64 bits"),
    ("mov rax, [rbx*0x10000000000000000]", 4, "number '0x10000000000000000' does not fit in 64 bits"),
    ("mov rax, 5 % (3 - 3)", 4, "division by zero"),
    (".equ zero, 0\n.data\n.quad 1 / zero", 6, "division by zero"),
    # symbols
    (".set a, b\n.set b, a\n.data\n.quad a", 7, "symbol definition loop involving 'a'"),
    (".set a, a + 1\nmov rax, a", 5, "symbol definition loop involving 'a'"),
    (".set a, b\n.set b, a", 4, "symbol definition loop involving 'b'"),  # unused: found for the symbol table
    (".data\n.quad a150\n" + "".join(f".equ a{i}, a{i - 1} + 1\n" for i in range(150, 0, -1)) + ".equ a0, 0",
     5, "symbol definitions nested more than 100 deep (at 'a50'); define symbols before the definitions that "
        "use them"),
    ("a: nop\na: nop", 5, "symbol 'a' is already defined (line 4)"),
    (".set x, 1\nx: nop", 5, "symbol 'x' is already defined (line 4)"),
    ("_start: nop", 4, "symbol '_start' is already defined (line 3)"),
    # text: NUL bytes, terminal escapes and huge tokens are shown escaped and short
    ("nop\0", 4, "bad instruction name 'nop\\x00'"),
    ("mov\x1b[2J rax, 1", 4, "bad instruction name 'mov\\x1b[2J'"),
    (".data\n.ascii \"\x1b[2J\" \x07", 5, "unexpected character '\\x07'"),
    (".data\n.quad " + "a" * 1_000_000 + "$", 5, "undefined symbol '" + "a" * 30 + "..." + "a" * 29 + "$'"),
    (".data\n.byte " + "1," * 60_000 + "1", 5, "more than 100,000 tokens in one statement"),
    # host files are never read; directives we do not have are named
    (".include \"/etc/passwd\"", 4, ".include is not supported: a program is one source file, and the assembler "
                                    "reads no other"),
    (".data\n.incbin \"/etc/passwd\"", 5, ".incbin is not supported: a program is one source file, and the "
                                          "assembler reads no other"),
    (".byte 1\n.org 0", 5, "unknown directive '.org'"),
    (".rept 1000000000\nnop\n.endr", 4, "unknown directive '.rept'"),
    # what Keystone cannot encode
    ("mov al, rax", 4, "cannot encode 'mov al, rax': Invalid operand (KS_ERR_ASM_INVALIDOPERAND)"),
]


@pytest.mark.parametrize("source, line, message", HOSTILE, ids=[f"{i}-{case[2][:30]}" for i, case in
                                                                 enumerate(HOSTILE)])
def test_hostile_source_gives_one_error_line(source: str, line: int, message: str) -> None:
    started = time.perf_counter()
    error = assembly_error(PROLOGUE + source)
    assert (error.filename, error.line, error.message) == ("h.s", line, message)
    assert str(error) == f"h.s:{line}: error: {message}"
    assert time.perf_counter() - started < 10


def test_a_source_over_the_size_limit_is_refused_at_once() -> None:
    error = assembly_error("#" * ((8 << 20) + 1), "big.s")
    assert str(error) == ("big.s: error: the source is more than 8,388,608 characters long; "
                          "the assembler takes at most 8 MiB")


def test_more_statements_than_the_limit_are_refused_at_the_first_too_many() -> None:
    error = assembly_error("nop\n" * 500_001, "many.s")
    assert str(error) == ("many.s:500001: error: more than 500,000 statements (labels, directives and "
                          "instructions); the assembler takes no more")


# ---- what is allowed still works, and stays cheap ----------------------------------------------

def test_nesting_up_to_the_limit_is_allowed() -> None:
    assert data_of(".quad " + "(" * 100 + "1" + ")" * 100 + ", " + "- " * 100 + "1\n") == (
        (1).to_bytes(8, "little") * 2)


def test_a_long_chain_of_operators_costs_no_recursion() -> None:
    assert data_of(".quad " + " + ".join(["1"] * 40_000) + "\n") == (40_000).to_bytes(8, "little")
    assert data_of(".quad 1" + " - 1" * 40_000 + "\n") == (1 - 40_000).to_bytes(8, "little", signed=True)


def test_numbers_up_to_64_bits_are_allowed() -> None:
    assert data_of(".quad 18446744073709551615, 0xffffffffffffffff, 000000000000000000000000042\n") == (
        b"\xff" * 16 + (0o42).to_bytes(8, "little"))


def test_long_chains_of_symbols_defined_in_order_resolve_once_each() -> None:
    """Each .set is worked out where it stands; before, the chain was re-walked and called a loop."""
    chain = ".equ a0, 3\n" + "".join(f".equ a{i}, a{i - 1} + 1\n" for i in range(1, 5000))
    redefined = ".set x, 0\n" + ".set x, x + 2\n" * 20_000
    started = time.perf_counter()
    assert data_of(chain + redefined + ".quad a4999, x\n") == (5002).to_bytes(8, "little") + (
        40_000).to_bytes(8, "little")
    assert time.perf_counter() - started < 10


def test_symbols_used_many_times_over_are_evaluated_once() -> None:
    """a40 = 2 * a39 = ... names a0 2**40 times; defined after use, so nothing is known early."""
    doubling = "".join(f".equ a{i}, a{i - 1} + a{i - 1}\n" for i in range(1, 41)) + ".equ a0, 1\n"
    started = time.perf_counter()
    assert data_of(".quad a40\n" + doubling) == (1 << 40).to_bytes(8, "little")
    assert time.perf_counter() - started < 10


def test_a_huge_bss_costs_no_host_memory() -> None:
    source = PROLOGUE + ".bss\nbuf: .space 0x10000000000\nend: .space 0x7000000000\n"
    tracemalloc.start()
    try:
        image, messages = assemble_with_warnings(source, "bss.s")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert messages == [] and len(image) < 8192
    assert section(image, ".bss")[:2] == (0x402000, 0x17000000000)
    loads = [struct.unpack_from("<IIQQQQQQ", image, 64 + i * 56) for i in range(2)]
    assert loads[1][:2] == (1, 6) and loads[1][5:7] == (0, 0x17000000000)  # filesz 0, memsz all of it


def test_a_relaxation_cascade_past_the_round_limit_is_refused_quickly() -> None:
    from tests.test_assembler import relaxation_cascade

    started = time.perf_counter()
    image, _ = assemble_with_warnings(relaxation_cascade(999), "cascade.s")  # 999 rounds grow, one settles
    assert section(image, ".text")[2].count(b"\xe9") == 999
    error = assembly_error(relaxation_cascade(1000), "cascade.s")
    assert str(error) == ("cascade.s: error: jump relaxation did not settle in 1000 rounds (each grown branch "
                          "pushing another out of short range)")
    assert time.perf_counter() - started < 20


def test_a_big_table_in_one_statement_is_fine_below_the_token_limit() -> None:
    assert data_of(".byte " + "7," * 40_000 + "7\n") == b"\x07" * 40_001


def test_empty_source_and_a_lone_label_assemble_with_ld_s_warning() -> None:
    for source in ("", "x:\n", "\n\n\n"):
        image, messages = assemble_with_warnings(source, "e.s")
        assert image[:4] == b"\x7fELF"
        assert messages == ["e.s: warning: cannot find entry symbol _start; defaulting to 0000000000401000"]


# ---- through the command line ------------------------------------------------------------------

def vmgames(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VMGAMES, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize("command", ["asm", "run"])
def test_cli_deep_nesting_is_one_line_naming_file_and_line(tmp_path: Path, command: str) -> None:
    source = tmp_path / "deep.s"
    source.write_text(PROLOGUE + ".data\n.quad " + "(" * 100_000 + "1" + ")" * 100_000 + "\n")
    result = vmgames(command, str(source)) if command == "run" else vmgames("asm", str(source), "-o",
                                                                            str(tmp_path / "deep"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"{source}:5: error: more than 100,000 tokens in one statement\n"
    source.write_text(PROLOGUE + ".data\n.quad " + "- " * 10_000 + "1\n")
    result = vmgames(command, str(source)) if command == "run" else vmgames("asm", str(source), "-o",
                                                                            str(tmp_path / "deep"))
    assert (result.returncode, result.stderr) == (1, f"{source}:5: error: {TOO_DEEP}\n")


def test_cli_four_gib_of_data_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "big.s"
    source.write_text(PROLOGUE + ".data\nbig: .zero 4 << 30\n")
    result = vmgames("asm", str(source), "-o", str(tmp_path / "big"))
    assert result.returncode == 1
    assert result.stderr == f"{source}:5: error: {TOO_BIG.format('.data')}\n"
    assert not (tmp_path / "big").exists()


def test_cli_runs_a_program_with_a_one_tib_bss(tmp_path: Path) -> None:
    """The last byte of a 1 TiB .bss is written and read back; neither tool nor machine pays for the rest."""
    source = tmp_path / "huge.s"
    source.write_text(PROLOGUE.replace("_start: ret\n", "_start:\n") + "    mov rax, offset buf\n"
                      "    mov rcx, (1 << 40) - 1\n    mov byte ptr [rax + rcx], 7\n"
                      "    movzx edi, byte ptr [rax + rcx]\n" + EXIT_WITH_RDI + ".bss\nbuf: .space 1 << 40\n")
    result = vmgames("run", str(source))
    assert (result.returncode, result.stderr) == (7, "")


def test_cli_source_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "binary.s"
    source.write_bytes(b"nop\n\xff\xfe\x00mov rax, 1\n")
    result = vmgames("asm", str(source), "-o", str(tmp_path / "binary"))
    assert result.returncode == 1
    assert result.stderr.startswith("vmgames: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


# ---- random token soup ---------------------------------------------------------------------------

_SOUP = ["(", ")", "-", "~", "+", "*", "/", "%", "<<", ">>", "0", "1", "7", "0x7fffffffffffffff",
         "18446744073709551616", "99999999999999999999999", "'\\x41'", "'a", '"\\0"', '"x', "a", "b", "x", ",",
         ".set", ".equ", "=", ":", "\n", ";", ".data", ".text", ".bss", ".section .rodata", ".space", ".zero",
         ".skip", ".fill", ".balign", ".p2align", ".align", "0x100000000", "1 << 40", "65536", "16", ".byte",
         ".quad", ".ascii", ".globl", "mov", "rax", "[", "]", "rip", "jmp", "call", "loop", "1b", "1f", "1:", ".",
         "\0", "\x1b", "é", "\udcff", "#", "/*", "*/", ".include", ".incbin", ".org", "lock", "qword", "ptr",
         "offset", "\\"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_SOUP), max_size=40), st.integers(0, 150), st.integers(0, 3))
def test_token_soup_assembles_or_gives_one_error_line(words: list[str], depth: int, where: int) -> None:
    """Random tokens, with a nest of `depth` parentheses or minus signs put somewhere in them."""
    nest = ("(" * depth + "1" + ")" * depth) if depth % 2 else ("- " * depth + "1")
    words.insert(min(where * 10, len(words)), nest)
    source = ".data\nmsg: .byte 1\n.text\n" + " ".join(words)
    try:
        image, messages = assemble_with_warnings(source, "soup.s")
    except AssemblyError as error:
        assert error.filename == "soup.s"
        assert error.line is None or 1 <= error.line <= source.count("\n") + 1
        assert str(error).isprintable() and len(error.message) < 400
    else:
        assert image[:4] == b"\x7fELF"
        assert all(message.isprintable() for message in messages)


def test_cli_refuses_a_huge_source_without_reading_it_whole(tmp_path):
    """A sparse 3 GiB file: one line, and vmgames reads no more than the assembler's limit of it."""
    huge = tmp_path / "huge.s"
    with open(huge, "wb") as f:
        f.truncate(3 << 30)
    result = subprocess.run([*VMGAMES, "asm", str(huge), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.endswith("error: the source is more than 8,388,608 characters long; "
                                  "the assembler takes at most 8 MiB\n")
