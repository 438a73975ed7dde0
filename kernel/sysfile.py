"""Syscalls on file descriptors: read, write, writev, open, openat, close."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import errno
from kernel.errno import SyscallError
from kernel.file import OpenFile, RegularFile
from kernel.fs import PATH_MAX
from kernel.sysproc import signed
from kernel.uaccess import copyin, copyin_u64s, copyinstr, copyout

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.proc import Process

MAX_RW_COUNT = 0x7FFF_F000   # Linux caps one read or write at this many bytes
CHUNK = 64 << 10
IOV_MAX = 1024
O_ACCMODE, O_CREAT, O_TRUNC = 3, 0o100, 0o1000
AT_FDCWD = -100


def _file(proc: Process, fd: int) -> OpenFile:
    file = proc.files.get(signed(fd))
    if file is None:
        raise SyscallError(errno.EBADF)
    return file


def sys_read(kernel: Kernel, proc: Process, fd: int, buf: int, count: int, *_: int) -> int:
    file = _file(proc, fd)
    if not file.readable:
        raise SyscallError(errno.EBADF)
    data = file.read(min(count, MAX_RW_COUNT, CHUNK))
    copyout(proc, buf, data)
    return len(data)


def sys_write(kernel: Kernel, proc: Process, fd: int, buf: int, count: int, *_: int) -> int:
    file = _file(proc, fd)
    if not file.writable:
        raise SyscallError(errno.EBADF)
    count = min(count, MAX_RW_COUNT)
    written = 0
    while written < count:
        try:
            data = copyin(proc, buf + written, min(CHUNK, count - written))
        except SyscallError:
            if written:
                return written
            raise
        written += file.write(data)
    return written


def sys_writev(kernel: Kernel, proc: Process, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    if iovcnt > IOV_MAX:
        raise SyscallError(errno.EINVAL)
    words = copyin_u64s(proc, iov, 2 * iovcnt)
    total = 0
    for base, length in zip(words[::2], words[1::2], strict=True):
        if length:
            total += sys_write(kernel, proc, fd, base, length)
    return total


def sys_open(kernel: Kernel, proc: Process, path: int, flags: int, *_: int) -> int:
    return sys_openat(kernel, proc, AT_FDCWD & 0xFFFF_FFFF_FFFF_FFFF, path, flags)


def sys_openat(kernel: Kernel, proc: Process, dirfd: int, path: int, flags: int, *_: int) -> int:
    name = copyinstr(proc, path, PATH_MAX)
    if flags & O_ACCMODE or flags & (O_CREAT | O_TRUNC):
        raise SyscallError(errno.EROFS)
    if not name.startswith("/") and signed(dirfd) != AT_FDCWD:
        raise SyscallError(errno.EBADF if signed(dirfd) not in proc.files else errno.ENOTDIR)
    fd = proc.allocate_fd(RegularFile(kernel.fs.lookup(name)))
    if fd < 0:
        raise SyscallError(errno.EMFILE)
    return fd


def sys_close(kernel: Kernel, proc: Process, fd: int, *_: int) -> int:
    if not proc.close_fd(signed(fd)):
        raise SyscallError(errno.EBADF)
    return 0
