"""Syscalls that change the address space: brk, mmap, munmap, mprotect, madvise, msync, mremap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno
from vmgames.kernel.devfs import DeviceFile
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import RegularFile
from vmgames.kernel.vm.map import USER_TOP, MapEntry, VMSpace
from vmgames.kernel.vm.object import ANONYMOUS, VMObject
from vmgames.kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE
from vmgames.kernel.vm.prefault import MAP, vm_map_pmap_enter

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x03, 0x10, 0x20
MAP_TYPE = 0x0F
# The flags MAP_SHARED_VALIDATE accepts on a file (Linux's LEGACY_MAP_MASK, and the huge-page size bits).
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000
                   | 0x8000 | 0x1_0000 | 0x2_0000 | 0x4_0000 | 0x400_0000)
MAP_HUGE_MASK = 0x3F << 26
MAP_FIXED_NOREPLACE = 0x100000
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
PROT_SEM = 0x08                                          # accepted and ignored, as on x86
PROT_GROWSDOWN, PROT_GROWSUP = 0x0100_0000, 0x0200_0000
MMAP_MIN_ADDR = 0x10000   # as Linux's vm.mmap_min_addr: the NULL page and its neighbours stay unmapped
MAX_FILE_OFFSET = (1 << 63) - 1   # MAX_LFS_FILESIZE: a mapping of a file must end below it


def _page_up(x: int) -> int:
    """Linux's PAGE_ALIGN on an unsigned long: a length within a page of 2**64 wraps to 0."""
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & (1 << 64) - 1


def sys_brk(kernel: Kernel, proc: Process, addr: int, *_: int) -> int:
    """Linux semantics: returns the new break, or the old one if the request fails."""
    vm = proc.vmspace
    if addr < vm.heap_start or addr >= USER_TOP:
        return vm.heap_end
    old_top, new_top = _page_up(vm.heap_end), _page_up(addr)
    if new_top > old_top:
        if vm.map.overlaps(old_top, new_top):
            return vm.heap_end
        heap = VMObject(kernel.vm, ANONYMOUS, (new_top - old_top) // PAGE_SIZE)
        vm.map.insert(MapEntry(old_top, new_top, heap, 0, PROT_READ | PROT_WRITE, name="heap"))
    elif new_top < old_top:
        vm.unmap(new_top, old_top, "munmap")
    vm.heap_end = addr
    return addr


def sys_mmap(kernel: Kernel, proc: Process, addr: int, length: int, prot: int, flags: int, fd: int,
             offset: int) -> int:
    """Linux's checks in Linux's order (arch/x86 sys_mmap, then do_mmap).

    The map entry's maximum protection (FreeBSD's max_protection, Linux's
    VM_MAY* bits) is fixed here: a shared mapping of a file opened read-only
    can never become writable, whatever mprotect is asked later.  Every
    file of the guest's filesystem is opened read-only.  Protection bits
    other than read, write and exec are ignored, as Linux ignores them.
    """
    vm = proc.vmspace
    if offset & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    file = None
    if not flags & MAP_ANONYMOUS:
        file = proc.files.get(fd)
        if file is None:
            raise SyscallError(errno.EBADF)
        if isinstance(file, DeviceFile) and file.is_zero:
            file, flags = None, flags | MAP_ANONYMOUS     # /dev/zero maps as anonymous memory, shared or not
    if length == 0:
        raise SyscallError(errno.EINVAL)
    size = _page_up(length)
    if size == 0 or size > USER_TOP:
        raise SyscallError(errno.ENOMEM)
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(errno.EINVAL)
    if kind == MAP_SHARED_VALIDATE:
        if file is None:
            raise SyscallError(errno.EINVAL)       # as Linux 6.x answers it for anonymous memory
        if flags & ~(LEGACY_MAP_MASK | MAP_HUGE_MASK):
            raise SyscallError(errno.EOPNOTSUPP)
    shared = kind != MAP_PRIVATE
    prot &= PROT_MASK
    max_protection = PROT_MASK
    if file is not None:
        if offset + size > MAX_FILE_OFFSET:
            raise SyscallError(errno.EOVERFLOW)
        if not isinstance(file, RegularFile):
            raise SyscallError(errno.EACCES if not file.readable else errno.ENODEV)
        if shared:
            # The file is open read-only: MAP_SHARED with PROT_WRITE is refused, and VM_MAYWRITE is cleared.
            if prot & PROT_WRITE:
                raise SyscallError(errno.EACCES)
            max_protection &= ~PROT_WRITE

    start = _place(vm, addr, size, flags)
    if file is not None:
        obj = kernel.fs.object_for(file.file)
        entry_offset, cow = offset, not shared
    else:
        obj = VMObject(kernel.vm, ANONYMOUS, size // PAGE_SIZE)
        entry_offset, cow = 0, False
    entry = MapEntry(start, start + size, obj, entry_offset, prot, max_protection, cow=cow, needs_copy=cow,
                     shared=shared, name="mmap")
    vm.map.insert(entry)
    if file is not None and kernel.prefault == MAP:
        vm_map_pmap_enter(vm, entry)
    return start


def _place(vm: VMSpace, addr: int, size: int, flags: int) -> int:
    """Where a new mapping of `size` bytes goes (get_unmapped_area); with MAP_FIXED, what was there is unmapped."""
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr > USER_TOP - size:
            raise SyscallError(errno.ENOMEM)
        if addr & (PAGE_SIZE - 1):
            raise SyscallError(errno.EINVAL)
        if addr < MMAP_MIN_ADDR:
            raise SyscallError(errno.EPERM)
        if flags & MAP_FIXED_NOREPLACE and vm.map.overlaps(addr, addr + size):
            raise SyscallError(errno.EEXIST)
        vm.unmap(addr, addr + size, "munmap")
        return addr
    hint = addr & ~(PAGE_SIZE - 1)
    if hint >= MMAP_MIN_ADDR and hint + size <= USER_TOP and not vm.map.overlaps(hint, hint + size):
        return hint
    found = vm.map.find_space(size)
    if found is None:
        raise SyscallError(errno.ENOMEM)
    return found


def sys_munmap(kernel: Kernel, proc: Process, addr: int, length: int, *_: int) -> int:
    """Linux's do_vmi_munmap checks: the range must lie below the top of user space, and not be empty."""
    if addr & (PAGE_SIZE - 1) or addr > USER_TOP or length > USER_TOP - addr:
        raise SyscallError(errno.EINVAL)
    end = addr + _page_up(length)
    if end == addr:
        raise SyscallError(errno.EINVAL)
    proc.vmspace.unmap(addr, end, "munmap")
    return 0


def sys_mprotect(kernel: Kernel, proc: Process, addr: int, length: int, prot: int, *_: int) -> int:
    """Linux's do_mprotect_pkey, check for check.

    Entries are changed one by one from `addr` up; a hole (ENOMEM) or an
    entry whose maximum protection forbids `prot` (EACCES) ends the call
    there, leaving the entries before it changed, as Linux does.
    PROT_GROWSDOWN extends the change down to the start of the stack.
    """
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        raise SyscallError(errno.EINVAL)
    prot &= ~grows
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    if length == 0:
        return 0
    end = (addr + _page_up(length)) & (1 << 64) - 1     # unsigned long arithmetic: a wrap is caught next
    if end <= addr:
        raise SyscallError(errno.ENOMEM)
    if prot & ~(PROT_MASK | PROT_SEM):
        raise SyscallError(errno.EINVAL)
    prot &= PROT_MASK
    vm = proc.vmspace
    first = vm.map.lookup(addr) if addr < USER_TOP else None
    if grows:
        # x86 has no VM_GROWSUP entries; only the stack grows down.
        if grows == PROT_GROWSUP or first is None or first.name != "stack":
            raise SyscallError(errno.EINVAL)
        addr = first.start
    if first is None:
        raise SyscallError(errno.ENOMEM)
    at = addr
    for entry in vm.map.clip(addr, min(end, USER_TOP)):
        if entry.start != at:
            raise SyscallError(errno.ENOMEM)
        if prot & ~entry.max_protection:
            raise SyscallError(errno.EACCES)
        lost = entry.protection & ~prot
        entry.protection = prot
        if lost:
            vm.pmap.protect(entry.start, entry.end, prot, "mprotect")
        at = entry.end
    if at < end:
        raise SyscallError(errno.ENOMEM)
    return 0


MADV_DONTNEED = 4
# Every advice Linux 6.1 knows; only MADV_DONTNEED changes what the process sees, the rest are hints.
MADV_KNOWN = frozenset({0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 100, 101})
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def _range_end(addr: int, length: int) -> int:
    """The end of [addr, addr + length) rounded to pages: EINVAL for a misaligned start, ENOMEM past user
    space (the callers say ENOMEM for a hole themselves, after doing what they can)."""
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    end = addr + _page_up(length)
    if end > USER_TOP:
        raise SyscallError(errno.ENOMEM)
    return end


def sys_madvise(kernel: Kernel, proc: Process, addr: int, length: int, advice: int, *_: int) -> int:
    """MADV_DONTNEED drops the pages: a private mapping reads zeroes (anonymous) or the file again afterwards,
    a shared one keeps its pages in the object.  Pages nothing else can reach are freed at once."""
    if advice not in MADV_KNOWN:
        raise SyscallError(errno.EINVAL)
    vm = proc.vmspace
    end = _range_end(addr, length)
    if end == addr:
        return 0
    if advice == MADV_DONTNEED:
        for entry in vm.map.clip(addr, end):
            _dont_need(kernel, vm, entry)
    if not vm.map.covered(addr, end):
        raise SyscallError(errno.ENOMEM)
    return 0


def _dont_need(kernel: Kernel, vm: VMSpace, entry: MapEntry) -> None:
    vm.pmap.remove(entry.start, entry.end, "madvise")
    if entry.shared:
        return
    obj = entry.object
    first, last = entry.pindex(entry.start), entry.pindex(entry.end - 1) + 1
    if obj.kind == ANONYMOUS and obj.backing is None and obj.shadow_count == 0 \
            and sum(e.object is obj for e in vm.map.entries) == obj.ref_count:
        obj.page_remove(first, last)        # only this map's entries reach it: the pages go now
        return
    if obj.kind != ANONYMOUS:
        return                              # no private copy yet: the file's pages are what it reads
    # Private copies others may still reach (a fork's shadow chain): the range starts over, on the file's
    # object again for a file's mapping, on a fresh zero-filled object for anonymous memory.
    bottom, offset = entry.bottom()
    if bottom.kind != ANONYMOUS:
        bottom.reference()
        entry.object, entry.offset, entry.cow, entry.needs_copy = bottom, offset, True, True
    else:
        entry.object, entry.offset = VMObject(kernel.vm, ANONYMOUS, (entry.end - entry.start) // PAGE_SIZE), 0
    obj.deallocate()


def sys_msync(kernel: Kernel, proc: Process, addr: int, length: int, flags: int, *_: int) -> int:
    """Nothing to write back (the guest's files are read-only); Linux's checks."""
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(errno.EINVAL)
    end = _range_end(addr, length)
    if end > addr and not proc.vmspace.map.covered(addr, end):
        raise SyscallError(errno.ENOMEM)
    return 0


def sys_mremap(kernel: Kernel, proc: Process, old: int, old_size: int, new_size: int, flags: int, new_addr: int,
               *_: int) -> int:
    """Shrink in place, grow in place when the pages after are free, else move (MREMAP_MAYMOVE): the
    mapping's objects go along, so resident pages are found again at their new address (no copy)."""
    vm = proc.vmspace
    if old & (PAGE_SIZE - 1) or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE or flags & MREMAP_DONTUNMAP:
        raise SyscallError(errno.EINVAL)     # MREMAP_DONTUNMAP: not modelled
    old_size, new_size = _page_up(old_size), _page_up(new_size)
    if new_size == 0 or old_size == 0:
        raise SyscallError(errno.EINVAL)      # old_size 0 duplicates a shared mapping: not modelled
    if old + old_size > USER_TOP or not vm.map.covered(old, old + old_size):
        raise SyscallError(errno.EFAULT)
    if len({(e.object, e.protection, e.shared) for e in vm.map.entries
            if e.start < old + old_size and old < e.end}) > 1 and new_size > old_size:
        raise SyscallError(errno.EFAULT)      # growing must stay within one mapping
    if flags & MREMAP_FIXED:
        if new_addr & (PAGE_SIZE - 1) or new_addr + new_size > USER_TOP:
            raise SyscallError(errno.EINVAL)
        if new_addr < old + old_size and old < new_addr + new_size:
            raise SyscallError(errno.EINVAL)
        vm.unmap(new_addr, new_addr + new_size, "munmap")
        return _move(kernel, vm, old, old_size, new_size, new_addr)
    if new_size <= old_size:
        vm.unmap(old + new_size, old + old_size, "munmap")
        return old
    if old + new_size <= USER_TOP and not vm.map.overlaps(old + old_size, old + new_size):
        _grow(kernel, vm, old + old_size, old + new_size)
        return old
    if not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.ENOMEM)
    found = vm.map.find_space(new_size)
    if found is None:
        raise SyscallError(errno.ENOMEM)
    return _move(kernel, vm, old, old_size, new_size, found)


def _grow(kernel: Kernel, vm: VMSpace, start: int, end: int) -> None:
    """The mapping grows by fresh pages like its own: zero-filled, with its protection."""
    last = vm.map.lookup(start - 1)
    obj = VMObject(kernel.vm, ANONYMOUS, (end - start) // PAGE_SIZE)
    vm.map.insert(MapEntry(start, end, obj, 0, last.protection, last.max_protection, shared=last.shared,
                           name=last.name))


def _move(kernel: Kernel, vm: VMSpace, old: int, old_size: int, new_size: int, to: int) -> int:
    keep = min(old_size, new_size)
    for entry in vm.map.clip(old, old + keep):
        entry.object.reference()
        vm.map.insert(MapEntry(to + entry.start - old, to + entry.end - old, entry.object, entry.offset,
                               entry.protection, entry.max_protection, entry.cow, entry.needs_copy, entry.shared,
                               entry.name))
    vm.unmap(old, old + old_size, "munmap")
    if new_size > old_size:
        _grow(kernel, vm, to + old_size, to + new_size)
    return to
