"""Syscalls of the zero-copy experiment: ioctl(VMG_ZEROCOPY), vmsplice, and zc_reap.

ioctl and vmsplice have Linux's numbers and error codes; the request
VMG_ZEROCOPY and the call zc_reap are vmgames' own (README, "Zero-copy
sends").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel import errno, sysio
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.namei import descriptor
from vmgames.kernel.pipe import PipeReadEnd
from vmgames.kernel.sink import LEND, SinkEnd
from vmgames.kernel.uaccess import copyout, import_iovec

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

VMG_ZEROCOPY = 0x7A01       # ioctl request: arg 1 sends written pages copy-on-write, 0 copies them

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT

ZC_WAIT = 1                 # zc_reap flag: wait for a completion if one is still to come
ZC_RANGE_SIZE = 8           # struct zc_range { uint32_t lo, hi; }


def _sink(proc: Process, fd: int) -> SinkEnd:
    file = descriptor(proc, fd)
    if not isinstance(file, SinkEnd):
        raise SyscallError(errno.EBADF)
    return file


def sys_ioctl(kernel: Kernel, proc: Process, fd: int, request: int, arg: int, *_: int) -> int:
    """VMG_ZEROCOPY on a pipe's write end or a wire; any other request is the file's (kernel/sysio.py)."""
    if request != VMG_ZEROCOPY:
        return sysio.ioctl(kernel, proc, fd, request, arg)
    file = descriptor(proc, fd)
    if not isinstance(file, SinkEnd):
        raise SyscallError(errno.ENOTTY)
    if arg not in (0, 1):
        raise SyscallError(errno.EINVAL)
    file.zerocopy = bool(arg)
    return 0


def sys_vmsplice(kernel: Kernel, proc: Process, fd: int, iov: int, nr_segs: int, flags: int, *_: int) -> int:
    """Lend the pages of the iovec to a pipe or a wire, or read a pipe into it; Linux's order of checks.

    Sending, it waits for room once, then sends what fits and returns its
    count; from a pipe's read end it is a read into the segments (Linux's
    vmsplice_to_user).  Either waits unless SPLICE_F_NONBLOCK: the file's
    O_NONBLOCK does not count, as on Linux.
    """
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    file = descriptor(proc, fd)
    segments = import_iovec(proc, iov, nr_segs)
    blocking = not flags & SPLICE_F_NONBLOCK
    if not any(length for _, length in segments):
        return 0
    if isinstance(file, PipeReadEnd):
        return file.splice_to_user(proc, segments, blocking)
    if not isinstance(file, SinkEnd):
        raise SyscallError(errno.EBADF)
    ticket = file.completions.ticket()
    try:
        return file.send(proc, segments, LEND, blocking, partial=True, ticket=ticket)
    finally:
        ticket.seal()


def sys_zc_reap(kernel: Kernel, proc: Process, fd: int, out: int, most: int, flags: int, *_: int) -> int:
    """Copy out up to `most` ranges of completed vmsplice calls; with ZC_WAIT, wait for one if any is pending."""
    sink = _sink(proc, fd)
    if flags & ~ZC_WAIT:
        raise SyscallError(errno.EINVAL)
    completions = sink.completions
    if not completions.ready or most == 0:
        if most and flags & ZC_WAIT and completions.outstanding:
            kernel.sleep(proc, completions.channel)
        return 0
    ranges, taken = completions.ranges(most)
    copyout(proc, out, b"".join(lo.to_bytes(4, "little") + hi.to_bytes(4, "little") for lo, hi in ranges))
    del completions.ready[:taken]    # only once the user has them: a bad buffer loses nothing
    return len(ranges)
