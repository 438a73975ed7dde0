"""Keystone's output for each instruction, and where in it the fields we patch live.

Capstone decodes each encoding to find the displacement and immediate fields
(their offsets and sizes), so patching never guesses at instruction formats.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import capstone

from .errors import AssemblyError, shown
from .keystone_worker import KeystoneJob, encode_all
from .operands import ABSOLUTE_SIB, BRANCH_BASE, STAND_IN_SIB
from .program import Instruction

_DECODER = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_DECODER.detail = True


@dataclass(frozen=True, slots=True)
class Form:
    """One encoding of an instruction with the offsets and sizes of its patchable fields."""
    data: bytes
    disp_offset: int
    disp_size: int
    imm_offset: int
    imm_size: int
    rel_size: int  # size of the pc-relative field at the end (branches), else 0


@dataclass(frozen=True, slots=True)
class EncodedInstruction:
    instruction: Instruction
    short: Form
    long: Form | None  # for branches that have a wider form than `short`

    @property
    def can_grow(self) -> bool:
        return self.long is not None and len(self.long.data) > len(self.short.data)


def encode_instructions(instructions: list[Instruction], filename: str) -> list[EncodedInstruction]:
    """Encode every instruction's template(s) in one Keystone worker, each distinct text once."""
    jobs: dict[str, KeystoneJob] = {}
    for insn in instructions:
        for text in insn.template.texts:
            jobs.setdefault(text, KeystoneJob(insn.line, text))
    results = dict(zip(jobs, encode_all(list(jobs.values()), BRANCH_BASE, filename), strict=True))
    encoded = []
    for insn in instructions:
        forms = []
        for index, text in enumerate(insn.template.texts):
            result = results[text]
            if result.encoding is None:
                if index == 0:
                    raise AssemblyError(filename, insn.line, f"cannot encode {shown(insn.source)}: {result.error}")
                forms.append(None)
            else:
                forms.append(_form(result.encoding, insn, filename))
        encoded.append(EncodedInstruction(insn, forms[0], forms[1] if len(forms) > 1 else None))
    return encoded


@dataclass(frozen=True, slots=True)
class _Fields:
    disp_offset: int
    disp_size: int
    imm_offset: int
    imm_size: int


@functools.lru_cache(maxsize=4096)
def _decode(data: bytes) -> _Fields | None:
    """Where Capstone finds the displacement and immediate in `data`; None unless it is one instruction."""
    decoded = list(_DECODER.disasm(data, BRANCH_BASE))
    if len(decoded) != 1 or decoded[0].size != len(data):
        return None
    insn = decoded[0]
    return _Fields(insn.disp_offset, insn.disp_size, insn.imm_offset, insn.imm_size)


def _form(data: bytes, insn: Instruction, filename: str) -> Form:
    detail = _decode(data)
    if detail is None:
        raise AssemblyError(filename, insn.line, f"{shown(insn.source)} did not encode as a single instruction")
    data = bytearray(data)
    fixups = insn.template.fixups
    if any(fixup.absolute_sib for fixup in fixups):
        sib = detail.disp_offset - 1
        if detail.disp_size != 4 or data[sib] != STAND_IN_SIB:
            raise AssemblyError(filename, insn.line, f"cannot encode an absolute address in {shown(insn.source)}")
        data[sib] = ABSOLUTE_SIB
    rel_size = 0
    if insn.template.is_branch:
        rel_size = detail.imm_size if detail.imm_size in (1, 4) else 0
        if rel_size == 0:
            raise AssemblyError(filename, insn.line, f"{shown(insn.source)} is not a pc-relative branch")
    for fixup in fixups:
        if fixup.kind in ("disp", "rip") and detail.disp_size != 4:
            raise AssemblyError(filename, insn.line, f"no room for a 32-bit displacement in {shown(insn.source)}")
        if fixup.kind == "imm" and detail.imm_size not in (4, 8):
            raise AssemblyError(filename, insn.line,
                                f"an address does not fit the {detail.imm_size}-byte immediate of {shown(insn.source)}")
    return Form(bytes(data), detail.disp_offset, detail.disp_size, detail.imm_offset, detail.imm_size, rel_size)
