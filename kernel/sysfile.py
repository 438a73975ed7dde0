"""Syscalls on file descriptors: read, write, writev, open, openat, close, pipe, pipe2, dup, dup2, dup3."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel import errno, namei, sysstat
from vmgames.kernel.devfs import Device
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import (
    O_ACCMODE,
    O_DIRECTORY,
    O_LARGEFILE,
    O_NONBLOCK,
    O_WRONLY,
    Directory,
    MemoryFile,
    OpenFile,
    RegularFile,
)
from vmgames.kernel.fs import PATH_MAX, HostFile, SyntheticFile
from vmgames.kernel.namei import AT_FDCWD, descriptor
from vmgames.kernel.pipe import open_pipe
from vmgames.kernel.proc import MAX_FDS
from vmgames.kernel.uaccess import MAX_RW_COUNT, access_ok, copyinstr, copyout, import_iovec
from vmgames.kernel.wire import WIRE_PATH

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_NOFOLLOW, O_CLOEXEC = 0o100, 0o200, 0o400, 0o1000, 0o400000, 0o2000000
# What an open file keeps of open's flags (F_GETFL shows them): Linux's do_dentry_open drops the rest.
OPEN_ONLY_FLAGS = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC
VALID_OPEN_FLAGS = 0o37777777 & ~0o74               # the O_* bits Linux knows (fcntl.h); open ignores the rest


def _readable(proc: Process, fd: int) -> OpenFile:
    file = descriptor(proc, fd)
    if not file.readable:
        raise SyscallError(errno.EBADF)
    return file


def _writable(proc: Process, fd: int) -> OpenFile:
    file = descriptor(proc, fd)
    if not file.writable:
        raise SyscallError(errno.EBADF)
    return file


def sys_read(kernel: Kernel, proc: Process, fd: int, buf: int, count: int, *_: int) -> int:
    file = _readable(proc, fd)
    if not access_ok(buf, count):
        raise SyscallError(errno.EFAULT)
    return file.read_to_user(proc, buf, min(count, MAX_RW_COUNT))


def sys_write(kernel: Kernel, proc: Process, fd: int, buf: int, count: int, *_: int) -> int:
    file = _writable(proc, fd)
    if not access_ok(buf, count):
        raise SyscallError(errno.EFAULT)
    return file.write_from_user(proc, [(buf, min(count, MAX_RW_COUNT))])


def sys_writev(kernel: Kernel, proc: Process, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    return _writable(proc, fd).write_from_user(proc, import_iovec(proc, iov, iovcnt))


def sys_open(kernel: Kernel, proc: Process, path: int, flags: int, *_: int) -> int:
    return sys_openat(kernel, proc, AT_FDCWD, path, flags)


def sys_openat(kernel: Kernel, proc: Process, dirfd: int, path: int, flags: int, *_: int) -> int:
    name = copyinstr(proc, path, PATH_MAX)
    if name == WIRE_PATH:
        return _open_wire(kernel, proc, flags)
    fd = proc.allocate_fd(_open_file(kernel, proc, dirfd, name, flags))
    if fd < 0:
        raise SyscallError(errno.EMFILE)
    if flags & O_CLOEXEC:
        proc.cloexec.add(fd)
    return fd


def _open_file(kernel: Kernel, proc: Process, dirfd: int, name: str, flags: int) -> OpenFile:
    """What open(2) opens on the read-only guest filesystem, with Linux's errors.

    A relative name starts at `dirfd` (the working directory for AT_FDCWD).
    A directory opens read-only (EISDIR for writing or O_CREAT); a regular
    file opens unless asked to be written or truncated (EROFS) or to be a
    directory (ENOTDIR); a missing file with O_CREAT cannot be made (EROFS);
    with O_NOFOLLOW a link at the end is ELOOP.
    """
    try:
        if not name:
            raise SyscallError(errno.ENOENT)
        start = namei.start_of(kernel, proc, dirfd, name)
        found = kernel.fs.lookup_any(name, start, proc, follow=not flags & O_NOFOLLOW)
    except SyscallError as error:
        if error.errno == errno.ENOENT and flags & O_CREAT:
            raise SyscallError(errno.EROFS) from None
        raise
    kept = (flags & VALID_OPEN_FLAGS & ~OPEN_ONLY_FLAGS) | O_LARGEFILE
    if found.is_directory:
        if flags & O_ACCMODE or flags & O_CREAT:
            raise SyscallError(errno.EISDIR)
        return Directory(found, kept)
    if flags & O_DIRECTORY:
        raise SyscallError(errno.ENOTDIR)
    if isinstance(found, Device):
        return found.open(kept)
    if isinstance(found, SyntheticFile):
        # /proc is not read-only: root may open its files for writing (writes are then EINVAL).
        if flags & O_ACCMODE and not sysstat.permitted(kernel, found.stat(proc), sysstat.MAY_WRITE):
            raise SyscallError(errno.EACCES)
        return MemoryFile(found, found.contents(proc), kept)
    if flags & O_ACCMODE or flags & O_TRUNC:
        raise SyscallError(errno.EROFS)
    assert isinstance(found, HostFile)
    return RegularFile(found, kept)


def _open_wire(kernel: Kernel, proc: Process, flags: int) -> int:
    """The wire only sends: it opens write-only (EACCES otherwise), never creates or truncates."""
    if flags & O_ACCMODE != O_WRONLY:
        raise SyscallError(errno.EACCES)
    wire = kernel.open_wire()
    wire.nonblocking = bool(flags & O_NONBLOCK)
    fd = proc.allocate_fd(wire)
    if fd < 0:
        wire.references = 0
        raise SyscallError(errno.EMFILE)
    if flags & O_CLOEXEC:
        proc.cloexec.add(fd)
    return fd


def sys_close(kernel: Kernel, proc: Process, fd: int, *_: int) -> int:
    if not proc.close_fd(fd):
        raise SyscallError(errno.EBADF)
    return 0


def sys_pipe(kernel: Kernel, proc: Process, fds: int, *_: int) -> int:
    return sys_pipe2(kernel, proc, fds, 0)


def sys_pipe2(kernel: Kernel, proc: Process, fds: int, flags: int, *_: int) -> int:
    """Two new descriptors, read end first; on a bad `fds` pointer neither is left open."""
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    read_end, write_end = open_pipe(kernel, nonblocking=bool(flags & O_NONBLOCK))
    installed = [fd for fd in (proc.allocate_fd(read_end), proc.allocate_fd(write_end)) if fd >= 0]
    try:
        if len(installed) < 2:
            raise SyscallError(errno.EMFILE)
        copyout(proc, fds, b"".join(fd.to_bytes(4, "little") for fd in installed))
    except Exception:       # EMFILE, EFAULT, or RAM exhausted faulting the array in
        for fd in installed:
            proc.close_fd(fd)
        raise
    if flags & O_CLOEXEC:
        proc.cloexec.update(installed)
    return 0


def sys_dup(kernel: Kernel, proc: Process, fd: int, *_: int) -> int:
    file = descriptor(proc, fd)
    new_fd = proc.allocate_fd(file)
    if new_fd < 0:
        raise SyscallError(errno.EMFILE)
    file.references += 1
    return new_fd


def sys_dup2(kernel: Kernel, proc: Process, fd: int, new_fd: int, *_: int) -> int:
    if fd == new_fd:
        descriptor(proc, fd)     # only checks that it is open
        return fd
    return sys_dup3(kernel, proc, fd, new_fd, 0)


def sys_dup3(kernel: Kernel, proc: Process, fd: int, new_fd: int, flags: int, *_: int) -> int:
    """Make `new_fd` name what `fd` names, closing what it named before."""
    if flags & ~O_CLOEXEC or fd == new_fd:
        raise SyscallError(errno.EINVAL)
    if new_fd >= MAX_FDS:
        raise SyscallError(errno.EBADF)
    file = descriptor(proc, fd)
    file.references += 1
    proc.close_fd(new_fd)
    proc.files[new_fd] = file
    if flags & O_CLOEXEC:
        proc.cloexec.add(new_fd)
    return new_fd
