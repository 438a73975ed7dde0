"""Differential test: `emulator.mmu.walk` against QEMU's own x86-64 MMU.

The reference is a fresh Unicorn engine in its default `UC_TLB_CPU` mode, so
QEMU's `handle_mmu_fault` walks the page tables.  Both sides start from
byte-identical RAM; each probe is one access (read, write or instruction
fetch) made by our walker on one copy and by one real instruction on the
other, after which the two must agree on

- fault or no fault, and for a page fault on CR2 and the error code;
- for a load, the value loaded; for a fetch, what the fetched instruction
  did; for a store, where the stored bytes landed;
- after a successful walk, the TLB permissions it grants: each of read,
  write and fetch exactly when QEMU allows that access (asked on a scratch
  copy of RAM), write only once the leaf's D bit is set;
- every byte of RAM afterwards, which covers the A and D bits of every
  paging-structure entry at every level.

How the reference is set up:

- RAM (8 MiB) is one ctypes buffer mapped at physical 0 with `mem_map_ptr`.
  Paging is switched on by writing CR3, CR4.PAE, EFER (LME|LMA|NXE|SCE,
  through `UC_X86_REG_MSR`) and CR0 (PG|WP|PE).
- CPL 3: in 64-bit mode Unicorn's `reg_write` of CS or SS only stores the
  selector and leaves the CPL (which QEMU keeps in its hflags, from SS.DPL)
  at 0.  So a user probe starts on a real `sysretq` (STAR[63:48] = 0x10, so
  CS = 0x23 and SS = 0x1b; QEMU loads fixed DPL-3 descriptor caches without
  reading a GDT) and the probe instruction then runs at CPL 3 from a user
  page.  Supervisor probes (user=False; the walker supports it, the kernel
  does not use it) start on the probe instruction at CPL 0.
- The harness (PML4 slot 3, its tables, the code page) is mapped with A and
  D already set, so walking it never changes RAM.  Generated tables use PML4
  slots 0, 1, 2 and 511 and frames from a pool above the data region; leaves
  point only into the data region, whose 16-byte blocks each hold
  `mov rax, imm64` (imm64 = the block's own physical address) and `jmp $`:
  a load at block+2 reads that physical address, a fetch of the block puts
  it in rax.
- One fault per engine (unicorn issue 1883): the `UC_HOOK_INTR` hook records
  the first exception and stops the engine, and every probe gets a new one.
- QEMU keeps the page-fault error code in `env->error_code`, which no
  register id exposes, but which is part of the CPU context blob
  (`uc_context_save`) at an offset private to the build.  The test finds that
  offset once by calibration (faults whose error codes are certain) and
  compares error codes only when exactly one offset fits all of them.

Probes are generated to hit mapped, unmapped and partly mapped regions: random
tables (shared subtables, 4 KiB/2 MiB/1 GiB leaves, every permission bit,
A/D preset or not, ignored and PAT bits, reserved high address bits, PS in
a PML4 entry, misaligned large pages, garbage in non-present entries), and
sequences of up to six probes on them, so that one page meets several
accesses in turn (say a read, then the first write of a clean page).

Known, deliberate difference: for a non-canonical address QEMU raises #GP
(vector 13) while the walker reports a page fault (its callers only deal in
page faults); the test then only requires both to fault and RAM to be left
alone.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as X
from vmgames.emulator import mmu
from vmgames.emulator import pte as E
from vmgames.emulator.mmu import FETCH, READ, WRITE
from vmgames.emulator.ram import PhysicalMemory

# ---------------------------------------------------------------- the layout

RAM_SIZE = 8 << 20
DATA_END = 0x600000            # data region: physical [0, DATA_END), three 2 MiB pages
CR3 = 0x600000                 # the PML4
POOL_FIRST = 0x601000          # frames for generated tables, upwards
HARNESS_SLOT = 3               # PML4 index of the harness mapping
HARNESS_PDPT, HARNESS_PD, HARNESS_PT, CODE_FRAME = 0x7FC000, 0x7FD000, 0x7FE000, 0x7FF000
CODE_VA = HARNESS_SLOT << 39
PROBE_CODE = {                 # offset in the code page of each probe instruction
    READ: 0x10,                # mov rax, [rbx]
    WRITE: 0x20,               # mov [rbx], rdx
    FETCH: 0x30,               # jmp rbx
}
UNTIL = CODE_VA + 0xF00        # never executed
STORE_MAGIC = 0x5A17_C0DE_0BAD_F00D
DATA_OFFSET = 2                # a load/store at block+2 touches the block's imm64

EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1 << 0, 1 << 8, 1 << 10, 1 << 11
CR0_PE, CR0_ET, CR0_WP, CR0_PG = 1 << 0, 1 << 4, 1 << 16, 1 << 31
CR4_PAE = 1 << 5
MSR_EFER, MSR_STAR = 0xC0000080, 0xC0000081
VEC_GP, VEC_PF = 13, 14

INDICES = ((0, 1, 2, 511), (0, 1, 2), (0, 1, 2), (0, 1, 2))   # table slots used, per level
PRESENT_ALL = E.P | E.RW | E.US | E.A | E.D


def _initial_image() -> bytes:
    image = bytearray(RAM_SIZE)
    for block in range(0, DATA_END, 16):
        image[block:block + 16] = b"\x48\xb8" + struct.pack("<Q", block) + b"\xeb\xfe" + b"\x90" * 4
    for paddr, value in ((CR3 + 8 * HARNESS_SLOT, HARNESS_PDPT), (HARNESS_PDPT, HARNESS_PD),
                         (HARNESS_PD, HARNESS_PT), (HARNESS_PT, CODE_FRAME)):
        image[paddr:paddr + 8] = struct.pack("<Q", value | PRESENT_ALL)
    code = {0x00: "480f07",        # sysretq
            0x10: "488b03",        # mov rax, [rbx]
            0x20: "488913",        # mov [rbx], rdx
            0x30: "ffe3"}          # jmp rbx
    for offset, hex_bytes in code.items():
        insn = bytes.fromhex(hex_bytes)
        image[CODE_FRAME + offset:CODE_FRAME + offset + len(insn)] = insn
    return bytes(image)


INITIAL_IMAGE = _initial_image()


def canonical(va: int) -> int:
    return va | (0xFFFF << 48) if va & (1 << 47) else va


def va_of(indices: tuple[int, ...], offset: int = 0) -> int:
    va = offset
    for level, index in enumerate(indices):
        va |= index << (39 - 9 * level)
    return canonical(va)


def image_with(entries: dict[int, int]) -> bytes:
    image = bytearray(INITIAL_IMAGE)
    for paddr, value in entries.items():
        image[paddr:paddr + 8] = struct.pack("<Q", value)
    return bytes(image)


# ------------------------------------------- the reference: QEMU's x86 MMU


@dataclass
class Outcome:
    vector: int | None          # exception vector; None when the access completed
    cr2: int = 0
    blob: bytes = b""           # the CPU context at the exception
    rax: int = 0


class Reference:
    """RAM that a fresh Unicorn engine maps for each probe."""

    def __init__(self, image: bytes) -> None:
        self.buffer = ctypes.create_string_buffer(image, RAM_SIZE)

    def snapshot(self) -> bytes:
        return ctypes.string_at(self.buffer, RAM_SIZE)

    def copy_to(self, other: Reference) -> Reference:
        ctypes.memmove(other.buffer, self.buffer, RAM_SIZE)
        return other

    def probe(self, address: int, access: int, user: bool) -> Outcome:
        """One access at the byte address `address`, at CPL 3 when `user`."""
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map_ptr(0, RAM_SIZE, UC_PROT_ALL, ctypes.addressof(self.buffer))
        uc.reg_write(X.UC_X86_REG_CR3, CR3)
        uc.reg_write(X.UC_X86_REG_CR4, uc.reg_read(X.UC_X86_REG_CR4) | CR4_PAE)
        uc.reg_write(X.UC_X86_REG_MSR, (MSR_EFER, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PG | CR0_WP | CR0_ET | CR0_PE)
        uc.reg_write(X.UC_X86_REG_MSR, (MSR_STAR, 0x10 << 48))
        efer = uc.reg_read(X.UC_X86_REG_MSR, MSR_EFER)
        assert efer & (EFER_NXE | EFER_LMA | EFER_SCE) == EFER_NXE | EFER_LMA | EFER_SCE, hex(efer)
        probe_va = CODE_VA + PROBE_CODE[access]
        uc.reg_write(X.UC_X86_REG_RCX, probe_va)       # where sysretq goes
        uc.reg_write(X.UC_X86_REG_R11, 0x2)            # the rflags it loads
        uc.reg_write(X.UC_X86_REG_RBX, address)
        uc.reg_write(X.UC_X86_REG_RDX, STORE_MAGIC)
        seen: list[Outcome] = []

        def on_interrupt(uc: Uc, vector: int, _data: object) -> None:
            if not seen:
                context = uc.context_save()
                blob = ctypes.string_at(context.context, context.size)
                seen.append(Outcome(vector, uc.reg_read(X.UC_X86_REG_CR2), blob))
            uc.emu_stop()

        uc.hook_add(UC_HOOK_INTR, on_interrupt)
        # sysretq (if user), the probe, and for a fetch the instruction fetched.
        count = user + 1 + (access == FETCH)
        uc.emu_start(CODE_VA if user else probe_va, UNTIL, count=count)
        if seen:
            return seen[0]
        cs = uc.reg_read(X.UC_X86_REG_CS)
        assert cs & 3 == (3 if user else 0), f"the probe ran with CS={cs:#x}"
        return Outcome(None, rax=uc.reg_read(X.UC_X86_REG_RAX))


@functools.cache
def error_code_offset() -> int | None:
    """Where `env->error_code` sits in the context blob, found from faults
    whose error codes are certain; None unless exactly one offset fits."""
    U, W, P, I, RSVD = mmu.PF_U, mmu.PF_W, mmu.PF_P, mmu.PF_I, mmu.PF_RSVD
    cases = [  # (leaf PTE, access, user, error code)
        (0, READ, True, U),
        (0, WRITE, True, U | W),
        (0, FETCH, True, U | I),
        (E.P | E.RW, READ, True, U | P),
        (E.P | E.US | E.D, WRITE, True, U | W | P),
        (E.P | E.US | E.NX, FETCH, True, U | I | P),
        (E.P | E.RW | E.US | (1 << 45), READ, True, U | P | RSVD),
        (0, READ, False, 0),
        (E.P | E.US | E.D, WRITE, False, W | P),
    ]
    pdpt, pd, pt = POOL_FIRST, POOL_FIRST + 0x1000, POOL_FIRST + 0x2000
    candidates: set[int] | None = None
    for leaf, access, user, expected in cases:
        image = image_with({CR3: pdpt | E.P | E.RW | E.US, pdpt: pd | E.P | E.RW | E.US,
                            pd: pt | E.P | E.RW | E.US, pt: 0x1000 | leaf})
        outcome = Reference(image).probe(0 if access == FETCH else DATA_OFFSET, access, user)
        if outcome.vector != VEC_PF:
            return None
        blob = outcome.blob
        fits = {at for at in range(0, len(blob) - 3, 4) if struct.unpack_from("<i", blob, at)[0] == expected}
        candidates = fits if candidates is None else candidates & fits
    return candidates.pop() if candidates and len(candidates) == 1 else None


def test_error_code_is_readable_from_qemu():
    """If this fails, Unicorn's private layout changed: the differential test
    still compares faults and RAM, but no longer error codes."""
    assert error_code_offset() is not None


# ---------------------------------------------------- running both sides


def describe_entry(value: int) -> str:
    return f"{value:#018x} [{E.describe(value)}]"


_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def assert_same_ram(ours: PhysicalMemory, ref: Reference, what: str) -> None:
    if _memcmp(ours.address, ctypes.addressof(ref.buffer), RAM_SIZE) == 0:
        return
    theirs = ref.snapshot()
    mine = bytes(ours.bytes)
    lines = []
    for at in range(0, RAM_SIZE, 8):
        if mine[at:at + 8] != theirs[at:at + 8]:
            a, b = struct.unpack_from("<Q", mine, at)[0], struct.unpack_from("<Q", theirs, at)[0]
            region = "table" if at >= CR3 else "data"
            lines.append(f"  {region} qword at {at:#x}: walker {describe_entry(a)}  QEMU {describe_entry(b)}")
            if len(lines) == 8:
                break
    pytest.fail(f"{what}: RAM differs afterwards\n" + "\n".join(lines))


@functools.cache
def _scratch() -> Reference:
    return Reference(b"")


def permissions(ref: Reference, probe: Probe, ours: PhysicalMemory) -> int:
    """The TLB permissions the walker should grant for the page of `probe`
    now: each access QEMU allows on a scratch copy of the RAM, but write only
    once the leaf's D bit is set."""
    prot = 0
    for access, bit in ((READ, mmu.PROT_READ), (WRITE, mmu.PROT_WRITE), (FETCH, mmu.PROT_EXEC)):
        address = probe.va + (0 if access == FETCH else DATA_OFFSET)
        if ref.copy_to(_scratch()).probe(address, access, probe.user).vector is None:
            prot |= bit
    _, _, leaf = mmu.walk_entries(ours.qwords, CR3, probe.va)[-1]
    return prot if leaf & E.D else prot & ~mmu.PROT_WRITE


@dataclass
class Probe:
    va: int                      # a 16-byte block
    access: int
    user: bool = True

    def __str__(self) -> str:
        return f"{'user' if self.user else 'supervisor'} {mmu.ACCESS_NAMES[self.access]} of {self.va:#x}"


def run_both(image: bytes, probes: list[Probe]) -> tuple[list[tuple[tuple[int, int], Outcome]], PhysicalMemory]:
    """Make each probe on both sides in turn, checking they agree; returns
    the (walker result, QEMU outcome) of each probe, and our RAM at the end."""
    ours = PhysicalMemory(RAM_SIZE)
    ours.bytes[:] = image
    ref = Reference(image)
    offset = error_code_offset()
    results = []
    for step, probe in enumerate(probes):
        what = f"probe {step} ({probe})"
        address = probe.va + (0 if probe.access == FETCH else DATA_OFFSET)
        read = mmu.walk_entries(ours.qwords, CR3, address)     # the debuggers' view must not fail either
        assert all(ours.qwords[at >> 3] == value for _, at, value in read)
        paddr, detail = mmu.walk(ours.qwords, CR3, address, probe.access, probe.user)
        outcome = ref.probe(address, probe.access, probe.user)
        if paddr < 0:
            assert outcome.vector is not None, (
                f"{what}: the walker faults (error {detail:#x}) but QEMU completes the access")
            if mmu.is_canonical(address):
                assert outcome.vector == VEC_PF, f"{what}: QEMU raised vector {outcome.vector}"
                assert outcome.cr2 == address, f"{what}: QEMU's CR2 is {outcome.cr2:#x}"
                if offset is not None:
                    theirs = struct.unpack_from("<i", outcome.blob, offset)[0]
                    assert detail == theirs, f"{what}: error code: walker {detail:#x}, QEMU {theirs:#x}"
            else:
                assert outcome.vector == VEC_GP, f"{what}: QEMU raised vector {outcome.vector}"
        else:
            assert outcome.vector is None, (
                f"{what}: the walker gives {paddr:#x} prot {detail} but QEMU raises vector "
                f"{outcome.vector} (CR2 {outcome.cr2:#x})")
            needed = (mmu.PROT_READ, mmu.PROT_WRITE, mmu.PROT_EXEC)[probe.access]
            assert detail & needed, f"{what}: the walker succeeds without granting the access (prot {detail})"
            assert detail == permissions(ref, probe, ours), f"{what}: the walker grants the TLB prot {detail}"
            where = paddr | (address & 0xFFF)
            if probe.access == WRITE:
                ours.bytes[where:where + 8] = struct.pack("<Q", STORE_MAGIC)
            else:
                imm = where + (2 if probe.access == FETCH else 0)
                expected = struct.unpack_from("<Q", ours.bytes, imm)[0]
                assert outcome.rax == expected, (
                    f"{what}: QEMU got {outcome.rax:#x}, the walker's frame {paddr:#x} holds {expected:#x}")
        assert_same_ram(ours, ref, what)
        results.append(((paddr, detail), outcome))
    return results, ours


# ---------------------------------------------- random page tables (hypothesis)

RESERVED_BITS = [1 << bit for bit in range(40, 52)]        # above QEMU's 40 physical address bits
IGNORED_BITS = [E.PWT, E.PCD, E.G, E.SW0, E.SW1, E.SW2] + [1 << bit for bit in range(52, 59)]


def one_in(draw, n: int) -> bool:
    """True with probability about 1/n.  (Not `== 0`: Hypothesis favours
    boundary values, so 0 comes up far more often than 1/n.)"""
    return draw(st.integers(0, n - 1)) == 1


@st.composite
def flag_bits(draw, level: int, leaf: bool) -> int:
    # Permissions mostly granted, so that many walks get to the leaf.
    odds = 4 if leaf else 8
    value = E.P
    if not one_in(draw, odds):
        value |= E.RW
    if not one_in(draw, odds):
        value |= E.US
    if one_in(draw, odds):
        value |= E.NX
    value |= draw(st.sampled_from([0, E.A, E.D, E.A | E.D]))
    ignored = draw(st.integers(0, (1 << len(IGNORED_BITS)) - 1))
    value |= sum(bit for n, bit in enumerate(IGNORED_BITS) if ignored >> n & 1)
    if level == 3 and draw(st.booleans()):
        value |= 1 << 7                                      # PAT in a PTE
    if one_in(draw, 32):
        value |= draw(st.sampled_from(RESERVED_BITS + ([E.PS] if level == 0 else [])))
    return value


class Entries(dict):
    """Paging-structure entries to write over the initial image: paddr -> value."""

    def __repr__(self) -> str:
        return "Entries({" + ", ".join(f"{at:#x}: {describe_entry(v)}" for at, v in sorted(self.items())) + "})"

    def image(self) -> bytes:
        return image_with(self)


@st.composite
def page_tables(draw) -> tuple[Entries, list[tuple[int, ...]]]:
    """Random tables under PML4 slots 0, 1, 2, 511: returns their entries and
    the index paths of the leaves built."""
    entries = Entries()
    leaves: list[tuple[int, ...]] = []
    built: dict[int, list[int]] = {1: [], 2: [], 3: []}     # level -> table frames
    next_frame = [POOL_FIRST]

    def table(level: int, path: tuple[int, ...], frame: int) -> None:
        for index in INDICES[level]:
            if level == 0:
                kinds = ["absent", "table"]
            else:
                kinds = ["absent", "table", "leaf"] if level < 3 else ["absent", "leaf"]
            kind = draw(st.sampled_from(kinds))
            slot = frame + 8 * index
            if kind == "absent":
                if draw(st.booleans()):
                    entries[slot] = draw(st.integers(0, (1 << 64) - 1)) & ~E.P
                continue
            value = draw(flag_bits(level, kind == "leaf"))
            if kind == "table":
                if built[level + 1] and one_in(draw, 4):
                    value |= draw(st.sampled_from(built[level + 1]))
                    entries[slot] = value
                    continue
                child = next_frame[0]
                next_frame[0] += 0x1000
                built[level + 1].append(child)
                entries[slot] = value | child
                table(level + 1, path + (index,), child)
                continue
            if level == 3:
                value |= draw(st.integers(0, DATA_END // 4096 - 1)) << 12
            else:
                value |= E.PS
                value |= draw(st.sampled_from([0, 0x200000, 0x400000])) if level == 2 else 0
                if draw(st.booleans()):
                    value |= 1 << 12                          # PAT in a large page
                if one_in(draw, 8):                           # misaligned frame: reserved
                    size_bits = 30 if level == 1 else 21
                    value |= 1 << draw(st.integers(13, size_bits - 1))
            entries[slot] = value
            leaves.append(path + (index,))

    table(0, (), CR3)
    assert next_frame[0] <= HARNESS_PDPT
    return entries, leaves


@st.composite
def probe(draw, leaves: list[tuple[int, ...]]) -> Probe:
    kinds = ["leaf"] * 6 if leaves else []
    kind = draw(st.sampled_from(kinds + ["anywhere"] * 3 + ["noncanonical"]))
    if kind == "leaf":
        path = draw(st.sampled_from(leaves))
    else:
        path = ()
    indices = list(path) + [draw(st.sampled_from(INDICES[level])) for level in range(len(path), 4)]
    va = va_of(tuple(indices), draw(st.integers(0, 255)) * 16)
    if kind == "noncanonical":
        va = (va & ((1 << 48) - 1)) ^ (1 << 47) | (draw(st.integers(1, 0xFFFE)) << 48)
    access = draw(st.sampled_from([READ, WRITE, FETCH]))
    user = not one_in(draw, 4)
    return Probe(va, access, user)


@st.composite
def scenarios(draw) -> tuple[Entries, list[Probe]]:
    entries, leaves = draw(page_tables())
    probes = draw(st.lists(probe(leaves), min_size=1, max_size=6))
    return entries, probes


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_walker_agrees_with_qemu_on_random_tables(scenario):
    entries, probes = scenario
    run_both(entries.image(), probes)


# --------------------------------------------------------- explicit cases

PDPT, PD, PT = POOL_FIRST, POOL_FIRST + 0x1000, POOL_FIRST + 0x2000
UPPER = E.P | E.RW | E.US


def four_k(leaf: int, pml4: int = UPPER, pdpt: int = UPPER, pd: int = UPPER) -> bytes:
    """VA 0x1000 mapped by one PTE to the frame in `leaf`."""
    return image_with({CR3: PDPT | pml4, PDPT: PD | pdpt, PD: PT | pd, PT + 8: leaf})


def entry_at(ram: PhysicalMemory, paddr: int) -> int:
    return ram.qwords[paddr >> 3]


def test_read_of_clean_page_sets_a_then_first_write_sets_d():
    image = four_k(0x5000 | E.P | E.RW | E.US)
    ((read, _),), ram = run_both(image, [Probe(0x1000, READ)])
    assert read == (0x5000, mmu.PROT_READ | mmu.PROT_EXEC)              # no write until D is set
    assert entry_at(ram, PT + 8) & (E.A | E.D) == E.A
    assert all(entry_at(ram, at) & E.A for at in (CR3, PDPT, PD))
    steps, ram = run_both(image, [Probe(0x1000, READ), Probe(0x1000, WRITE), Probe(0x1000, READ)])
    assert [result for result, _ in steps] == [(0x5000, mmu.PROT_READ | mmu.PROT_EXEC)] + [(0x5000, 7)] * 2
    assert entry_at(ram, PT + 8) & (E.A | E.D) == E.A | E.D


def test_nx_fetch_faults_with_i_bit():
    steps, _ = run_both(four_k(0x5000 | E.P | E.US | E.NX), [Probe(0x1000, FETCH), Probe(0x1000, READ)])
    (fetch, outcome), (read, _) = steps
    assert fetch == (-1, mmu.PF_P | mmu.PF_U | mmu.PF_I) and outcome.vector == VEC_PF
    assert read == (0x5000, mmu.PROT_READ)


def test_nx_in_an_upper_level_applies_below():
    ((result, _),), _ = run_both(four_k(0x5000 | E.P | E.US, pdpt=UPPER | E.NX), [Probe(0x1000, FETCH)])
    assert result == (-1, mmu.PF_P | mmu.PF_U | mmu.PF_I)


def test_us_clear_at_an_upper_level_faults_user_but_not_supervisor():
    image = four_k(0x5000 | E.P | E.RW | E.US, pml4=E.P | E.RW)
    steps, _ = run_both(image, [Probe(0x1000, READ), Probe(0x1000, READ, user=False)])
    assert steps[0][0] == (-1, mmu.PF_P | mmu.PF_U)
    assert steps[1][0][0] == 0x5000


def test_user_fault_sets_upper_a_bits_but_not_the_leafs():
    ((result, _),), ram = run_both(four_k(0x5000 | E.P | E.RW, pd=UPPER), [Probe(0x1000, READ)])
    assert result == (-1, mmu.PF_P | mmu.PF_U)
    assert [entry_at(ram, at) & E.A for at in (CR3, PDPT, PD, PT + 8)] == [E.A, E.A, E.A, 0]


def test_supervisor_write_to_read_only_page_faults_with_wp():
    ((result, _),), _ = run_both(four_k(0x5000 | E.P | E.D), [Probe(0x1000, WRITE, user=False)])
    assert result == (-1, mmu.PF_P | mmu.PF_W)


def test_two_mib_page():
    va = va_of((0, 0, 1, 3), 0x120)
    image = image_with({CR3: PDPT | UPPER, PDPT: PD | UPPER, PD + 8: 0x400000 | E.PS | E.P | E.RW | E.US})
    steps, ram = run_both(image, [Probe(va, READ), Probe(va, WRITE)])
    assert steps[0][0][0] == 0x403000
    assert entry_at(ram, PD + 8) & (E.A | E.D) == E.A | E.D


def test_one_gib_page():
    va = va_of((0, 2, 1, 7), 0x40)
    image = image_with({CR3: PDPT | UPPER, PDPT + 16: E.PS | E.P | E.RW | E.US | (1 << 12)})   # PAT: not reserved
    steps, ram = run_both(image, [Probe(va, FETCH), Probe(va, WRITE)])
    assert steps[0][0] == (0x207000, mmu.PROT_READ | mmu.PROT_EXEC)
    assert entry_at(ram, PDPT + 16) & (E.A | E.D) == E.A | E.D


def test_one_gib_page_sets_its_a_bit_even_when_the_access_faults():
    """QEMU sets a PDPT entry's A before seeing that it maps a 1 GiB page."""
    image = image_with({CR3: PDPT | UPPER, PDPT + 16: E.PS | E.P | E.RW})    # no U/S
    ((result, _),), ram = run_both(image, [Probe(va_of((0, 2, 1, 0)), READ)])
    assert result == (-1, mmu.PF_P | mmu.PF_U)
    assert entry_at(ram, PDPT + 16) & E.A


def test_misaligned_large_page_is_a_reserved_bit_fault():
    image = image_with({CR3: PDPT | UPPER, PDPT: PD | UPPER,
                        PD: 0x200000 | (1 << 13) | E.PS | E.P | E.RW | E.US})
    ((result, _),), ram = run_both(image, [Probe(0x1000, READ)])
    assert result == (-1, mmu.PF_P | mmu.PF_U | mmu.PF_RSVD)
    assert not entry_at(ram, PD) & E.A


def test_physical_address_bit_above_maxphyaddr_is_reserved():
    ((result, _),), ram = run_both(four_k(0x5000 | E.P | E.RW | E.US, pd=UPPER | (1 << 40)),
                                   [Probe(0x1000, READ)])
    assert result == (-1, mmu.PF_P | mmu.PF_U | mmu.PF_RSVD)
    assert not entry_at(ram, PD) & E.A


def test_non_canonical_address_faults_on_both_sides():
    ((result, outcome),), _ = run_both(four_k(0x5000 | E.P | E.RW | E.US), [Probe(0x0000_8000_0000_1000, READ)])
    assert result[0] == -1 and outcome.vector == VEC_GP
