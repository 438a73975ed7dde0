"""The MMU: a walker of x86-64 4-level page tables that live in RAM.

It behaves as the hardware does (Intel SDM vol. 3, 4.5-4.7), and as QEMU's
x86 MMU (which Unicorn embeds) does where the manual leaves room:
- A is set in each upper-level entry as the walk passes it, even when a
  lower level then faults; the leaf's A (and D) only when the access is
  allowed -- except that a PDPT entry gets its A before the walk sees that
  its PS bit makes it a 1 GiB leaf, so a 1 GiB page's A is set even when
  the access then faults (QEMU does exactly this; we match it);
- D is set only by a write, and write permission is granted to the TLB only
  once D is set, so the first write to a clean page misses the TLB again;
- U/S and R/W are the AND of all levels, NX the OR (EFER.NXE is on);
  CR0.WP is on, so R/W binds supervisor accesses too;
- reserved bits fault with RSVD in the error code: address bits at and above MAXPHYADDR (`pte.PHYS_BITS`, 40 as in
  QEMU), a PS bit in a PML4 entry, and the low address bits of a large page
  (bit 12, PAT, excepted);
- a non-canonical address faults without touching any entry.  The hardware
  raises #GP there, not #PF; this walker can only report a page fault, with
  no P bit.
`tests/test_mmu_reference.py` holds all of this against QEMU's own walker.
"""

from __future__ import annotations

from vmgames.emulator import pte as E

READ, WRITE, FETCH = 0, 1, 2
ACCESS_NAMES = ("read", "write", "fetch")

# Page-fault error code bits (SDM 4.7).
PF_P = 1 << 0      # the page was present: a protection violation
PF_W = 1 << 1      # the access was a write
PF_U = 1 << 2      # the access came from user mode
PF_RSVD = 1 << 3   # a reserved bit was set in a paging-structure entry
PF_I = 1 << 4      # the access was an instruction fetch

# Permissions the TLB is given, in Unicorn's UC_PROT_* encoding.
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

_INDEX = 0x1FF


def is_canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == 0x1FFFF


def walk(qwords: memoryview, cr3: int, va: int, access: int, user: bool = True) -> tuple[int, int]:
    """Translate `va` for one access, as the hardware would.

    Returns (physical address of the 4 KiB page, TLB permissions) on success,
    or (-1, page-fault error code) when the access faults.  A/D bits are
    updated in RAM exactly as the hardware updates them.
    """
    base_error = (PF_W if access == WRITE else 0) | (PF_U if user else 0) | (PF_I if access == FETCH else 0)
    if not is_canonical(va):
        return -1, base_error

    slot = ((cr3 & E.ADDR_MASK) >> 3) + ((va >> 39) & _INDEX)
    entry = qwords[slot]
    if not entry & E.P:
        return -1, base_error
    if entry & (E.RESERVED_MASK | E.PS):
        return -1, base_error | PF_P | PF_RSVD
    if not entry & E.A:
        entry |= E.A
        qwords[slot] = entry
    allowed = entry ^ E.NX

    slot = ((entry & E.ADDR_MASK) >> 3) + ((va >> 30) & _INDEX)
    entry = qwords[slot]
    if not entry & E.P:
        return -1, base_error
    if entry & E.RESERVED_MASK:
        return -1, base_error | PF_P | PF_RSVD
    allowed &= entry ^ E.NX
    if not entry & E.A:
        entry |= E.A
        qwords[slot] = entry
    if entry & E.PS:
        return _leaf(qwords, slot, entry, allowed, va, 1 << 30, access, user, base_error)

    slot = ((entry & E.ADDR_MASK) >> 3) + ((va >> 21) & _INDEX)
    entry = qwords[slot]
    if not entry & E.P:
        return -1, base_error
    if entry & E.RESERVED_MASK:
        return -1, base_error | PF_P | PF_RSVD
    allowed &= entry ^ E.NX
    if entry & E.PS:
        return _leaf(qwords, slot, entry, allowed, va, 1 << 21, access, user, base_error)
    if not entry & E.A:
        entry |= E.A
        qwords[slot] = entry

    slot = ((entry & E.ADDR_MASK) >> 3) + ((va >> 12) & _INDEX)
    entry = qwords[slot]
    if not entry & E.P:
        return -1, base_error
    if entry & E.RESERVED_MASK:
        return -1, base_error | PF_P | PF_RSVD
    allowed &= entry ^ E.NX
    return _leaf(qwords, slot, entry, allowed, va, 1 << 12, access, user, base_error)


def _leaf(qwords: memoryview, slot: int, entry: int, allowed: int, va: int, page_size: int,
          access: int, user: bool, base_error: int) -> tuple[int, int]:
    """Check the combined permissions, then set A/D in the leaf entry."""
    if entry & ((page_size - 1) & E.ADDR_MASK & ~(1 << 12)):
        return -1, base_error | PF_P | PF_RSVD
    allowed ^= E.NX
    if user and not allowed & E.US:
        return -1, base_error | PF_P
    # CR0.WP is set, so R/W binds supervisor accesses too.
    prot = PROT_READ | (PROT_WRITE if allowed & E.RW else 0)
    if not allowed & E.NX:
        prot |= PROT_EXEC
    needed = (PROT_READ, PROT_WRITE, PROT_EXEC)[access]
    if not prot & needed:
        return -1, base_error | PF_P
    dirty = access == WRITE and not entry & E.D
    if not entry & E.A or dirty:
        entry |= E.A | (E.D if dirty else 0)
        qwords[slot] = entry
    if not entry & E.D:
        prot &= ~PROT_WRITE
    frame_base = entry & E.ADDR_MASK & ~(page_size - 1)
    return frame_base | (va & (page_size - 1) & ~0xFFF), prot


def walk_entries(qwords: memoryview, cr3: int, va: int) -> list[tuple[str, int, int]]:
    """The entries a walk of `va` reads, top down, without changing any bit:
    (level name, physical address of the entry, its value).  For debuggers."""
    result = []
    table = cr3 & E.ADDR_MASK
    for level, shift in enumerate((39, 30, 21, 12)):
        paddr = table + (((va >> shift) & _INDEX) << 3)
        entry = qwords[paddr >> 3]
        result.append((E.LEVEL_NAMES[level], paddr, entry))
        # The walk ends at a non-present entry, a reserved bit (PS is
        # reserved in a PML4 entry) or a large-page leaf.
        if not entry & E.P or entry & (E.RESERVED_MASK | E.PS):
            break
        table = entry & E.ADDR_MASK
    return result


def leaf_entry(qwords: memoryview, cr3: int, va: int) -> int:
    """The PTE that maps `va` under `cr3` now, read without setting any bit; 0 if the walk stops before a leaf."""
    entries = walk_entries(qwords, cr3, va)
    return entries[-1][2] if len(entries) == 4 else 0


def read_virtual(qwords: memoryview, memory: memoryview, cr3: int, va: int, length: int) -> bytes:
    """What a program under `cr3` would read at `va`, up to the first byte no present PTE maps.

    It faults nothing in and sets no A bit: for messages, debuggers and the clock, not for the kernel's copyin.
    """
    out = bytearray()
    while len(out) < length:
        leaf = leaf_entry(qwords, cr3, va)
        if not leaf & E.P:
            break
        paddr = (leaf & E.ADDR_MASK) | (va & 0xFFF)
        n = min(length - len(out), 4096 - (va & 0xFFF))
        out += memory[paddr:paddr + n]
        va += n
    return bytes(out)
