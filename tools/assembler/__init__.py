"""The vmgames assembler: GNU-style Intel-syntax x86-64 source to a static ELF64 executable.

Keystone encodes single instructions (in a separate process, see
keystone_worker); everything around it is ours: parsing, symbols, sections,
jump relaxation, addresses and the ELF file.  The output matches what
``as --64`` followed by ``ld -static`` produces for the same layout.

Pipeline: source (statements) -> program (first pass) -> encoding (Keystone)
-> layout (relaxation, addresses) -> link (patching) -> elf_writer.
"""

from __future__ import annotations

import warnings

from .elf_writer import OutputSection, OutputSymbol, write_executable
from .encoding import encode_instructions
from .errors import AssemblyError, format_diagnostic
from .layout import IMAGE_BASE, TEXT_ADDRESS, lay_out, section_is_used
from .link import link
from .program import SECTION_ORDER, Instruction, build_program
from .source import SourceTextError, statements

__all__ = ["AssemblerWarning", "AssemblyError", "assemble", "assemble_with_warnings"]


class AssemblerWarning(UserWarning):
    """A diagnostic that does not stop assembly (e.g. no _start, a truncated constant)."""


def assemble_with_warnings(source: str, filename: str = "<input>") -> tuple[bytes, list[str]]:
    """Assemble `source`; return the ELF image and warnings as ``FILE:LINE: warning: MESSAGE`` strings.

    Raises AssemblyError (never anything else) for mistakes in the source.
    """
    try:
        program = build_program(statements(source), filename)
    except SourceTextError as error:
        raise AssemblyError(filename, error.line, error.message) from None
    code = program.sections[".text"]
    instruction_indexes = [i for i, item in enumerate(code.items) if isinstance(item, Instruction)]
    encodings = encode_instructions([code.items[i] for i in instruction_indexes], filename)
    encoded = dict(zip(instruction_indexes, encodings, strict=True))
    layout = lay_out(program, encoded)
    contents, symbols = link(program, layout, encoded)

    entry = next((s.address for s in symbols if s.name == "_start" and s.section == ".text"), None)
    if entry is None:
        entry = TEXT_ADDRESS
        program.warnings.append((None, f"cannot find entry symbol _start; defaulting to {entry:016x}"))
    elif "_start" not in program.globals:
        program.warnings.append((program.symbols["_start"].line,
                                 "_start is not declared .globl (GNU ld would not find it); using it anyway"))

    sections = [OutputSection(name, layout.addresses[name], layout.size(name), contents.get(name, b""),
                              program.sections[name].alignment)
                for name in SECTION_ORDER if section_is_used(program, layout, name)]
    image = write_executable(entry, sections,
                             [OutputSymbol(s.name, s.address, s.section, s.is_global) for s in symbols], IMAGE_BASE)
    messages = [format_diagnostic(filename, line, "warning", message) for line, message in program.warnings]
    return image, messages


def assemble(source: str, filename: str = "<input>") -> bytes:
    """Assemble `source` into a static ELF64 executable image.

    Warnings are issued through the `warnings` module as AssemblerWarning;
    use assemble_with_warnings to get them as a list instead.
    """
    image, messages = assemble_with_warnings(source, filename)
    for message in messages:
        warnings.warn(message, AssemblerWarning, stacklevel=2)
    return image
