"""Reading static ELF64 x86-64 executables, and refusing hostile ones.

Everything a file says is checked before the loader trusts it: the header,
that program headers and segments lie inside the file, that segments do not
overlap or wrap, that they fit in user space, and that file offsets and
addresses agree modulo the page size (so pages can be mapped from the file).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from emulator.ram import PAGE_SIZE

PT_LOAD = 1
PT_INTERP = 3
PT_PHDR = 6
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC = 2
EM_X86_64 = 62

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


class ExecFormatError(Exception):
    """Not an executable we can run (exec returns ENOEXEC)."""


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class Image:
    entry: int
    segments: tuple[Segment, ...]
    phdr_vaddr: int      # where the program headers are in memory (for AT_PHDR), or 0
    phentsize: int
    phnum: int


def parse(data: bytes, user_top: int) -> Image:
    """Parse and validate an executable image held in `data`."""
    if len(data) < _EHDR.size:
        raise ExecFormatError("file too short for an ELF header")
    (ident, e_type, machine, version, entry, phoff, _shoff, _flags, ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(data)
    if ident[:4] != b"\x7fELF":
        raise ExecFormatError("bad ELF magic")
    if ident[4] != 2 or ident[5] != 1:
        raise ExecFormatError("not a little-endian 64-bit ELF file")
    if e_type != ET_EXEC:
        raise ExecFormatError(f"ELF type {e_type} is not a static executable (ET_EXEC)")
    if machine != EM_X86_64:
        raise ExecFormatError(f"ELF machine {machine} is not x86-64")
    if phentsize != _PHDR.size or phnum == 0 or phnum > 64:
        raise ExecFormatError(f"bad program header table ({phnum} entries of {phentsize} bytes)")
    if phoff + phnum * phentsize > len(data):
        raise ExecFormatError("program headers lie outside the file")

    segments = []
    phdr_vaddr = 0
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = _PHDR.unpack_from(
            data, phoff + i * phentsize)
        if p_type == PT_INTERP:
            raise ExecFormatError("dynamically linked executables are not supported (PT_INTERP)")
        if p_type == PT_PHDR:
            phdr_vaddr = p_vaddr
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise ExecFormatError(f"segment {i}: file size exceeds memory size")
        if p_offset + p_filesz > len(data):
            raise ExecFormatError(f"segment {i} lies outside the file")
        if p_vaddr + p_memsz > user_top or p_vaddr < PAGE_SIZE:
            raise ExecFormatError(f"segment {i} at {p_vaddr:#x} (+{p_memsz:#x}) is outside user space")
        if p_vaddr % PAGE_SIZE != p_offset % PAGE_SIZE:
            raise ExecFormatError(f"segment {i}: address and file offset disagree modulo the page size")
        segments.append(Segment(p_vaddr, p_memsz, p_offset, p_filesz, p_flags))
    if not segments:
        raise ExecFormatError("no loadable segment")
    segments.sort(key=lambda s: s.vaddr)
    for a, b in itertools.pairwise(segments):
        if _page_down(b.vaddr) < _page_up(a.end):
            raise ExecFormatError(f"segments at {a.vaddr:#x} and {b.vaddr:#x} overlap")
    if not any(s.vaddr <= entry < s.end and s.flags & PF_X for s in segments):
        raise ExecFormatError(f"entry point {entry:#x} is not in an executable segment")
    if not phdr_vaddr:
        for s in segments:
            if s.offset <= phoff and phoff + phnum * phentsize <= s.offset + s.filesz:
                phdr_vaddr = s.vaddr + (phoff - s.offset)
    return Image(entry, tuple(segments), phdr_vaddr, phentsize, phnum)


def _page_down(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
