"""Virtual time: the number of user instructions retired.

Counting is exact and the same on every run, so that scheduling quanta and
device rates can be in instructions.  It is done per translated block, in C
(emulator/_native.c): Unicorn tells the clock each block's instruction count
when it translates the block, and a block hook adds the count each time the
block runs, which keeps the engine near its raw speed (a hook before every
instruction cost 18x).  Three things need more than whole blocks:

- a budget that ends inside a block: the engine stops at the block's entry,
  and the block runs again with a code hook bounded to it, which counts
  instruction by instruction and stops exactly at the budget (the "slow
  range", dropped as soon as the run leaves it);
- a block whose count is not known (translated before the clock could see
  it, or pushed out of the table): its translation is dropped so that Unicorn
  translates it again and says; if it still does not, the block's code is
  decoded and its instructions counted (capstone);
- a block left midway (a fault, a stop, a hook reading the time inside it):
  `settle` takes back the instructions not yet run, counting them from the
  block's code (capstone, once per block: docs/architecture.md, Unicorn facts).

A debugger that is called before every instruction turns the whole address
range into a slow range (`count_every_instruction`), as the clock was before.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
from collections.abc import Callable

import capstone
import unicorn
from unicorn.unicorn_py3.unicorn import uclib
from vmgames.emulator import _native

ENTRY_NONE, ENTRY_BUDGET, ENTRY_UNKNOWN, ENTRY_LEFT_SLOW = 0, 1, 2, 3
EVERYWHERE = (0, (1 << 64) - 1)     # as a slow range: every address (the last byte aside)

_decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_decoder.skipdata = True     # an undecodable byte counts as one instruction, as the #UD Unicorn ends a block with


class _BlockCount(ctypes.Structure):
    _fields_ = [("pc", ctypes.c_uint64), ("space", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("count", ctypes.c_uint32)]


_ENTRY_SIZE = ctypes.sizeof(_BlockCount)


class _ClockState(ctypes.Structure):
    # The C struct instruction_clock, field for field.
    _fields_ = [("retired", ctypes.c_uint64), ("limit", ctypes.c_uint64), ("stop", ctypes.c_void_p),
                ("expired", ctypes.c_uint64), ("space", ctypes.c_uint64), ("counted", ctypes.c_void_p),
                ("entry_stop", ctypes.c_uint64), ("pending_pc", ctypes.c_uint64), ("pending_size", ctypes.c_uint64),
                ("slow_lo", ctypes.c_uint64), ("slow_hi", ctypes.c_uint64), ("entry_stops", ctypes.c_uint64),
                ("at_boundary", ctypes.c_uint64),
                ("table", _BlockCount * _native.BLOCK_TABLE_SIZE)]


class InstructionClock:
    """Counts retired instructions on an engine and ends runs at a budget."""

    def __init__(self, engine: unicorn.Uc, read_code: Callable[[int, int], bytes]) -> None:
        """`read_code(va, length)`: the bytes of code in the address space running, for settling a block."""
        self._engine = engine
        self._read_code = read_code
        self._state = _ClockState()
        self._state.stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        self._add_hook(unicorn.UC_HOOK_EDGE_GENERATED, _native.TRANSLATION_HOOK_ADDRESS, 1, 0)
        self._add_hook(unicorn.UC_HOOK_BLOCK, _native.BLOCK_HOOK_ADDRESS, 1, 0)
        self._slow_hook: int | None = None
        self._every_instruction = False
        self._unknown_again: tuple[int, int] | None = None     # a block whose translation was dropped once
        self._tail = 0          # instructions taken back by settle(), given back by unsettle(),
        self._settled = 0       # of the block at this address in the table
        self._shown = 0         # the time a hook of this run last saw
        self._offsets: dict[tuple[int, int, int], list[int]] = {}    # a block's instruction addresses
        self._table = ctypes.addressof(self._state.table)
        self._address = ctypes.addressof(self._state)
        # The table as plain integers, cheaper to read than its ctypes structs: each entry is three 64-bit
        # words, pc, space, and size (low half) with count (high half).
        self._words = memoryview(self._state.table).cast("B").cast("Q")
        self._before: dict[tuple[int, int, int, int], int] = {}   # instructions of a block before an address

    def _add_hook(self, kind: int, address: int, begin: int, end: int) -> int:
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(self._engine._uch, ctypes.byref(handle), kind, ctypes.c_void_p(address),
                                   ctypes.byref(self._state), ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        return handle.value

    @property
    def now(self) -> int:
        """Virtual time: instructions retired, plus the time `advance` let pass."""
        return self._state.retired

    def advance(self, instructions: int) -> None:
        """Let as much time pass as `instructions` take, with none retiring (the CPU idles)."""
        self._state.retired += instructions

    def reader(self) -> Callable[[], int]:
        """A function returning `now`, called without a Python frame: the recorder stamps every traced event."""
        return functools.partial(getattr, self._state, "retired")

    def arm(self, budget: int, at_boundary: bool = False) -> None:
        """Allow `budget` more instructions before the engine stops: exactly, or `at_boundary`, at the end of
        the block that reaches the budget (no block is then run a second way: a CPU's turn of a round)."""
        self._state.limit = self._state.retired + budget
        self._state.expired = 0
        self._state.at_boundary = at_boundary
        self._shown = 0

    @property
    def expired(self) -> bool:
        return bool(self._state.expired)

    def unretire(self) -> None:
        """Take back the count of an instruction that faulted instead of retiring."""
        self._state.retired -= 1

    def enter_space(self, cr3: int) -> None:
        """The address space whose code runs next: a virtual address's blocks are counted per space."""
        self._state.space = cr3

    def forget_blocks(self) -> None:
        """The engine's translations were dropped: so are the counts of its blocks."""
        ctypes.memset(self._table, 0, ctypes.sizeof(self._state.table))
        self._state.counted = None
        self._settled = 0
        self._offsets.clear()
        self._before.clear()

    # A block left midway.

    def settle(self, rip: int, current_retired: bool = True) -> None:
        """Inside a hook at `rip`, or after a run stopped there: count only what ran of the block counted last.

        The instructions before `rip` ran; the one at `rip` counts as begun
        when `current_retired` (a hook called for it, as the code hook was),
        else not.  `unsettle` gives the rest back if the block runs on.
        Every hook into the kernel comes through here: it reads the table as
        plain integers and remembers each (block, RIP) it has settled at.
        """
        state = self._state
        counted = state.counted
        self._tail = self._settled = 0
        if not counted:
            return
        word = (counted - self._table) // _ENTRY_SIZE * 3
        start = self._words[word]
        end = start + (self._words[word + 2] & 0xFFFF_FFFF)
        if not start <= rip <= end:
            return
        key = (start, end, self._words[word + 1], rip)
        done = self._before.get(key)
        if done is None:
            done = self._before[key] = bisect.bisect_left(self._offsets_of(start, end - start), rip)
        if current_retired and rip < end:
            done += 1
        tail = (self._words[word + 2] >> 32) - done
        retired = state.retired
        if current_retired:
            self._shown = retired - tail
        else:
            # A hook already showed the instruction at RIP as begun (a stop it asked for takes effect before
            # the instruction completes, which then runs again): time does not go back.
            tail = min(tail, max(0, retired - self._shown))
        state.retired = retired - tail
        state.counted = None
        self._tail, self._settled = tail, counted

    def settled_at_end(self, address: int) -> bool:
        """For a hook of the last instruction of a block, ending at `address`: then the time is already the
        hook's and the clock needs no settling (True); else (False) the caller settles."""
        if _native.counted_block_end(self._address) != address:
            return False
        self._shown = self._state.retired
        return True

    def unsettle(self) -> None:
        """The block settled by a hook runs on: its remaining instructions count again."""
        if self._settled:
            state = self._state
            state.retired += self._tail
            state.counted = self._settled
            self._settled = self._tail = 0

    def _offsets_of(self, start: int, size: int) -> list[int]:
        """The addresses of the instructions of the block at `start`, `size` bytes long, in the address space
        running (decoded once)."""
        key = (self._state.space, start, size)
        offsets = self._offsets.get(key)
        if offsets is None:
            code = self._read_code(start, size)
            offsets = self._offsets[key] = [insn.address for insn in _decoder.disasm(code, start)]
        return offsets

    # Stops at a block's entry.

    def stopped_at_entry(self) -> bool:
        """After a run: did the clock stop the engine before a block to count it another way?  If so, the way is
        set up and the run should go on (from the same RIP)."""
        state = self._state
        reason, state.entry_stop = state.entry_stop, ENTRY_NONE
        if reason == ENTRY_NONE:
            return False
        block = (state.pending_pc, state.pending_size)
        if reason == ENTRY_LEFT_SLOW:
            self.end_slow_range()
        elif reason == ENTRY_UNKNOWN and self._unknown_again != block:
            self._unknown_again = block
            self._engine.ctl_remove_cache(block[0], block[0] + block[1])    # translated anew, and counted
        elif reason == ENTRY_UNKNOWN:
            # Translated again and still not reported: the engine's first block (Unicorn reports a translation
            # only once a block has run) or one made outside its usual path.  Counted from its code.
            self._unknown_again = None
            count = len(self._offsets_of(*block))
            _native.record_block(ctypes.addressof(state), block[0], block[1], max(count, 1))
        else:
            self._slow_range(block[0], block[0] + block[1])
        return True

    def _slow_range(self, low: int, high: int) -> None:
        state = self._state
        state.slow_lo, state.slow_hi = low, high
        if (low, high) == EVERYWHERE:
            self._slow_hook = self._add_hook(unicorn.UC_HOOK_CODE, _native.INSTRUCTION_HOOK_ADDRESS, 1, 0)
        else:
            self._slow_hook = self._add_hook(unicorn.UC_HOOK_CODE, _native.INSTRUCTION_HOOK_ADDRESS, low, high - 1)
            self._engine.ctl_remove_cache(low, high)      # translated anew, now with a call per instruction

    def end_slow_range(self) -> None:
        """Back to whole blocks (Unicorn drops the blocks translated with the code hook as it deletes it)."""
        if self._slow_hook is None or self._every_instruction:
            return
        status = uclib.uc_hook_del(self._engine._uch, ctypes.c_size_t(self._slow_hook))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self._slow_hook = None
        self._state.slow_lo = self._state.slow_hi = 0

    def count_every_instruction(self, every: bool) -> None:
        """For a debugger called before every instruction: count each one (True) until told not to (False).
        The caller drops the engine's translations afterwards, so that every block is translated anew."""
        self.end_slow_range()
        self._every_instruction = False
        if every:
            self._slow_range(*EVERYWHERE)
            self._every_instruction = True

    @property
    def entry_stops(self) -> int:
        return self._state.entry_stops
