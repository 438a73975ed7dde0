"""Syscalls that change the address space: brk, mmap, munmap, mprotect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.ram import PAGE_SIZE
from kernel import errno
from kernel.errno import SyscallError
from kernel.file import RegularFile
from kernel.sysproc import signed
from kernel.vm.map import USER_TOP, MapEntry
from kernel.vm.object import ANONYMOUS, VMObject
from kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.proc import Process

MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
MMAP_MIN_ADDR = 0x10000   # as Linux's vm.mmap_min_addr: the NULL page and its neighbours stay unmapped


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _check_range(addr: int, length: int) -> int:
    """Validate a page-aligned user range; returns its end."""
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    end = addr + _page_up(length)
    if length == 0 or end > USER_TOP or end <= addr:
        raise SyscallError(errno.EINVAL if length == 0 else errno.ENOMEM)
    return end


def sys_brk(kernel: Kernel, proc: Process, addr: int, *_: int) -> int:
    """Linux semantics: returns the new break, or the old one if the request fails."""
    vm = proc.vmspace
    if addr < vm.heap_start or addr >= USER_TOP:
        return vm.heap_end
    old_top, new_top = _page_up(vm.heap_end), _page_up(addr)
    if new_top > old_top:
        if vm.map.overlaps(old_top, new_top):
            return vm.heap_end
        heap = VMObject(kernel.allocator, ANONYMOUS, (new_top - old_top) // PAGE_SIZE)
        vm.map.insert(MapEntry(old_top, new_top, heap, 0, PROT_READ | PROT_WRITE, name="heap"))
    elif new_top < old_top:
        vm.unmap(new_top, old_top, "munmap")
    vm.heap_end = addr
    return addr


def sys_mmap(kernel: Kernel, proc: Process, addr: int, length: int, prot: int, flags: int, fd: int,
             offset: int) -> int:
    vm = proc.vmspace
    kind = flags & (MAP_SHARED | MAP_PRIVATE)
    if length == 0 or kind not in (MAP_SHARED, MAP_PRIVATE) or prot & ~PROT_MASK:
        raise SyscallError(errno.EINVAL)
    if offset & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    size = _page_up(length)
    if size == 0 or size > USER_TOP:
        raise SyscallError(errno.ENOMEM)

    if flags & MAP_ANONYMOUS:
        obj = VMObject(kernel.allocator, ANONYMOUS, size // PAGE_SIZE)
        entry_offset, cow = 0, False
    else:
        file = proc.files.get(signed(fd))
        if file is None:
            raise SyscallError(errno.EBADF)
        if not isinstance(file, RegularFile):
            raise SyscallError(errno.ENODEV)
        if kind == MAP_SHARED and prot & PROT_WRITE:
            raise SyscallError(errno.EACCES)
        obj = kernel.fs.object_for(file.file)
        entry_offset, cow = offset, kind == MAP_PRIVATE

    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        try:
            start = addr
            end = _check_range(addr, size)
            if start < MMAP_MIN_ADDR or (flags & MAP_FIXED_NOREPLACE and vm.map.overlaps(start, end)):
                raise SyscallError(errno.EEXIST if flags & MAP_FIXED_NOREPLACE else errno.EPERM)
        except SyscallError:
            obj.deallocate()
            raise
        vm.unmap(start, end, "munmap")
    else:
        hint = addr & ~(PAGE_SIZE - 1)
        if hint >= MMAP_MIN_ADDR and hint + size <= USER_TOP and not vm.map.overlaps(hint, hint + size):
            start = hint
        else:
            found = vm.map.find_space(size)
            if found is None:
                obj.deallocate()
                raise SyscallError(errno.ENOMEM)
            start = found
    vm.map.insert(MapEntry(start, start + size, obj, entry_offset, prot, cow=cow, needs_copy=cow,
                           shared=kind == MAP_SHARED, name="mmap"))
    return start


def sys_munmap(kernel: Kernel, proc: Process, addr: int, length: int, *_: int) -> int:
    end = _check_range(addr, length)
    proc.vmspace.unmap(addr, end, "munmap")
    return 0


def sys_mprotect(kernel: Kernel, proc: Process, addr: int, length: int, prot: int, *_: int) -> int:
    if prot & ~PROT_MASK:
        raise SyscallError(errno.EINVAL)
    if length == 0:
        if addr & (PAGE_SIZE - 1):
            raise SyscallError(errno.EINVAL)
        return 0
    end = _check_range(addr, length)
    vm = proc.vmspace
    if not vm.map.covered(addr, end):
        raise SyscallError(errno.ENOMEM)
    for entry in vm.map.entries:
        if entry.start < end and addr < entry.end and prot & ~entry.max_protection:
            raise SyscallError(errno.EACCES)
    for entry in vm.map.clip(addr, end):
        lost = entry.protection & ~prot
        entry.protection = prot
        if lost:
            vm.pmap.protect(entry.start, entry.end, prot, "mprotect")
    return 0
