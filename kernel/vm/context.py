"""The VM system's shared state: what every VM object is made with.

The page allocator hands out frames; the recorder counts; objects are
numbered per machine, so that the same run gives the same ids; and collapse
and bypass can be switched off to measure what they save (the chains
experiment).  None of it belongs to the allocator, which only keeps frames.
"""

from __future__ import annotations

from kernel.vm.page import PageAllocator
from kernel.vmmeter import Recorder


class VMContext:
    def __init__(self, allocator: PageAllocator, recorder: Recorder, collapse_enabled: bool = True) -> None:
        self.allocator = allocator
        self.recorder = recorder
        self.collapse_enabled = collapse_enabled   # off only to measure what collapse and bypass save
        self._last_object_id = 0

    def new_object_id(self) -> int:
        self._last_object_id += 1
        return self._last_object_id
