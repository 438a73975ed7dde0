"""The board: processors, physical RAM, MMU, TLBs and traps, wired together.

Faults reach the kernel through Unicorn's virtual TLB, not its #PF path
(docs/architecture.md, Unicorn facts 1): on every TLB miss the fill hook walks the page tables in RAM
with emulator.mmu; when the walk fails, the kernel's page-fault handler is
called right there, and if it fixes the tables the walk is retried without
leaving the engine.  Only a fault the kernel cannot fix stops the run.

The machine knows nothing about processes: the kernel registers a page-fault
handler and a syscall handler, selects a processor, sets its page-table
root, and calls run().  With several processors (emulator/processor.py) one
runs at a time, on the host's one thread: the kernel's scheduler decides
which, and for how many instructions, so that every run is reproducible.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib
from vmgames.emulator import _native, mmu, pte, traps
from vmgames.emulator.cpu import CPU, SYSCALL_LENGTH
from vmgames.emulator.determinism import DEFAULT_SEED, Determinism
from vmgames.emulator.processor import Processor
from vmgames.emulator.ram import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

DEFAULT_RAM_SIZE = 256 << 20
# Each processor marks the frames it fetched code from with its own bit of one byte per frame.
MAX_CPUS = 8

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
    """An x86-64 machine with `ram_size` bytes of RAM and `cpus` processors.

    deterministic=True counts every retired instruction (each processor's
    virtual clock); False runs at raw Unicorn speed and keeps no clock.
    `seed` seeds rdrand and rdseed; nothing the guest reads comes from the
    host (emulator/determinism.py).  `cpu`, `engine`, `tlb` and `clock` are
    the selected processor's (`select`): the one that runs, and whose hooks
    call the kernel.
    """

    def __init__(self, ram_size: int = DEFAULT_RAM_SIZE, deterministic: bool = True,
                 seed: int = DEFAULT_SEED, cpus: int = 1) -> None:
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"a machine has 1 to {MAX_CPUS} processors, not {cpus}")
        # An engine before RAM: Unicorn maps its translation buffer when it starts, and exits the process if it
        # cannot; after that, RAM that the host cannot give fails with an exception the caller can report.
        first = CPU()
        self.ram = PhysicalMemory(ram_size)
        self.deterministic = deterministic
        self.processors = [Processor(i, self.ram, STOP_FRAME, deterministic, first if i == 0 else None)
                           for i in range(cpus)]
        self.code_frames = bytearray(self.ram.frames)   # per frame, the processors that may run code from it
        self._ram_qwords = self.ram.size // 8           # RAM as page-table entries, for the C walk's bounds
        self.page_fault_handler: PageFaultHandler = lambda va, access, error: "no handler"
        self.syscall_handler: SyscallHandler = lambda: None
        self._trap: traps.Trap | None = None
        self._stop_requested = False
        self._running = False           # inside emu_start: the selected engine is executing translated code
        self._hook_error: BaseException | None = None
        self.ram.write(STOP_FRAME << PAGE_SHIFT, _UD2 * (PAGE_SIZE // 2))
        self.select(self.processors[0])
        self.determinism = Determinism(self, seed)
        self._hooks = [_TLB_FILL_HOOK(self._tlb_fill), _SYSCALL_HOOK(self._syscall)]
        answers = [(instruction, _ANSWER_HOOK(self._answer_hook(answer)))
                   for instruction, answer in self.determinism.answers.items()]
        self._hooks += [hook for _, hook in answers]
        for processor in self.processors:
            self._add_hook(processor, unicorn.UC_HOOK_TLB_FILL, self._hooks[0])
            self._add_hook(processor, unicorn.UC_HOOK_INSN, self._hooks[1], ctypes.c_int(X.UC_X86_INS_SYSCALL))
            processor.engine.hook_add(unicorn.UC_HOOK_INTR, self._interrupt)
            processor.engine.hook_add(unicorn.UC_HOOK_INSN_INVALID, self._invalid_opcode)
            for instruction, hook in answers:
                self._add_hook(processor, unicorn.UC_HOOK_INSN, hook, ctypes.c_int(instruction))

    def select(self, processor: Processor) -> None:
        """Make `processor` the one that runs next, and whose registers, TLB and clock the kernel works on."""
        self.selected = processor
        self.cpu = processor.cpu
        self.engine = processor.engine
        self.tlb = processor.tlb
        self.clock = processor.clock

    @property
    def cr3(self) -> int:
        """The selected processor's page-table root."""
        return self.selected.cr3

    @property
    def cr3_loads(self) -> int:
        return sum(p.cr3_loads for p in self.processors)

    @property
    def translation_drops(self) -> int:
        return sum(p.translation_drops for p in self.processors)

    @staticmethod
    def _add_hook(processor: Processor, kind: int, callback, *extra) -> None:
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(processor.cpu.handle, ctypes.byref(handle), kind,
                                   ctypes.cast(callback, ctypes.c_void_p), None, ctypes.c_uint64(1),
                                   ctypes.c_uint64(0), *extra)
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)

    def _answer_hook(self, answer: Callable[[], None]) -> Callable[[int, int], int]:
        """A UC_HOOK_INSN hook that answers its instruction in Unicorn's place (emulator/determinism.py)."""
        def hook(engine: int, user_data: int) -> int:
            try:
                if self.clock:
                    self.clock.settle(self.cpu.rip)     # RIP is the instruction's own; it reads the time
                answer()
                if self.clock:
                    self.clock.unsettle()
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
        """The selected processor's virtual time: instructions retired (none counted when not deterministic),
        plus its idle time."""
        return self.clock.now if self.clock else self.selected.idle_time

    @property
    def idle_time(self) -> int:
        return self.selected.idle_time

    @property
    def retired(self) -> int:
        """Instructions user code retired, on every processor."""
        return sum(p.clock.now - p.idle_time for p in self.processors) if self.deterministic else 0

    def idle(self, instructions: int) -> None:
        """Let virtual time pass on the selected processor with nothing to run, as a CPU idles while every
        process waits for a device."""
        self.selected.idle(instructions)

    def clock_reader(self) -> Callable[[], int]:
        """A function returning the selected processor's `now`, without a Python frame when there is a clock
        (it stamps every event): to be asked again after each `select`."""
        current = self.selected
        return current.clock.reader() if current.clock else (lambda: current.idle_time)

    def set_page_table_root(self, cr3: int) -> None:
        """Load the selected processor's CR3, which (without PCIDs or global pages) flushes its whole TLB."""
        self.selected.load_cr3(cr3)

    # Writing RAM.  Unicorn notices the stores user code makes to a page it
    # translated code from, but not the kernel's writes into the host buffer
    # behind its back (docs/architecture.md, Unicorn facts 3): a read() into a page that already ran, a
    # page-in or a copy-on-write copy into a frame that once held code would
    # run the old translation.  So every write the kernel makes goes through
    # these primitives, which drop the translations first when the frame is
    # one code may have been fetched from since the last drop (`code_frames`:
    # the TLB-fill hook marks every frame it maps executable with the bit of
    # the processor that mapped it; each processor has translations of its own).

    def write_physical(self, paddr: int, data: bytes | memoryview) -> None:
        """Write `data` at physical address `paddr`, keeping translated code coherent."""
        if data:
            marks = self.code_frames[paddr >> PAGE_SHIFT:((paddr + len(data) - 1) >> PAGE_SHIFT) + 1]
            if marks.count(0) != len(marks):
                self._drop_translations(_union(marks))
            self.ram.bytes[paddr:paddr + len(data)] = data

    def fill_frame(self, frame: int, data: bytes) -> None:
        """Make `frame` hold `data` followed by zeros (a page-in, a zero-fill when `data` is empty)."""
        if self.code_frames[frame]:
            self._drop_translations(self.code_frames[frame])
        self.ram.fill_frame(frame, data)

    def copy_frame(self, dst: int, src: int) -> None:
        """Copy frame `src` into frame `dst`."""
        if self.code_frames[dst]:
            self._drop_translations(self.code_frames[dst])
        self.ram.copy_frame(dst, src)

    def walk(self, cr3: int, va: int, access: int) -> tuple[int, int]:
        """The hardware's walk of a user access (emulator/mmu.py's walk, in C): (physical address of the page,
        TLB permissions), or (-1, the page-fault error code); A and D bits set in RAM as the walk sets them."""
        return _native.walk(self.ram.address, self._ram_qwords, cr3, va, access)

    def read_virtual(self, cr3: int, va: int, length: int) -> bytes:
        """What a program under `cr3` would read at `va`, up to the first byte no present PTE maps.

        It faults nothing in and sets no A bit: for messages and debuggers, not for the kernel's copyin.
        """
        return mmu.read_virtual(self.ram.qwords, self.ram.bytes, cr3, va, length)

    def stale_translations(self, processor: Processor | None = None) -> list[tuple[int, int, int, int]]:
        """(page, frame address held, rights held, PTE now) for each translation a processor's TLB (the selected
        one's by default) may still hold that the page tables in RAM no longer give: another frame, or fewer
        rights.  Empty unless a PTE was changed without its invalidation (the TLB sanitizer's question)."""
        processor = processor or self.selected
        stale = []
        for va, (paddr, rights) in processor.tlb.held.items():
            leaf = mmu.leaf_entry(self.ram.qwords, processor.cr3, va)
            lost = (rights & unicorn.UC_PROT_WRITE and not leaf & pte.RW
                    or rights & unicorn.UC_PROT_EXEC and leaf & pte.NX)
            if not leaf & pte.P or not leaf & pte.US or leaf & pte.ADDR_MASK != paddr or lost:
                stale.append((va, paddr, rights, leaf))
        return stale

    def _drop_translations(self, processors: int) -> None:
        """Drop every translated block, and the TLB, of each processor whose bit is in `processors`, so that
        their fetches fill again and re-mark their frames.

        Unicorn's ctl_remove_cache takes virtual addresses, which the machine
        cannot name for a physical frame, so the whole translation cache goes.
        This is the board's own flush, not one the kernel asked for: it is not
        counted as a TLB invalidation.

        The engine running now (the kernel was called from its TLB-fill hook,
        in the middle of a translated block) is not flushed at once: Unicorn
        frees its blocks on the spot, and the block running would then chain
        itself to the next one from freed memory (a crash in
        tb_set_jmp_target, or worse, a write into RAM).  Its run is ended
        instead, when the block does, and the blocks go before it runs again;
        the scheduler sees an ordinary stop and goes on with the same slice.
        """
        for processor in self.processors:
            if processors & processor.bit:
                if processor is self.selected and self._running:
                    processor.drop_pending = True
                    processor.engine.emu_stop()
                else:
                    processor.drop_translations()
        self.code_frames[:] = self.code_frames.translate(_CLEAR_BITS[processors])

    def stop(self) -> None:
        """Called by a kernel handler: end the current run once the handler returns."""
        self._stop_requested = True
        self.engine.emu_stop()

    def interrupt(self) -> None:
        """From another thread or a signal handler: end the current run soon (the kernel then looks why)."""
        self.engine.emu_stop()

    def run(self, budget: int = 0, timeout_us: int = 0, at_boundary: bool = False) -> traps.Trap:
        """Run user code from the current context until something needs the kernel.

        `budget` is a number of instructions (deterministic machines): the run
        ends exactly there, or with `at_boundary` at the end of the translated
        block that reaches it; `timeout_us` is host microseconds (fast
        machines); 0 means no limit.
        """
        self._trap = None
        self._stop_requested = False
        if self.clock:
            self.clock.arm(budget or (1 << 62), at_boundary)
        if self.selected.drop_pending:
            self.selected.drop_translations()
        self.tlb.sync()
        self._running = True
        try:
            while True:
                self.engine.emu_start(self.cpu.rip, STOP_ADDRESS, timeout=0 if self.clock else timeout_us)
                if not (self.clock and self._trap is None and self._hook_error is None
                        and not self._stop_requested and self.clock.stopped_at_entry()):
                    break
        except unicorn.UcError as error:
            if self._trap is None and self._hook_error is None:
                self._trap = self._unexplained_stop(error)
        finally:
            self._running = False
            if self.clock:
                self.clock.end_slow_range()
                self.clock.settle(self.cpu.rip, current_retired=False)     # the instruction at RIP did not run
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
            cr3 = self.selected.cr3
            paddr, result = self.walk(cr3, va, access)
            if paddr < 0:
                clock = self.clock if access != mmu.FETCH else None     # a fetch comes between blocks
                if clock:
                    clock.settle(self.cpu.rip)
                verdict = self.page_fault_handler(va, access, result)
                if verdict is not None:
                    self._fault_trap(va, access, result, verdict)
                    return False
                if clock:
                    clock.unsettle()
                paddr, result = self.walk(cr3, va, access)
                if paddr < 0:
                    raise RuntimeError(f"kernel resolved a fault at {va:#x} but the walk still faults ({result:#x})")
                self.tlb.sync()
            if result & _PROT_EXEC:
                # Unicorn may translate code from it through this entry, whatever access filled it.
                self.code_frames[paddr >> PAGE_SHIFT] |= self.selected.bit
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
            # RIP is the syscall's own; mostly the last of its block, and then the time is the syscall's already.
            clock = self.clock
            if clock and clock.settled_at_end(self.cpu.rip + SYSCALL_LENGTH):
                clock = None
            if clock:
                clock.settle(self.cpu.rip)
            self.syscall_handler()
            if clock:
                clock.unsettle()
            self.tlb.sync()
        except BaseException as error:
            self._hook_failed(error)

    def _interrupt(self, engine: unicorn.Uc, number: int, user_data) -> None:
        rip = self.cpu.rip
        if self.clock:
            self.clock.settle(rip, current_retired=number != 3)    # int3 is a trap: RIP is past it
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
        if self.clock:
            self.clock.settle(self.cpu.rip)
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


def _union(marks: bytes | bytearray) -> int:
    """Every processor bit set in any of `marks`."""
    bits = 0
    for mark in set(marks):
        bits |= mark
    return bits


# For each set of processors, a byte translation table that clears their bits.
_CLEAR_BITS = [bytes(value & ~bits for value in range(256)) for bits in range(256)]

