"""Reading ELF64 x86-64 executables (static, position-independent, and their interpreter), and refusing
hostile ones.

A position-independent file (ET_DYN: a PIE, or ld.so itself) is read at the
load bias the loader gives, so every address below is where it will be.
Everything a file says is checked before the loader trusts it: the header,
that program headers and segments lie inside the file, that segments do not
overlap or wrap, that they fit in user space, and that file offsets and
addresses agree modulo the page size (so pages can be mapped from the file).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from vmgames.emulator.ram import PAGE_SIZE

PT_LOAD = 1
PT_INTERP = 3
PT_PHDR = 6
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3
PATH_MAX = 4096
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
    interpreter: str | None = None   # PT_INTERP: the dynamic linker that runs it
    relocatable: bool = False        # ET_DYN: placed at the loader's bias


def is_relocatable(data: bytes) -> bool:
    """An ET_DYN file, which the loader places where it likes (check the header with `parse`)."""
    return len(data) >= _EHDR.size and _EHDR.unpack_from(data)[1] == ET_DYN


def parse(data: bytes, user_top: int, bias: int = 0) -> Image:
    """Parse and validate an executable image held in `data`; an ET_DYN one as loaded at `bias`."""
    if len(data) < _EHDR.size:
        raise ExecFormatError("file too short for an ELF header")
    (ident, e_type, machine, version, entry, phoff, _shoff, _flags, ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(data)
    if ident[:4] != b"\x7fELF":
        raise ExecFormatError("bad ELF magic")
    if ident[4] != 2 or ident[5] != 1:
        raise ExecFormatError("not a little-endian 64-bit ELF file")
    if e_type not in (ET_EXEC, ET_DYN):
        raise ExecFormatError(f"ELF type {e_type} is not an executable (ET_EXEC or ET_DYN)")
    if e_type == ET_EXEC:
        bias = 0
    entry += bias
    if machine != EM_X86_64:
        raise ExecFormatError(f"ELF machine {machine} is not x86-64")
    if phentsize != _PHDR.size or phnum == 0 or phnum > 64:
        raise ExecFormatError(f"bad program header table ({phnum} entries of {phentsize} bytes)")
    if phoff + phnum * phentsize > len(data):
        raise ExecFormatError("program headers lie outside the file")

    segments = []
    phdr_vaddr = 0
    interpreter = None
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = _PHDR.unpack_from(
            data, phoff + i * phentsize)
        p_vaddr += bias
        if p_type == PT_INTERP:
            interpreter = _interpreter(data, p_offset, p_filesz)
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
    return Image(entry, tuple(segments), phdr_vaddr, phentsize, phnum, interpreter, e_type == ET_DYN)


def _interpreter(data: bytes, offset: int, size: int) -> str:
    """PT_INTERP's path: inside the file, NUL-terminated, no longer than a path may be."""
    if size < 2 or size > PATH_MAX or offset + size > len(data):
        raise ExecFormatError("bad PT_INTERP (the interpreter's path)")
    path = data[offset:offset + size]
    if path[-1] != 0 or 0 in path[:-1]:
        raise ExecFormatError("PT_INTERP is not a NUL-terminated path")
    return path[:-1].decode("utf-8", "surrogateescape")


def _page_down(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
