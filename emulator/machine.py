"""The board: CPU, physical RAM, MMU, TLB and traps, wired together.

Faults reach the kernel through Unicorn's virtual TLB, not its #PF path
(docs/architecture.md, Unicorn facts 1): on every TLB miss the fill hook walks the page tables in RAM
with emulator.mmu; when the walk fails, the kernel's page-fault handler is
called right there, and if it fixes the tables the walk is retried without
leaving the engine.  Only a fault the kernel cannot fix stops the run.

The machine knows nothing about processes: the kernel registers a page-fault
handler and a syscall handler, sets the page-table root, and calls run().
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from emulator import mmu, pte, traps
from emulator.clock import InstructionClock
from emulator.cpu import CPU
from emulator.determinism import DEFAULT_SEED, Determinism
from emulator.ram import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from emulator.tlb import TLB

DEFAULT_RAM_SIZE = 256 << 20

# Unicorn asks the fill hook for a fetch translation of the page before the
# `until` address of every run when the run ends (docs/architecture.md, Unicorn facts 1).  `until` is put
# in the kernel half, which user code can never map, and that one request is
# answered with frame 0, which the machine keeps filled with ud2.
STOP_PAGE = 0xFFFF_FFFF_FFFF_E000
STOP_ADDRESS = STOP_PAGE + PAGE_SIZE
STOP_FRAME = 0
_UD2 = b"\x0f\x0b"

_PROT_EXEC = unicorn.UC_PROT_EXEC
_ACCESS_OF = {unicorn.UC_MEM_READ: mmu.READ, unicorn.UC_MEM_WRITE: mmu.WRITE, unicorn.UC_MEM_FETCH: mmu.FETCH}

# The kernel's page-fault handler: None when it resolved the fault; otherwise its verdict (why it could not),
# which the machine carries, unread, in the trap that ends the run.
PageFaultHandler = Callable[[int, int, int], object | None]
SyscallHandler = Callable[[], None]

# The fill and syscall hooks are registered through the C API directly: the
# binding's wrappers (and its ctypes view of the TLB entry) cost about as much
# as the walk itself.  The TLB entry is written as two qwords: paddr, perms.
_TLB_FILL_HOOK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                  ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p)
_SYSCALL_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
# rdtsc, rdtscp and cpuid hooks return 1: the hook has answered, Unicorn's own answer is skipped.
_ANSWER_HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class Machine:
    """An x86-64 machine with `ram_size` bytes of RAM.

    deterministic=True counts every retired instruction (the virtual clock);
    False runs at raw Unicorn speed and keeps no clock.  `seed` seeds rdrand
    and rdseed; nothing the guest reads comes from the host (emulator/determinism.py).
    """

    def __init__(self, ram_size: int = DEFAULT_RAM_SIZE, deterministic: bool = True,
                 seed: int = DEFAULT_SEED) -> None:
        # The engine first: Unicorn maps its translation buffer when it starts, and exits the process if it
        # cannot; after that, RAM that the host cannot give fails with an exception the caller can report.
        self.cpu = CPU()
        self.ram = PhysicalMemory(ram_size)
        self.engine = self.cpu.engine
        self.engine.mem_map_ptr(0, ram_size, unicorn.UC_PROT_ALL, self.ram.address)
        self.cpu.drop_to_user_mode(STOP_FRAME << PAGE_SHIFT)
        self.engine.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        self.tlb = TLB(self.engine)
        self.deterministic = deterministic
        self.clock = InstructionClock(self.engine) if deterministic else None
        self.idle_time = 0
        self.cr3_loads = 0          # what the board counts: CR3 loads here, invalidations in the TLB
        self.cr3 = 0
        self.code_frames = bytearray(self.ram.frames)   # frames mapped executable since the last drop
        self.translation_drops = 0
        self.page_fault_handler: PageFaultHandler = lambda va, access, error: "no handler"
        self.syscall_handler: SyscallHandler = lambda: None
        self._trap: traps.Trap | None = None
        self._stop_requested = False
        self._hook_error: BaseException | None = None
        self.ram.write(STOP_FRAME << PAGE_SHIFT, _UD2 * (PAGE_SIZE // 2))
        self._hooks = [_TLB_FILL_HOOK(self._tlb_fill), _SYSCALL_HOOK(self._syscall)]
        self._add_hook(unicorn.UC_HOOK_TLB_FILL, self._hooks[0])
        self._add_hook(unicorn.UC_HOOK_INSN, self._hooks[1], ctypes.c_int(X.UC_X86_INS_SYSCALL))
        self.engine.hook_add(unicorn.UC_HOOK_INTR, self._interrupt)
        self.engine.hook_add(unicorn.UC_HOOK_INSN_INVALID, self._invalid_opcode)
        self.determinism = Determinism(self, seed)
        for instruction, answer in self.determinism.answers.items():
            self._hooks.append(_ANSWER_HOOK(self._answer_hook(answer)))
            self._add_hook(unicorn.UC_HOOK_INSN, self._hooks[-1], ctypes.c_int(instruction))

    def _add_hook(self, kind: int, callback, *extra) -> None:
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(self.cpu.handle, ctypes.byref(handle), kind, ctypes.cast(callback, ctypes.c_void_p),
                                   None, ctypes.c_uint64(1), ctypes.c_uint64(0), *extra)
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)

    def _answer_hook(self, answer: Callable[[], None]) -> Callable[[int, int], int]:
        """A UC_HOOK_INSN hook that answers its instruction in Unicorn's place (emulator/determinism.py)."""
        def hook(engine: int, user_data: int) -> int:
            try:
                answer()
            except BaseException as error:
                self._hook_failed(error)
            return 1
        return hook

    def _hook_failed(self, error: BaseException) -> None:
        """A handler raised: stop the engine and re-raise from run(), as the binding's own hooks do."""
        if self._hook_error is None:
            self._hook_error = error
        uclib.uc_emu_stop(self.cpu.handle)

    @property
    def now(self) -> int:
        """Virtual time: instructions retired (none counted when not deterministic), plus idle time."""
        return self.clock.now if self.clock else self.idle_time

    @property
    def retired(self) -> int:
        """Instructions user code retired: virtual time without the idle time."""
        return self.clock.now - self.idle_time if self.clock else 0

    def idle(self, instructions: int) -> None:
        """Let virtual time pass with nothing to run, as a CPU idles while every process waits for a device."""
        self.idle_time += instructions
        if self.clock:
            self.clock.advance(instructions)

    def clock_reader(self) -> Callable[[], int]:
        """A function returning `now`, without a Python frame when there is a clock (it stamps every event)."""
        return self.clock.reader() if self.clock else (lambda: self.idle_time)

    def set_page_table_root(self, cr3: int) -> None:
        """Load CR3, which (without PCIDs or global pages) flushes the whole TLB."""
        self.cr3 = cr3
        self.cr3_loads += 1
        self.tlb.invalidate_all()

    # Writing RAM.  Unicorn notices the stores user code makes to a page it
    # translated code from, but not the kernel's writes into the host buffer
    # behind its back (docs/architecture.md, Unicorn facts 3): a read() into a page that already ran, a
    # page-in or a copy-on-write copy into a frame that once held code would
    # run the old translation.  So every write the kernel makes goes through
    # these primitives, which drop the translations first when the frame is
    # one code may have been fetched from since the last drop (`code_frames`:
    # the TLB-fill hook marks every frame it maps executable).

    def write_physical(self, paddr: int, data: bytes | memoryview) -> None:
        """Write `data` at physical address `paddr`, keeping translated code coherent."""
        if data:
            if self.code_frames.find(1, paddr >> PAGE_SHIFT, ((paddr + len(data) - 1) >> PAGE_SHIFT) + 1) >= 0:
                self._drop_translations()
            self.ram.bytes[paddr:paddr + len(data)] = data

    def fill_frame(self, frame: int, data: bytes) -> None:
        """Make `frame` hold `data` followed by zeros (a page-in, a zero-fill when `data` is empty)."""
        if self.code_frames[frame]:
            self._drop_translations()
        self.ram.fill_frame(frame, data)

    def copy_frame(self, dst: int, src: int) -> None:
        """Copy frame `src` into frame `dst`."""
        if self.code_frames[dst]:
            self._drop_translations()
        self.ram.copy_frame(dst, src)

    def read_virtual(self, cr3: int, va: int, length: int) -> bytes:
        """What a program under `cr3` would read at `va`, up to the first byte no present PTE maps.

        It faults nothing in and sets no A bit: for messages and debuggers, not for the kernel's copyin.
        """
        out = bytearray()
        while len(out) < length:
            leaf = mmu.leaf_entry(self.ram.qwords, cr3, va)
            if not leaf & pte.P:
                break
            paddr = (leaf & pte.ADDR_MASK) | (va & 0xFFF)
            n = min(length - len(out), PAGE_SIZE - (va & 0xFFF))
            out += self.ram.bytes[paddr:paddr + n]
            va += n
        return bytes(out)

    def stale_translations(self) -> list[tuple[int, int, int, int]]:
        """(page, frame address held, rights held, PTE now) for each translation the TLB may still hold that the
        page tables in RAM no longer give: another frame, or fewer rights.  Empty unless a PTE was changed
        without its invalidation (the TLB sanitizer's question)."""
        stale = []
        for va, (paddr, rights) in self.tlb.held.items():
            leaf = mmu.leaf_entry(self.ram.qwords, self.cr3, va)
            lost = (rights & unicorn.UC_PROT_WRITE and not leaf & pte.RW
                    or rights & unicorn.UC_PROT_EXEC and leaf & pte.NX)
            if not leaf & pte.P or not leaf & pte.US or leaf & pte.ADDR_MASK != paddr or lost:
                stale.append((va, paddr, rights, leaf))
        return stale

    def _drop_translations(self) -> None:
        """Drop every translated block, and the TLB, so that fetches fill again and re-mark their frames.

        Unicorn's ctl_remove_cache takes virtual addresses, which the machine
        cannot name for a physical frame, so the whole translation cache goes.
        This is the board's own flush, not one the kernel asked for: it is not
        counted as a TLB invalidation.
        """
        self.engine.ctl_flush_tb()
        self.engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        self.tlb.flushed()
        self.code_frames[:] = bytes(len(self.code_frames))
        self.translation_drops += 1

    def stop(self) -> None:
        """Called by a kernel handler: end the current run once the handler returns."""
        self._stop_requested = True
        self.engine.emu_stop()

    def interrupt(self) -> None:
        """From another thread or a signal handler: end the current run soon (the kernel then looks why)."""
        self.engine.emu_stop()

    def run(self, budget: int = 0, timeout_us: int = 0) -> traps.Trap:
        """Run user code from the current context until something needs the kernel.

        `budget` is a number of instructions (deterministic machines) and
        `timeout_us` host microseconds (fast machines); 0 means no limit.
        """
        self._trap = None
        self._stop_requested = False
        if self.clock:
            self.clock.arm(budget or (1 << 62))
        self.tlb.sync()
        start = self.cpu.rip
        try:
            self.engine.emu_start(start, STOP_ADDRESS, timeout=0 if self.clock else timeout_us)
        except unicorn.UcError as error:
            if self._trap is None and self._hook_error is None:
                self._trap = self._unexplained_stop(error)
        if self._hook_error is not None:
            error, self._hook_error = self._hook_error, None
            raise error
        return self._trap or self._ordinary_stop()

    def _ordinary_stop(self) -> traps.Trap:
        rip = self.cpu.rip
        if self._stop_requested:
            return traps.Trap(traps.STOPPED, rip)
        if self.clock and self.clock.expired:
            return traps.Trap(traps.QUANTUM, rip)
        if rip == STOP_ADDRESS or rip >> 47:
            return traps.Trap(traps.PAGE_FAULT, rip, rip, mmu.PF_U | mmu.PF_I, mmu.FETCH)
        return traps.Trap(traps.QUANTUM, rip)

    def _unexplained_stop(self, error: unicorn.UcError) -> traps.Trap:
        rip = self.cpu.rip
        if error.errno == unicorn.UC_ERR_INSN_INVALID:
            return traps.Trap(traps.INVALID_OPCODE, rip)
        return traps.Trap(traps.GENERAL_PROTECTION, rip)

    def _tlb_fill(self, engine: int, va: int, mem_type: int, entry, user_data: int) -> bool:
        """On a TLB miss: walk the tables; on a failed walk, let the kernel fix them and walk again."""
        try:
            if va & ~0xFFF == STOP_PAGE and mem_type == unicorn.UC_MEM_FETCH:
                entry[0] = STOP_FRAME << PAGE_SHIFT
                entry[1] = unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC
                return True
            access = _ACCESS_OF[mem_type]
            qwords = self.ram.qwords
            paddr, result = mmu.walk(qwords, self.cr3, va, access)
            if paddr < 0:
                verdict = self.page_fault_handler(va, access, result)
                if verdict is not None:
                    self._fault_trap(va, access, result, verdict)
                    return False
                paddr, result = mmu.walk(qwords, self.cr3, va, access)
                if paddr < 0:
                    raise RuntimeError(f"kernel resolved a fault at {va:#x} but the walk still faults ({result:#x})")
                self.tlb.sync()
            if result & _PROT_EXEC:
                # Unicorn may translate code from it through this entry, whatever access filled it.
                self.code_frames[paddr >> PAGE_SHIFT] = 1
            self.tlb.held[va & ~0xFFF] = (paddr, result)
            entry[0] = paddr
            entry[1] = result
            return True
        except BaseException as error:
            self._hook_failed(error)
            return False

    def _fault_trap(self, va: int, access: int, error_code: int, verdict: object) -> None:
        if self.clock and access != mmu.FETCH:
            self.clock.unretire()
        self._trap = traps.Trap(traps.PAGE_FAULT, self.cpu.rip, va, error_code, access, verdict)

    def _syscall(self, engine: int, user_data: int) -> None:
        try:
            self.syscall_handler()
            self.tlb.sync()
        except BaseException as error:
            self._hook_failed(error)

    def _interrupt(self, engine: unicorn.Uc, number: int, user_data) -> None:
        rip = self.cpu.rip
        if number == 3:
            self._trap = traps.Trap(traps.BREAKPOINT, rip)
        elif number == 0:
            if self.clock:
                self.clock.unretire()
            self._trap = traps.Trap(traps.DIVIDE_ERROR, rip)
        elif number == 6:
            self._trap = traps.Trap(traps.INVALID_OPCODE, rip)
        else:
            # #GP (13) and anything else: a privileged or faulting instruction, not retired.
            if self.clock:
                self.clock.unretire()
            self._trap = traps.Trap(traps.GENERAL_PROTECTION, rip)
        engine.emu_stop()

    def _invalid_opcode(self, engine: unicorn.Uc, user_data) -> bool:
        if self.determinism.emulate_invalid(self.cpu.rip):
            return True     # rdrand or rdseed, carried out: it retired
        if self.clock:
            self.clock.unretire()
        rip = self.cpu.rip
        if rip & ~0xFFF == STOP_PAGE:
            self._trap = traps.Trap(traps.PAGE_FAULT, rip, rip, mmu.PF_U | mmu.PF_I, mmu.FETCH)
        else:
            self._trap = traps.Trap(traps.INVALID_OPCODE, rip)
        return False
