"""The instructions that would read the host, answered from virtual time and a seed.

Two runs of one program must give the same bytes, so nothing the guest can
read may come from the host.  Left to Unicorn 2.1.4 (facts measured; its
qemu/target/i386/misc_helper.c, int_helper.c and cpu.c), five instructions
leak:

- rdtsc and rdtscp return the host's own TSC (`cpu_get_tsc` is
  `cpu_get_host_ticks`, the host's rdtsc); rdtscp's ECX is TSC_AUX, 0.
  UC_HOOK_INSN can hook both (the Python binding refuses them, the C API
  does not); a hook returning 1 skips Unicorn's answer, and RIP inside it is
  the instruction's own.
- rdrand and rdseed return bytes of a GLib generator seeded from the host's
  /dev/urandom, with no hook to reach them: the machine therefore runs a
  model without RDRAND (emulator/cpuid.py), where both raise #UD, and the
  invalid-instruction hook emulates them.  Returning true from that hook
  resumes at whatever RIP the hook set.
- cpuid answers from the CPU model's tables, which are not the host's, but
  the machine answers it from emulator/cpuid.py so that what it advertises
  matches what it emulates.

Each of these instructions retires once: the clock's hook counts it before
it runs, and neither a skipped answer nor a caught #UD counts it again or
takes it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import capstone
from capstone import x86_const as CX
from unicorn import x86_const as X
from vmgames.emulator import cpuid

if TYPE_CHECKING:
    from vmgames.emulator.machine import Machine

# The TSC's rate: it counts virtual nanoseconds, one per instruction retired, idle time included.
TSC_HZ = 1_000_000_000
# rdtscp's ECX: the CPU number (the machine has one CPU, number 0; Linux would add node << 12).
TSC_AUX = 0
# The seed of rdrand and rdseed when none is given (vmgames run --seed N).
DEFAULT_SEED = 0

_MASK64 = (1 << 64) - 1
_ARITHMETIC_FLAGS = 0x8D5    # CF, PF, AF, ZF, SF, OF
_CARRY = 0x1

_GENERAL_REGISTERS = (X.UC_X86_REG_RAX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX, X.UC_X86_REG_RBX,
                      X.UC_X86_REG_RSP, X.UC_X86_REG_RBP, X.UC_X86_REG_RSI, X.UC_X86_REG_RDI,
                      X.UC_X86_REG_R8, X.UC_X86_REG_R9, X.UC_X86_REG_R10, X.UC_X86_REG_R11,
                      X.UC_X86_REG_R12, X.UC_X86_REG_R13, X.UC_X86_REG_R14, X.UC_X86_REG_R15)

_decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_decoder.detail = True
_RANDOM_INSTRUCTIONS = (CX.X86_INS_RDRAND, CX.X86_INS_RDSEED)
_FAULTING_PREFIXES = (CX.X86_PREFIX_LOCK, CX.X86_PREFIX_REP, CX.X86_PREFIX_REPNE)


class SplitMix64:
    """Steele, Lea and Flood's SplitMix64 (2014): a fixed, published sequence for each 64-bit seed.

    Its outputs for seed 0 start 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4.
    """

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def next(self) -> int:
        self._state = (self._state + 0x9E37_79B9_7F4A_7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & _MASK64
        return z ^ (z >> 31)


class TimestampCounter:
    """The TSC: virtual time in nanoseconds (TSC_HZ), never the host's.

    With the instruction clock that is exactly the instructions retired so
    far, the reading one included, plus the time the CPU idled.  A machine
    without the clock (--fast) counts only idle time; there each reading is
    one tick past the one before, so that the counter still never stands
    still or goes back for a program that waits on it.
    """

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._last = -1

    def read(self) -> int:
        value = max(self._machine.now, self._last + 1)     # virtual time is in nanoseconds already
        self._last = value
        return value & _MASK64

    def now(self) -> int:
        """Virtual time as the guest may see it (its clocks read it too): never before a time it was already
        shown.  Each CPU has a clock of its own, and a thread moving to a CPU that is behind in its round must
        not see time go back."""
        value = max(self._machine.now, self._last)
        self._last = value
        return value


class Determinism:
    """Answers rdtsc, rdtscp, cpuid, rdrand and rdseed for one machine, from its clock and `seed`.

    rdrand and rdseed draw from one SplitMix64 stream, one 64-bit value per
    instruction (a narrower destination takes its low bits), so that the
    same seed gives the same values in the same order.
    """

    def __init__(self, machine: Machine, seed: int) -> None:
        self.seed = seed
        self.tsc = TimestampCounter(machine)
        self._machine = machine
        self._random = SplitMix64(seed)
        # The instructions Unicorn lets a UC_HOOK_INSN hook answer, and how.
        self.answers = {X.UC_X86_INS_RDTSC: self.rdtsc, X.UC_X86_INS_RDTSCP: self.rdtscp,
                        X.UC_X86_INS_CPUID: self.cpuid}

    def rdtsc(self) -> None:
        tsc = self.tsc.read()
        self._machine.cpu.write(X.UC_X86_REG_RAX, tsc & 0xFFFF_FFFF)
        self._machine.cpu.write(X.UC_X86_REG_RDX, tsc >> 32)

    def rdtscp(self) -> None:
        self.rdtsc()
        self._machine.cpu.write(X.UC_X86_REG_RCX, TSC_AUX)

    def cpuid(self) -> None:
        cpu = self._machine.cpu
        eax, ebx, ecx, edx = cpuid.cpuid(cpu.read(X.UC_X86_REG_RAX), cpu.read(X.UC_X86_REG_RCX))
        for register, value in ((X.UC_X86_REG_RAX, eax), (X.UC_X86_REG_RBX, ebx),
                                (X.UC_X86_REG_RCX, ecx), (X.UC_X86_REG_RDX, edx)):
            cpu.write(register, value)

    def emulate_invalid(self, rip: int) -> bool:
        """Carry out the instruction at `rip`, which raised #UD, if the machine emulates it: rdrand and rdseed.

        Returns False for anything else (and for the forms hardware refuses
        too: a memory operand, a LOCK or REP prefix), which stays #UD.
        """
        for insn in _decoder.disasm(self._code_at(rip), rip, 1):
            if insn.id not in _RANDOM_INSTRUCTIONS or any(p in _FAULTING_PREFIXES for p in insn.prefix):
                return False
            operand = insn.operands[0]
            if operand.type != CX.X86_OP_REG:
                return False
            self._write_random(insn, operand.size)
            self._machine.cpu.write(X.UC_X86_REG_RIP, rip + insn.size)
            return True
        return False

    def _write_random(self, insn: capstone.CsInsn, size: int) -> None:
        """rdrand/rdseed succeeded: the destination gets a value, CF is set and OF, SF, ZF, AF, PF cleared."""
        cpu = self._machine.cpu
        value = self._random.next()
        register = _GENERAL_REGISTERS[self._register_number(insn)]
        if size == 2:
            value = (cpu.read(register) & ~0xFFFF) | (value & 0xFFFF)
        elif size == 4:
            value &= 0xFFFF_FFFF     # a 32-bit destination clears the upper half, as every 32-bit write does
        cpu.write(register, value)
        cpu.write(X.UC_X86_REG_EFLAGS, (cpu.read(X.UC_X86_REG_EFLAGS) & ~_ARITHMETIC_FLAGS) | _CARRY)

    @staticmethod
    def _register_number(insn: capstone.CsInsn) -> int:
        """The destination's number, 0 (rax) to 15 (r15): ModRM.rm, extended by REX.B."""
        return (insn.modrm & 7) | (8 if insn.rex & 1 else 0)

    def _code_at(self, va: int, length: int = 15) -> bytes:
        """The bytes at `va` in the current address space, read without touching a page-table bit."""
        return self._machine.read_virtual(self._machine.cr3, va, length)
