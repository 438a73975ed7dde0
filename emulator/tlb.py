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
    code runs again.
    """

    def __init__(self, engine: unicorn.Uc) -> None:
        self._engine = engine
        self.pending = False
        self.page_invalidations = 0
        self.full_invalidations = 0

    def invalidate_page(self, va: int) -> None:
        self.page_invalidations += 1
        self.pending = True

    def invalidate_all(self) -> None:
        self.full_invalidations += 1
        self.pending = True

    def sync(self) -> None:
        """Carry out the invalidations asked for since the last sync."""
        if self.pending:
            self.pending = False
            self._engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
