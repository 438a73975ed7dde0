"""x86-64 page-table entry format (Intel SDM vol. 3, 4.5), shared by the
hardware walker and the kernel's pmap."""

P = 1 << 0          # present
RW = 1 << 1         # writable
US = 1 << 2         # user-accessible
PWT = 1 << 3
PCD = 1 << 4
A = 1 << 5          # accessed: set by the walker on any use
D = 1 << 6          # dirty: set by the walker on a write (leaf only)
PS = 1 << 7         # large page (in a PDPT or PD entry)
G = 1 << 8
SW0 = 1 << 9        # bits 9-11 are ignored by hardware and free for the kernel
SW1 = 1 << 10
SW2 = 1 << 11
NX = 1 << 63        # no-execute (EFER.NXE is always on)

ADDR_MASK = 0x000F_FFFF_FFFF_F000
# MAXPHYADDR.  QEMU's TCG x86-64 CPU (Unicorn 2.1) has 40 physical address
# bits (TCG_PHYS_ADDR_BITS, what its CPUID reports), so bits 40-51 of an entry
# are reserved: the walk faults with RSVD rather than follow them.
PHYS_BITS = 40
RESERVED_MASK = ADDR_MASK & ~((1 << PHYS_BITS) - 1)

LEVEL_NAMES = ("PML4", "PDPT", "PD", "PT")


def frame_of(entry: int) -> int:
    """The physical frame number an entry points at."""
    return (entry & ADDR_MASK) >> 12


def describe(entry: int) -> str:
    """Flags of an entry as letters, e.g. 'P W U A D NX'."""
    names = [(P, "P"), (RW, "W"), (US, "U"), (PWT, "PWT"), (PCD, "PCD"), (A, "A"),
             (D, "D"), (PS, "PS"), (G, "G"), (NX, "NX")]
    return " ".join(name for bit, name in names if entry & bit) or "-"
