"""copyin/copyout: the kernel touching user memory.

The kernel goes through the process's page tables like the hardware does
(setting A and D), and a missing or read-only page is handled by vm_fault
exactly as if the user had touched it, so a read() into a fresh buffer takes
the same zero-fill fault it would on Linux.  An address no fault can fix
makes the syscall fail with EFAULT instead of killing the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator import mmu
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.vm.fault import NOMEM, find_page
from vmgames.kernel.vm.map import USER_TOP

if TYPE_CHECKING:
    from vmgames.kernel.proc import Process
    from vmgames.kernel.vm.page import VMPage

MAX_RW_COUNT = 0x7FFF_F000   # Linux caps one read or write at this many bytes
IOV_MAX = 1024               # Linux's UIO_MAXIOV: segments in one iovec


def _frame_address(proc: Process, va: int, access: int) -> int:
    vmspace = proc.vmspace
    walk = proc.kernel.machine.walk
    for _ in range(3):
        paddr, result = walk(vmspace.pmap.cr3, va, access)
        if paddr >= 0:
            return paddr | (va & (PAGE_SIZE - 1))
        outcome = proc.kernel.page_fault(proc, va, access, result, user=False)
        if outcome.fatal:
            raise SyscallError(errno.ENOMEM if outcome.reason == NOMEM else errno.EFAULT)
    raise RuntimeError(f"fault at {va:#x} resolved but the walk still fails")


def _chunks(va: int, length: int):
    """Split [va, va+length) at page boundaries."""
    if va < 0 or length < 0 or va + length > (1 << 47):
        raise SyscallError(errno.EFAULT)
    while length > 0:
        n = min(length, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
        yield va, n
        va += n
        length -= n


def copyin(proc: Process, va: int, length: int) -> bytes:
    """Read user memory."""
    ram = proc.kernel.machine.ram.bytes
    out = bytearray()
    for at, n in _chunks(va, length):
        paddr = _frame_address(proc, at, mmu.READ)
        out += ram[paddr:paddr + n]
    return bytes(out)


def copyout(proc: Process, va: int, data: bytes) -> None:
    """Write user memory (copy-on-write pages get their private copy first)."""
    machine = proc.kernel.machine
    view = memoryview(data)
    done = 0
    for at, n in _chunks(va, len(data)):
        paddr = _frame_address(proc, at, mmu.WRITE)
        machine.write_physical(paddr, view[done:done + n])
        done += n


def peek(proc: Process, va: int, length: int) -> bytes:
    """What the program would read at [va, va + length), faulting nothing in: for debuggers and for the
    instruction a crash report shows.  Stops at the first byte no map entry covers.

    A page not in the page tables (never touched, or unmapped by the pageout
    daemon) is read where the fault handler would find it: in an object of
    the chain, on swap, in the file, or zeros.
    """
    machine = proc.kernel.machine
    out = bytearray()
    while len(out) < length:
        n = min(length - len(out), PAGE_SIZE - (va & (PAGE_SIZE - 1)))
        mapped = machine.read_virtual(proc.vmspace.pmap.cr3, va, n)
        if not mapped:
            entry = proc.vmspace.map.lookup(va)
            if entry is None:
                break
            obj, index, _, page = find_page(entry, va)
            offset = va & (PAGE_SIZE - 1)
            if page is not None:
                mapped = bytes(machine.ram.bytes[page.paddr + offset:page.paddr + offset + n])
            elif index in obj.swap_blocks:
                mapped = obj.vm.swap_pager.read(obj, index, offset, n)
            elif obj.vnode is not None:
                try:
                    mapped = obj.vnode.read(index * PAGE_SIZE + offset, n).ljust(n, b"\0")
                except SyscallError:
                    break       # the host cannot read the file now
            else:
                mapped = bytes(n)
        out += mapped
        va += n
    return bytes(out)


def copyinstr(proc: Process, va: int, limit: int) -> str:
    """Read a NUL-terminated string of at most `limit` bytes (ENAMETOOLONG past it)."""
    ram = proc.kernel.machine.ram.bytes
    out = bytearray()
    while len(out) < limit:
        paddr = _frame_address(proc, va, mmu.READ)
        n = min(PAGE_SIZE - (va & (PAGE_SIZE - 1)), limit - len(out))
        chunk = bytes(ram[paddr:paddr + n])
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            return out.decode("utf-8", "surrogateescape")
        out += chunk
        va += n
    raise SyscallError(errno.ENAMETOOLONG)


def user_page(proc: Process, va: int) -> VMPage:
    """The page mapped at `va`, faulted in for reading if need be (Linux's get_user_pages)."""
    if va < 0 or va >= (1 << 47):
        raise SyscallError(errno.EFAULT)
    return proc.kernel.allocator.page_of(_frame_address(proc, va, mmu.READ) // PAGE_SIZE)


def copyin_u64s(proc: Process, va: int, count: int) -> list[int]:
    data = copyin(proc, va, 8 * count)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


def access_ok(va: int, length: int) -> bool:
    """Linux's access_ok: whether [va, va + length) ends at or below USER_TOP.

    It touches no page (the copy finds the holes); it is what makes a huge
    count fail with EFAULT before the count is cut to MAX_RW_COUNT.
    """
    return va + length <= USER_TOP


def import_iovec(proc: Process, iov: int, nr_segs: int) -> list[tuple[int, int]]:
    """The (address, length) segments of a user's iovec, checked as Linux's import_iovec does.

    `nr_segs` is an unsigned int there.  More than IOV_MAX segments, or any
    length negative as an ssize_t, is EINVAL (every segment is read before
    any is checked further); then a segment reaching past USER_TOP is EFAULT,
    and the lengths are cut to MAX_RW_COUNT in all.  A single segment is cut
    first and checked after (import_ubuf), so one huge length sends what it
    can where two fail.
    """
    nr_segs &= 0xFFFF_FFFF
    if nr_segs == 0:
        return []
    if nr_segs > IOV_MAX:
        raise SyscallError(errno.EINVAL)
    words = copyin_u64s(proc, iov, 2 * nr_segs)
    segments = list(zip(words[::2], words[1::2], strict=True))
    if any(length >= 1 << 63 for _, length in segments):
        raise SyscallError(errno.EINVAL)
    if nr_segs == 1:
        segments = [(segments[0][0], min(segments[0][1], MAX_RW_COUNT))]
    checked, left = [], MAX_RW_COUNT
    for base, length in segments:
        if not access_ok(base, length):
            raise SyscallError(errno.EFAULT)
        checked.append((base, min(length, left)))
        left -= checked[-1][1]
    return checked
