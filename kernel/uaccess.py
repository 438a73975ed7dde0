"""copyin/copyout: the kernel touching user memory.

The kernel goes through the process's page tables like the hardware does
(setting A and D), and a missing or read-only page is handled by vm_fault
exactly as if the user had touched it, so a read() into a fresh buffer takes
the same zero-fill fault it would on Linux.  An address no fault can fix
makes the syscall fail with EFAULT instead of killing the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator import mmu
from emulator.ram import PAGE_SIZE
from kernel import errno
from kernel.errno import SyscallError
from kernel.vm.fault import NOMEM, vm_fault

if TYPE_CHECKING:
    from kernel.proc import Process
    from kernel.vm.page import VMPage


def _frame_address(proc: Process, va: int, access: int) -> int:
    vmspace = proc.vmspace
    qwords = vmspace.pmap.qwords
    for _ in range(3):
        paddr, result = mmu.walk(qwords, vmspace.pmap.cr3, va, access)
        if paddr >= 0:
            return paddr | (va & (PAGE_SIZE - 1))
        outcome = vm_fault(vmspace, proc.kernel.allocator, va, access, result, None)
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
    ram = proc.kernel.machine.ram.bytes
    done = 0
    for at, n in _chunks(va, len(data)):
        paddr = _frame_address(proc, at, mmu.WRITE)
        ram[paddr:paddr + n] = data[done:done + n]
        done += n


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
