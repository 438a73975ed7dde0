"""The CPU model the guest sees, and every answer its CPUID instruction gives.

The engine runs Unicorn's SandyBridge model, not its default Haswell, because
of RDRAND (facts measured on Unicorn 2.1.4; qemu/target/i386 in its source):

- Haswell implements RDRAND and, although its CPUID does not advertise it,
  RDSEED too: QEMU decodes both (0F C7 /6 and /7) to one helper, allowed
  whenever the model has the RDRAND feature.  The helper's bytes come from a
  per-thread GLib generator seeded from the host's /dev/urandom, and no
  hook can reach it (UC_HOOK_INSN accepts only IN, OUT, SYSCALL, SYSENTER,
  CPUID, RDTSC and RDTSCP on x86).  A model without RDRAND raises #UD for
  both, which the machine catches and answers from a seeded generator
  (emulator/determinism.py).
- SandyBridge is the newest of Unicorn's Intel models without RDRAND.  Under
  QEMU's TCG (which drops what it cannot emulate, AVX among it) it lacks,
  against Haswell: MOVBE, LZCNT, BMI1, BMI2, FSGSBASE, ERMS and SMEP.  It
  keeps everything x86-64-v2 needs (CX16, LAHF/SAHF, POPCNT, SSE3, SSSE3,
  SSE4.1, SSE4.2) and AES, PCLMULQDQ, XSAVE, RDTSCP and NX.
- Unicorn's CPUID answers come from the model's tables, not the host
  (`accel_uses_host_cpuid()` is false and no cache passthrough is set), but
  the machine answers CPUID itself from the table below, so that the answers
  are fixed here whatever Unicorn version is installed, and agree with what
  the machine emulates.  The table is the model's answers with three bits
  added: RDRAND (leaf 1 ECX bit 30) and RDSEED (leaf 7 EBX bit 18), which the
  machine emulates, and the invariant TSC (leaf 0x80000007 EDX bit 8), since
  the TSC is virtual time, which runs at one rate, idle or not.
"""

from __future__ import annotations

from unicorn import x86_const as X

UNICORN_MODEL = X.UC_CPU_X86_SANDYBRIDGE

LEAF1_ECX_RDRAND = 1 << 30
LEAF7_EBX_RDSEED = 1 << 18
LEAF_80000007_EDX_INVARIANT_TSC = 1 << 8

MAX_BASIC_LEAF = 0xD
MAX_EXTENDED_LEAF = 0x8000_0008

# Leaves whose answer depends on the subleaf in ECX; every other leaf ignores ECX.
_SUBLEAF_LEAVES = frozenset({0x4, 0x7, 0xB, 0xD})

# (leaf, subleaf) -> (eax, ebx, ecx, edx), as Unicorn 2.1.4's SandyBridge model
# answers them.  A (leaf, subleaf) not listed here but within range is zero.
MODEL_LEAVES: dict[tuple[int, int], tuple[int, int, int, int]] = {
    (0x0, 0): (0x0000000D, 0x756E6547, 0x6C65746E, 0x49656E69),   # max leaf 0xD, "GenuineIntel"
    (0x1, 0): (0x000206A1, 0x00000800, 0x8E982203, 0x078BFBFD),   # family 6 model 42; APIC id 0
    (0x2, 0): (0x00000001, 0x00000000, 0x00000000, 0x002C307D),   # cache descriptors
    (0x4, 0): (0x00000121, 0x01C0003F, 0x0000003F, 0x00000001),   # L1 data cache
    (0x4, 1): (0x00000122, 0x01C0003F, 0x0000003F, 0x00000001),   # L1 instruction cache
    (0x4, 2): (0x00000143, 0x03C0003F, 0x00000FFF, 0x00000001),   # L2 cache
    (0x5, 0): (0x00000000, 0x00000000, 0x00000003, 0x00000000),   # MONITOR/MWAIT
    (0x6, 0): (0x00000004, 0x00000000, 0x00000000, 0x00000000),   # ARAT
    (0xD, 0): (0x00000007, 0x00000240, 0x00000340, 0x00000000),   # XSAVE: x87, SSE, AVX state
    (0xD, 1): (0x00000001, 0x00000000, 0x00000000, 0x00000000),   # XSAVEOPT
    (0xD, 2): (0x00000100, 0x00000240, 0x00000000, 0x00000000),   # AVX state: size, offset
    (0x8000_0000, 0): (0x80000008, 0x756E6547, 0x6C65746E, 0x49656E69),
    (0x8000_0001, 0): (0x000206A1, 0x00000000, 0x00000001, 0x28100800),   # LAHF; SYSCALL, NX, RDTSCP, LM
    (0x8000_0002, 0): (0x65746E49, 0x6558206C, 0x45206E6F, 0x78323133),   # "Intel Xeon E312xx (Sandy Bridge)"
    (0x8000_0003, 0): (0x53282078, 0x79646E61, 0x69724220, 0x29656764),
    (0x8000_0005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),   # L1 caches and TLBs
    (0x8000_0006, 0): (0x00000000, 0x42004200, 0x02008140, 0x00000000),   # L2 cache and TLBs
    (0x8000_0008, 0): (0x00003028, 0x00000000, 0x00000000, 0x00000000),   # 40 physical, 48 virtual address bits
}


def _with_emulated_features(leaves: dict[tuple[int, int], tuple[int, int, int, int]]):
    """The model's answers with the features the machine adds (see the module's docstring)."""
    table = dict(leaves)
    eax, ebx, ecx, edx = table[(0x1, 0)]
    table[(0x1, 0)] = (eax, ebx, ecx | LEAF1_ECX_RDRAND, edx)
    eax, ebx, ecx, edx = table.get((0x7, 0), (0, 0, 0, 0))
    table[(0x7, 0)] = (eax, ebx | LEAF7_EBX_RDSEED, ecx, edx)
    eax, ebx, ecx, edx = table.get((0x8000_0007, 0), (0, 0, 0, 0))
    table[(0x8000_0007, 0)] = (eax, ebx, ecx, edx | LEAF_80000007_EDX_INVARIANT_TSC)
    return table


LEAVES = _with_emulated_features(MODEL_LEAVES)


def cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """EAX, EBX, ECX and EDX for CPUID with `leaf` in EAX and `subleaf` in ECX (low 32 bits of each).

    A leaf past the last basic or extended one answers as the last basic leaf
    does, as Intel documents and the model behaves; 0x40000000-0x40000001
    (where a hypervisor would name itself) are zero.
    """
    leaf &= 0xFFFF_FFFF
    in_range = (leaf <= MAX_BASIC_LEAF or 0x4000_0000 <= leaf <= 0x4000_0001
                or 0x8000_0000 <= leaf <= MAX_EXTENDED_LEAF)
    if not in_range:
        leaf = MAX_BASIC_LEAF
    subleaf = subleaf & 0xFFFF_FFFF if leaf in _SUBLEAF_LEAVES else 0
    return LEAVES.get((leaf, subleaf), (0, 0, 0, 0))
