"""The TLB: Unicorn's own translation cache, and what the kernel asks of it.

Unicorn caches translations in a software TLB filled through the machine's
fill hook (emulator/machine.py); a PTE the kernel changes is not seen until
that entry is invalidated, exactly the hazard a real TLB poses.
"""

from __future__ import annotations

import unicorn

from emulator.recorder import Recorder


class TLB:
    """The TLB is Unicorn's own translation cache; this counts what the kernel asks of it.

    Unicorn can only flush its TLB whole, so invalidations are recorded one by
    one, as the kernel asks for them, and carried out as one flush before user
    code runs again.
    """

    def __init__(self, engine: unicorn.Uc, recorder: Recorder) -> None:
        self._engine = engine
        self._recorder = recorder
        self.pending = False

    def invalidate_page(self, va: int, reason: str) -> None:
        self._recorder.event("tlb", "invalidate-page", address=va, reason=reason)
        self.pending = True

    def invalidate_all(self, reason: str) -> None:
        self._recorder.event("tlb", "invalidate-all", reason=reason)
        self.pending = True

    def sync(self) -> None:
        """Carry out the invalidations asked for since the last sync."""
        if self.pending:
            self.pending = False
            self._engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
