"""Physical RAM: one host buffer shared with Unicorn.

The kernel reads and writes frames and page-table entries as memory views of
this buffer (a PTE read is an index, a page copy a slice assignment), which is
about 5x cheaper than going through Unicorn's mem_read/mem_write (docs/architecture.md, Unicorn facts 3).
The buffer is an anonymous mmap, so untouched RAM costs the host nothing.
"""

from __future__ import annotations

import ctypes
import mmap

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
_ZERO_PAGE = bytes(PAGE_SIZE)


class PhysicalMemory:
    """`size` bytes of RAM at physical address 0, addressed by frame number or byte."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"RAM size must be a positive multiple of {PAGE_SIZE} bytes, not {size}")
        self.size = size
        self.frames = size // PAGE_SIZE
        self._mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.bytes = memoryview(self._mmap)
        self.qwords = self.bytes.cast("Q")
        self._anchor = ctypes.c_char.from_buffer(self._mmap)
        self.address = ctypes.addressof(self._anchor)

    def read(self, paddr: int, length: int) -> bytes:
        return bytes(self.bytes[paddr:paddr + length])

    def write(self, paddr: int, data: bytes) -> None:
        self.bytes[paddr:paddr + len(data)] = data

    def frame_view(self, frame: int) -> memoryview:
        start = frame << PAGE_SHIFT
        return self.bytes[start:start + PAGE_SIZE]

    def fill_frame(self, frame: int, data: bytes) -> None:
        """`data` (at most a page) then zeros to the end of the frame."""
        start = frame << PAGE_SHIFT
        if data:
            self.bytes[start:start + len(data)] = data
            self.bytes[start + len(data):start + PAGE_SIZE] = _ZERO_PAGE[len(data):]
        else:
            self.bytes[start:start + PAGE_SIZE] = _ZERO_PAGE

    def copy_frame(self, dst: int, src: int) -> None:
        d, s = dst << PAGE_SHIFT, src << PAGE_SHIFT
        self.bytes[d:d + PAGE_SIZE] = self.bytes[s:s + PAGE_SIZE]
