"""The assembler against GNU as + ld, and its error reporting.

Every corpus program (tests/asm_corpus/*.s and userland/*.s) is assembled by
us and by ``as --64`` + ``ld -static`` with ld told to use our section
addresses; the section contents must be byte-identical and both executables,
run natively, must print the same and exit the same way.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from tools.assembler import AssemblerWarning, AssemblyError, assemble, assemble_with_warnings
from tools.assembler.keystone_worker import KeystoneJob, encode_all

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "asm_corpus").glob("*.s")) + sorted((ROOT / "userland").glob("*.s"))

# Command lines to run each program with (default: no arguments).
RUNS = {
    "touch.s": [[], ["5"], ["0"], ["12x"]],
    "args.s": [[], ["one"], ["a", "bb", "ccc"]],
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
    done = subprocess.run(["./program", *args], cwd=executable.parent, capture_output=True, timeout=20, env={})
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
