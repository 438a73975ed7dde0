"""The VM system's shared state: what every VM object is made with.

The page allocator hands out frames; the recorder counts; objects are
numbered per machine, so that the same run gives the same ids; and collapse
and bypass can be switched off to measure what they save (the chains
experiment); anonymous pages may have swap to go to.  None of it belongs
to the allocator, which only keeps frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from vmgames.kernel.vm.swap_pager import SwapPager


class VMContext:
    def __init__(self, allocator: PageAllocator, recorder: Recorder, collapse_enabled: bool = True) -> None:
        self.allocator = allocator
        self.recorder = recorder
        self.collapse_enabled = collapse_enabled   # off only to measure what collapse and bypass save
        self.swap_pager: SwapPager | None = None    # vmgames run --swap SIZE
        self._last_object_id = 0

    def new_object_id(self) -> int:
        self._last_object_id += 1
        return self._last_object_id
