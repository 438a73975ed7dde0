"""The C walk (emulator/_native.c) against its reference, emulator/mmu.py's walk (itself held to QEMU's by
tests/test_mmu_reference.py): the same translation or error code, and the same A and D bits left in RAM, for
page tables of random entries."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vmgames.emulator import _native, mmu
from vmgames.emulator import pte as E

FRAMES = 16
QWORDS = FRAMES * 512
# Bits an entry may have: present, writable, user, accessed, dirty, large, NX, and a reserved address bit.
BITS = [E.P, E.RW, E.US, E.A, E.D, E.PS, E.NX, 1 << 45, 1 << 13, 1 << 21]

entry = st.builds(lambda frame, bits: (frame << 12) | sum(bits),
                  st.integers(min_value=0, max_value=FRAMES + 2),       # a frame or two past RAM's end too
                  st.lists(st.sampled_from(BITS), unique=True, max_size=len(BITS)))
# An entry a walk can go on through: present, usually writable and user, some of the other bits.
usable = st.builds(lambda frame, rights, bits: (frame << 12) | E.P | rights | sum(bits),
                   st.integers(min_value=0, max_value=FRAMES - 1),
                   st.sampled_from([E.RW | E.US, E.US, E.RW, E.RW | E.US | E.NX]),
                   st.lists(st.sampled_from([E.A, E.D, E.PS, E.NX]), unique=True, max_size=2))
# The walk of `va` reads slot (va >> shift) & 511 of each table: a few vas reach a few slots of many tables.
va = st.builds(lambda top, indices, offset: (top << 47) | sum(i << s for i, s in zip(indices, (39, 30, 21, 12),
                                                                                         strict=True)) | offset,
               st.sampled_from([0, 0x1FFFF, 1]),
               st.lists(st.integers(min_value=0, max_value=3), min_size=4, max_size=4),
               st.integers(min_value=0, max_value=4095))


def ram_with(entries: dict[int, int]) -> tuple[ctypes.Array, memoryview]:
    buffer = (ctypes.c_uint64 * QWORDS)()
    for slot, value in entries.items():
        buffer[slot] = value
    return buffer, memoryview(buffer).cast("B").cast("Q")


@st.composite
def tables_and_va(draw) -> tuple[dict[int, int], int, int]:
    """Tables in which the walk of the va drawn finds an entry at each level, more often than not present (a
    chain of four, of random bits, each pointing at a random frame), among random other entries."""
    address = draw(va)
    cr3 = draw(st.integers(min_value=0, max_value=FRAMES - 1))
    tables = draw(st.dictionaries(st.integers(min_value=0, max_value=QWORDS - 1), entry, max_size=8))
    frame = cr3
    for shift in (39, 30, 21, 12):
        if frame >= FRAMES:
            break       # past RAM's end: both walks raise IndexError there
        value = draw(st.one_of(entry, usable, usable, usable))
        tables[frame * 512 + ((address >> shift) & 0x1FF)] = value
        frame = (value >> 12) % FRAMES if draw(st.integers(min_value=0, max_value=19)) else FRAMES + 1
    return tables, cr3, address


@settings(max_examples=3000, deadline=None)
@given(case=tables_and_va(), access=st.sampled_from([mmu.READ, mmu.WRITE, mmu.FETCH]), user=st.booleans())
def test_the_c_walk_does_what_the_python_walk_does(case, access, user):
    tables, cr3, va = case
    reference_buffer, reference = ram_with(tables)
    native_buffer, _ = ram_with(tables)
    try:
        expected = mmu.walk(reference, cr3 << 12, va, access, user)
    except IndexError:
        expected = IndexError
    try:
        got = _native.walk(ctypes.addressof(native_buffer), QWORDS, cr3 << 12, va, access, user)
    except IndexError:
        got = IndexError
    assert got == expected
    assert bytes(native_buffer) == bytes(reference_buffer)      # the same A and D bits set, and no others


def test_a_walk_through_a_real_table_sets_a_and_d_as_the_reference():
    tables = {0: (1 << 12) | E.P | E.RW | E.US, 512: (2 << 12) | E.P | E.RW | E.US,
              1024: (3 << 12) | E.P | E.RW | E.US, 1536 + 5: (9 << 12) | E.P | E.RW | E.US | E.NX}
    buffer, _ = ram_with(tables)
    address = ctypes.addressof(buffer)
    assert _native.walk(address, QWORDS, 0, 5 << 12 | 0x123, mmu.READ) == (9 << 12, mmu.PROT_READ)
    assert buffer[1536 + 5] & (E.A | E.D) == E.A
    assert _native.walk(address, QWORDS, 0, 5 << 12, mmu.WRITE) == (9 << 12, mmu.PROT_READ | mmu.PROT_WRITE)
    assert buffer[1536 + 5] & E.D
    assert _native.walk(address, QWORDS, 0, 5 << 12, mmu.FETCH) == (-1, mmu.PF_P | mmu.PF_U | mmu.PF_I)
    assert _native.walk(address, QWORDS, 0, 6 << 12, mmu.READ, False) == (-1, 0)
    with pytest.raises(ValueError, match="access is 0"):
        _native.walk(address, QWORDS, 0, 0, 3)
