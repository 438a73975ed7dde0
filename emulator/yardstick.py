"""The yardstick `make bench` holds the machine against: code on a bare Unicorn engine.

No paging, no hooks, no clock: what the engine alone does with the code, so
that the bench can say how much of that speed the machine keeps (its fast
mode aims at 0.8x, its deterministic mode at 0.5x).  Code and data are on
pages of their own, W^X as the machine's are: a page both writable and
executable makes Unicorn check every store against the code translated from
it (docs/architecture.md, Unicorn facts 3), no fair yardstick.  It lives on
the board because it is an engine of its own, and only the board touches
the engine.
"""

from __future__ import annotations

import ctypes
import time

import unicorn
from vmgames.emulator.cpu import REGISTER_IDS

LOAD_ADDRESS = 0x1000
CODE_SIZE = 64 << 10        # [0, CODE_SIZE): read and execute; the rest read and write
MEMORY_SIZE = 1 << 20


def run_bare(code: bytes, repeats: int = 5) -> tuple[float, dict[str, int]]:
    """Run `code` from its first byte to its end, `repeats` times, each on a fresh engine.

    Returns the best time in seconds, and the general registers (by gdb's
    names) after the last run, for the caller to check the code did its work.
    """
    if repeats < 1:
        raise ValueError("the yardstick needs at least one run")
    if LOAD_ADDRESS + len(code) > CODE_SIZE:
        raise ValueError(f"{len(code)} bytes of code do not fit in the yardstick's {CODE_SIZE} bytes of code")
    best = float("inf")
    for _ in range(repeats):
        engine = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        memory = ctypes.create_string_buffer(MEMORY_SIZE)
        engine.mem_map_ptr(0, CODE_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC, memory)
        engine.mem_map_ptr(CODE_SIZE, MEMORY_SIZE - CODE_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE,
                           ctypes.addressof(memory) + CODE_SIZE)
        ctypes.memmove(ctypes.addressof(memory) + LOAD_ADDRESS, code, len(code))
        start = time.perf_counter()
        engine.emu_start(LOAD_ADDRESS, LOAD_ADDRESS + len(code))
        best = min(best, time.perf_counter() - start)
    return best, {name: engine.reg_read(register) for name, register in REGISTER_IDS.items()}
