"""A processor: one CPU of the board, with everything a real core keeps to itself.

Each processor is its own Unicorn engine over the board's one RAM buffer
(every engine maps the same host memory, so a store one CPU makes to data is
seen by the others at once, as cache coherence gives on real hardware).  What
is not shared is exactly what is not shared on an SMP machine: registers,
CR3, the TLB (a translation cached here stays until this processor
invalidates it, whatever the page tables in RAM say now), and the
processor's own count of time; and, unlike real hardware, translated code:
a user store on one CPU into code another CPU has translated is not seen by
that CPU's translations (cross-modifying code; the kernel's own writes are
made coherent by the board: emulator/machine.py).
"""

from __future__ import annotations

import unicorn
from vmgames.emulator import mmu
from vmgames.emulator.clock import InstructionClock
from vmgames.emulator.cpu import CPU
from vmgames.emulator.ram import PAGE_SHIFT, PhysicalMemory
from vmgames.emulator.tlb import TLB


class Processor:
    """CPU number `index`: an engine (registers, translated code), its TLB, its CR3 and its clock."""

    def __init__(self, index: int, ram: PhysicalMemory, scratch_frame: int, deterministic: bool,
                 cpu: CPU | None = None) -> None:
        """`cpu`: an engine started already (the board starts its first one before it maps RAM)."""
        self.index = index
        self.bit = 1 << index           # this processor's bit in the board's map of frames code was fetched from
        self.cpu = cpu or CPU()
        self.engine = self.cpu.engine
        self.engine.mem_map_ptr(0, ram.size, unicorn.UC_PROT_ALL, ram.address)
        self.cpu.drop_to_user_mode(scratch_frame << PAGE_SHIFT)
        self.engine.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        self.tlb = TLB(self.engine)
        self.clock = InstructionClock(self.engine, self._read_code) if deterministic else None
        self._ram = ram
        self.idle_time = 0              # virtual time that passed with nothing to run here
        self.cr3 = 0
        self.cr3_loads = 0
        self.translation_drops = 0
        self.drop_pending = False   # translations to drop before this engine runs again (Machine._drop_translations)

    @property
    def now(self) -> int:
        """This processor's virtual time: instructions it retired, plus the time it idled."""
        return self.clock.now if self.clock else self.idle_time

    def idle(self, instructions: int) -> None:
        """Let time pass here with nothing to run."""
        self.idle_time += instructions
        if self.clock:
            self.clock.advance(instructions)

    def load_cr3(self, cr3: int) -> None:
        """Load CR3, which (without PCIDs or global pages) flushes this processor's whole TLB."""
        self.cr3 = cr3
        self.cr3_loads += 1
        if self.clock:
            self.clock.enter_space(cr3)
        self.tlb.invalidate_all()

    def drop_translations(self) -> None:
        """Drop every translated block and the TLB: the board's own flush, never counted as an invalidation."""
        self.engine.ctl_flush_tb()
        self.engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        self.tlb.flushed()
        self.translation_drops += 1
        self.drop_pending = False
        if self.clock:
            self.clock.forget_blocks()

    def _read_code(self, va: int, length: int) -> bytes:
        return mmu.read_virtual(self._ram.qwords, self._ram.bytes, self.cr3, va, length)
