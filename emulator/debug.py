"""The board's debug port: what a debugger does to the machine that a program cannot.

A debugger (tools/gdb) stops the machine from the inside: the port calls it
before each instruction runs and on each store, and the machine waits,
mid-run, until it returns.  Everything here is the board's: instruction
addresses, stores, registers by gdb's names, page tables read without
setting a bit.  What a thread is, which one runs next and so what a step or
a held thread means is the kernel's and the debugger's business.

Unicorn decides when it translates a block whether the block calls a hook,
so code translated before a hook was added would run past it: adding a hook
drops the translated code and the TLB (a store through a TLB entry filled
before a memory hook existed does not ask the hook either).  Removing one
needs neither: the engine skips a deleted hook wherever it was compiled in.

The debugger needs the instruction clock: a held instruction is taken back
from it (`hold`), and a step is measured by it.
"""

from __future__ import annotations

from collections.abc import Callable

import unicorn
from unicorn import x86_const as X
from vmgames.emulator import cpu, mmu
from vmgames.emulator import pte as E
from vmgames.emulator.machine import Machine

# Every register gdb's amd64 description names (tools/gdb/registers.py), by gdb's name.
REGISTER_IDS: dict[str, int] = {
    **cpu.REGISTER_IDS,
    **{name: getattr(X, "UC_X86_REG_" + name.upper()) for name in ("cs", "ss", "ds", "es", "fs", "gs")},
    **{f"st{n}": getattr(X, f"UC_X86_REG_ST{n}") for n in range(8)},
    "fctrl": X.UC_X86_REG_FPCW, "fstat": X.UC_X86_REG_FPSW, "ftag": X.UC_X86_REG_FPTAG,
    "fiseg": X.UC_X86_REG_FCS, "fioff": X.UC_X86_REG_FIP, "foseg": X.UC_X86_REG_FDS,
    "fooff": X.UC_X86_REG_FDP, "fop": X.UC_X86_REG_FOP,
    **{f"xmm{n}": getattr(X, f"UC_X86_REG_XMM{n}") for n in range(16)},
    "mxcsr": X.UC_X86_REG_MXCSR,
}

# Called with the address of the instruction about to run, and whether a breakpoint is set there.
InstructionHook = Callable[[int, bool], None]
# Called with the watched address when a store is about to change a byte of its range.
WriteHook = Callable[[int], None]


class DebugPort:
    """The debug side of a machine: breakpoints, write watchpoints, registers and memory, for one debugger."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self._engines = [processor.engine for processor in machine.processors]
        self.breakpoints: set[int] = set()
        self._instruction_hooks: list[int] = []                    # one per engine
        self._watchpoints: dict[tuple[int, int], list[int]] = {}  # (address, length) -> each engine's hook

    # Breakpoints and watchpoints.

    def on_instruction(self, hook: InstructionHook) -> None:
        """Call `hook` before every instruction runs, until release().

        Every instruction, not only those at breakpoints: a debugger steps
        with it too.  It starts with the next block translated: the one
        running now, if any, runs on without it.
        """
        if self._instruction_hooks:
            raise RuntimeError("the debug port already has an instruction hook")
        for processor in self.machine.processors:
            processor.clock.count_every_instruction(True)     # first: the hook may take back what it counted
        self._instruction_hooks = [
            engine.hook_add(unicorn.UC_HOOK_CODE,
                            lambda engine, address, size, data: hook(address, address in self.breakpoints))
            for engine in self._engines]
        self._hook_added()

    def set_breakpoint(self, address: int) -> None:
        self.breakpoints.add(address)

    def clear_breakpoint(self, address: int) -> None:
        self.breakpoints.discard(address)

    def watch_writes(self, address: int, length: int, hook: WriteHook) -> None:
        """Call hook(address) on each store into [address, address + length) of the address space in CR3.

        The range is virtual and the store physical (the TLB is virtual:
        Unicorn reports a store by the physical address it goes to), so every
        store is seen and checked against where the range is mapped when the
        store is made.  Watching a range watched already changes nothing.
        """
        key = (address, length)
        if key in self._watchpoints:
            return
        self._watchpoints[key] = [
            engine.hook_add(unicorn.UC_HOOK_MEM_WRITE,
                            lambda engine, access, paddr, size, value, data:
                            self._check_store(address, length, paddr, size, hook))
            for engine in self._engines]
        self._hook_added()

    def unwatch_writes(self, address: int, length: int) -> None:
        self._flush_translations()
        for engine, handle in zip(self._engines, self._watchpoints.pop((address, length), ()), strict=False):
            engine.hook_del(handle)

    def _check_store(self, address: int, length: int, paddr: int, size: int, hook: WriteHook) -> None:
        leaf = self.leaf_entry(self.machine.cr3, address)
        if not leaf & E.P:
            return
        start = (leaf & E.ADDR_MASK) | (address & 0xFFF)
        if paddr < start + length and start < paddr + size:
            hook(address)

    def hold(self) -> None:
        """From the instruction hook: the instruction about to run does not; the run ends before it.

        The clock has counted it as begun; it is taken back, so that the
        instruction is counted once, when it runs.
        """
        self.machine.clock.unretire()
        self.machine.stop()

    def release(self) -> None:
        """Remove every hook and forget every breakpoint: the machine runs on as if never debugged."""
        self._flush_translations()
        for handles in [*self._watchpoints.values(), self._instruction_hooks]:
            for engine, handle in zip(self._engines, handles, strict=False):
                engine.hook_del(handle)
        if self._instruction_hooks:
            for processor in self.machine.processors:
                processor.clock.count_every_instruction(False)
        self._instruction_hooks = []
        self._watchpoints.clear()
        self.breakpoints.clear()

    def _hook_added(self) -> None:
        """Translate code (and fill the TLBs) again, so that every block and store asks the hook just added."""
        self._flush_translations()

    def _flush_translations(self) -> None:
        """Drop every translated block and TLB entry.  Before a hook goes too: Unicorn's uc_hook_del
        invalidates the blocks the hook was in by translating their virtual addresses through the TLB, and
        after the last process exited that TLB may still point into page tables whose frames now hold
        anything (swap-ins reuse them): it crashed there, in tb_set_jmp_target, until the blocks went first."""
        for engine in self._engines:
            engine.ctl_flush_tb()
            engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)

    # Registers.

    def read_register(self, name: str, context: unicorn.UcContext | None = None) -> int:
        """Register `name` (gdb's name) of the selected processor, or of a saved `context` (CPU.save,
        CPU.copy_context)."""
        register = REGISTER_IDS[name]
        return self.machine.engine.reg_read(register) if context is None else context.reg_read(register)

    def write_register(self, name: str, value: int, context: unicorn.UcContext | None = None) -> None:
        register = REGISTER_IDS[name]
        if context is None:
            self.machine.engine.reg_write(register, value)
        else:
            context.reg_write(register, value)

    # Memory, without faulting: the page tables are read, no bit of them set.

    def leaf_entry(self, cr3: int, va: int) -> int:
        """The PTE that maps `va` under `cr3` now (0 if the walk stops before a leaf)."""
        return mmu.leaf_entry(self.machine.ram.qwords, cr3, va)

    def read_virtual(self, cr3: int, va: int, length: int) -> bytes:
        """What a program under `cr3` would read at `va`, up to the first byte no present PTE maps."""
        return self.machine.read_virtual(cr3, va, length)

    def read_physical(self, paddr: int, length: int) -> bytes:
        return bytes(self.machine.ram.bytes[paddr:paddr + length])

    def write_physical(self, paddr: int, data: bytes) -> None:
        """Write RAM as the kernel does, keeping translated code coherent (Machine.write_physical)."""
        self.machine.write_physical(paddr, data)
