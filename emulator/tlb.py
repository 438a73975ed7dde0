"""The TLB: Unicorn's own translation cache, and what the kernel asks of it.

Unicorn caches translations in a software TLB filled through the machine's
fill hook (emulator/machine.py); a PTE the kernel changes is not seen until
that entry is invalidated, exactly the hazard a real TLB poses.
"""

from __future__ import annotations

import unicorn


class TLB:
    """The TLB is Unicorn's own translation cache; this carries out and counts what the kernel asks of it.

    Unicorn can only flush its TLB whole, so invalidations are recorded one by
    one, as the kernel asks for them, and carried out as one flush before user
    code runs again.  `held` is what Unicorn may still translate through: the
    pages filled since the last flush, with the frame and rights each was
    given (a real TLB's contents, as far as anyone outside can know them).
    """

    def __init__(self, engine: unicorn.Uc) -> None:
        self._engine = engine
        self.pending = False
        self.page_invalidations = 0
        self.full_invalidations = 0
        self.held: dict[int, tuple[int, int]] = {}      # page -> (physical address, Unicorn rights)

    def invalidate_page(self, va: int) -> bool:
        """Ask for `va`'s translation to go; whether the TLB may have held one."""
        self.page_invalidations += 1
        self.pending = True
        return va & ~0xFFF in self.held

    def invalidate_all(self) -> None:
        self.full_invalidations += 1
        self.pending = True

    def sync(self) -> None:
        """Carry out the invalidations asked for since the last sync."""
        if self.pending:
            self.pending = False
            self._engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
            self.held.clear()

    def flushed(self) -> None:
        """Unicorn's TLB was flushed by the board itself (dropping translated code): nothing is held."""
        self.held.clear()
