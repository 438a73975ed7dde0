"""A static ELF64 x86-64 executable image, laid out the way GNU ld lays one out.

The file mirrors memory: each section's file offset is its address minus
0x400000, so offsets and addresses agree modulo the page size and every
segment can be mapped straight from the file.  One PT_LOAD per kind of
section (text R+X, rodata R, data+bss RW with bss as memsz beyond filesz),
plus section headers and a symbol table so objdump and gdb understand it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
SYMBOL = struct.Struct("<IBBHQQ")

PT_LOAD, PT_GNU_STACK = 1, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE = 0
PAGE_SIZE = 0x1000

_SECTION_KINDS = {  # name: (section type, section flags, segment flags)
    ".text": (SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, PF_R | PF_X),
    ".rodata": (SHT_PROGBITS, SHF_ALLOC, PF_R),
    ".data": (SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, PF_R | PF_W),
    ".bss": (SHT_NOBITS, SHF_ALLOC | SHF_WRITE, PF_R | PF_W),
}


@dataclass(frozen=True)
class OutputSection:
    name: str  # one of .text .rodata .data .bss
    address: int
    size: int
    contents: bytes  # empty for .bss, which takes no room in the file
    alignment: int


@dataclass(frozen=True)
class OutputSymbol:
    name: str
    value: int
    section: str | None  # None for absolute symbols
    is_global: bool


def write_executable(entry: int, sections: list[OutputSection], symbols: list[OutputSymbol],
                     image_base: int) -> bytes:
    """Serialize an executable; `sections` in address order, empty ones already dropped."""
    segments = _segments(sections, image_base)
    headers_end = ELF_HEADER.size + PROGRAM_HEADER.size * len(segments)
    image = bytearray(headers_end)
    for section in sections:
        if section.name != ".bss":
            offset = section.address - image_base
            image += bytes(offset - len(image)) + section.contents

    names = _StringTable()
    section_index = {section.name: i + 1 for i, section in enumerate(sections)}
    ordered = sorted(symbols, key=lambda s: s.is_global)
    symtab = bytearray(SYMBOL.size)
    for symbol in ordered:
        shndx = SHN_ABS if symbol.section is None else section_index[symbol.section]
        binding = STB_GLOBAL if symbol.is_global else STB_LOCAL
        symtab += SYMBOL.pack(names.add(symbol.name), (binding << 4) | STT_NOTYPE, 0, shndx, symbol.value, 0)
    first_global = 1 + sum(not symbol.is_global for symbol in ordered)

    shnames = _StringTable()
    headers = [bytes(SECTION_HEADER.size)]
    for section in sections:
        kind, flags, _ = _SECTION_KINDS[section.name]
        offset = section.address - image_base if section.name != ".bss" else min(section.address - image_base,
                                                                                   len(image))
        headers.append(SECTION_HEADER.pack(shnames.add(section.name), kind, flags, section.address, offset,
                                           section.size, 0, 0, section.alignment, 0))
    symtab_index = len(headers)
    for name, kind, data, link, info, align, entsize in (
            (".symtab", SHT_SYMTAB, bytes(symtab), symtab_index + 1, first_global, 8, SYMBOL.size),
            (".strtab", SHT_STRTAB, names.data(), 0, 0, 1, 0),
            (".shstrtab", SHT_STRTAB, None, 0, 0, 1, 0)):
        name_offset = shnames.add(name)
        data = shnames.data() if data is None else data
        image += bytes(-len(image) % align)
        headers.append(SECTION_HEADER.pack(name_offset, kind, 0, 0, len(image), len(data), link, info, align,
                                           entsize))
        image += data
    image += bytes(-len(image) % 8)
    section_headers_offset = len(image)
    for header in headers:
        image += header

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    image[:ELF_HEADER.size] = ELF_HEADER.pack(
        ident, 2, 62, 1, entry, ELF_HEADER.size, section_headers_offset, 0, ELF_HEADER.size,
        PROGRAM_HEADER.size, len(segments), SECTION_HEADER.size, len(headers), len(headers) - 1)
    for i, segment in enumerate(segments):
        start = ELF_HEADER.size + i * PROGRAM_HEADER.size
        image[start:start + PROGRAM_HEADER.size] = segment
    return bytes(image)


def _segments(sections: list[OutputSection], image_base: int) -> list[bytes]:
    """Program headers: one PT_LOAD per kind; .data and .bss share the RW one."""
    by_name = {section.name: section for section in sections}
    segments = []
    for name in (".text", ".rodata"):
        if name in by_name:
            section = by_name[name]
            segments.append(_load(section.address, section.address - image_base, section.size, section.size,
                                  _SECTION_KINDS[name][2]))
    data, bss = by_name.get(".data"), by_name.get(".bss")
    if data or bss:
        first = data or bss
        end = (bss or data).address + (bss or data).size
        filesz = data.size if data else 0
        offset = first.address - image_base if data else 0
        segments.append(_load(first.address, offset, filesz, end - first.address, PF_R | PF_W))
    segments.append(PROGRAM_HEADER.pack(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, 16))
    return segments


def _load(vaddr: int, offset: int, filesz: int, memsz: int, flags: int) -> bytes:
    return PROGRAM_HEADER.pack(PT_LOAD, flags, offset, vaddr, vaddr, filesz, memsz, PAGE_SIZE)


class _StringTable:
    def __init__(self) -> None:
        self._data = bytearray(b"\0")
        self._offsets: dict[str, int] = {}

    def add(self, name: str) -> int:
        if name not in self._offsets:
            self._offsets[name] = len(self._data)
            self._data += name.encode() + b"\0"
        return self._offsets[name]

    def data(self) -> bytes:
        return bytes(self._data)
