"""Page queues: where every page of memory is, as the pageout daemon sees it.

Dillon's paper keeps each page in one of a few queues, in the order pages
entered it: active (in use), inactive (candidates for reuse; the dirty ones
wait there to be laundered to swap), cache (clean candidates, freeable at
once and still reactivated cheaply by a fault) and free.  The kernel's own
pages (page tables) and pages held by a sink after their object let them go
are in none of those: they cannot be reclaimed, and are counted as wired
(FreeBSD's v_wire_count).  Free frames are the allocator's free list
(kernel/vm/page.py); every other frame's page is in exactly one queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmgames.kernel.vm.page import VMPage

ACTIVE, INACTIVE, CACHE, WIRED = "active", "inactive", "cache", "wired"
QUEUES = (ACTIVE, INACTIVE, CACHE, WIRED)


class PageQueue:
    """One queue: its pages oldest first (a dict keeps the order and removes in O(1))."""

    __slots__ = ("name", "pages")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pages: dict[VMPage, None] = {}

    def __len__(self) -> int:
        return len(self.pages)

    def __iter__(self) -> Iterator[VMPage]:
        return iter(list(self.pages))

    def insert(self, page: VMPage) -> None:
        """Put `page` at the tail, taking it off the queue it was on."""
        if page.queue is not None:
            del page.queue.pages[page]
        page.queue = self
        self.pages[page] = None

    def remove(self, page: VMPage) -> None:
        del self.pages[page]
        page.queue = None
