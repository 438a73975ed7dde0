"""Virtual time: the number of user instructions retired.

A C hook (emulator/_native.c) counts every instruction into a struct the
Python side owns, and stops the engine when a budget is spent.  Counting
costs about 5x raw Unicorn speed (docs/architecture.md, Unicorn facts 5) but makes every run
reproducible: scheduling quanta and device rates are in instructions.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import unicorn
from unicorn.unicorn_py3.unicorn import uclib
from vmgames.emulator import _native


class _ClockState(ctypes.Structure):
    # `retired` is virtual time: the C hook adds each instruction, `advance` the time the CPU idles.
    _fields_ = [("retired", ctypes.c_uint64), ("limit", ctypes.c_uint64),
                ("stop", ctypes.c_void_p), ("expired", ctypes.c_uint64)]


class InstructionClock:
    """Counts retired instructions on an engine and ends runs at a budget."""

    def __init__(self, engine: unicorn.Uc) -> None:
        self._state = _ClockState(0, 0, ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value, 0)
        handle = ctypes.c_size_t()
        status = uclib.uc_hook_add(engine._uch, ctypes.byref(handle), unicorn.UC_HOOK_CODE,
                                   ctypes.c_void_p(_native.CLOCK_HOOK_ADDRESS), ctypes.byref(self._state),
                                   ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)

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

    def arm(self, budget: int) -> None:
        """Allow `budget` more instructions before the engine stops."""
        self._state.limit = self._state.retired + budget
        self._state.expired = 0

    @property
    def expired(self) -> bool:
        return bool(self._state.expired)

    def unretire(self) -> None:
        """Take back the count of an instruction that faulted instead of retiring."""
        self._state.retired -= 1
