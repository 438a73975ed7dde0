"""Paths as a process names them: from the root, its working directory or a directory fd.

Linux's user_path_at: an absolute path starts at the guest's root, a
relative one at the directory `dirfd` names, or at the process's working
directory for AT_FDCWD.  The walk itself is the filesystem's
(FileSystem.resolve); the process is what /proc/self means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import Directory, OpenFile
from vmgames.kernel.fs import PATH_MAX, HostFile, Inode
from vmgames.kernel.uaccess import copyinstr

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_EACCESS, AT_SYMLINK_FOLLOW, AT_NO_AUTOMOUNT, AT_EMPTY_PATH = 0x100, 0x200, 0x400, 0x800, 0x1000


def path_argument(proc: Process, address: int) -> str:
    """A path from user memory: EFAULT for a bad pointer, ENAMETOOLONG at PATH_MAX bytes."""
    return copyinstr(proc, address, PATH_MAX)


def descriptor(proc: Process, fd: int) -> OpenFile:
    """The open file `fd` names in `proc`; EBADF if none."""
    file = proc.files.get(fd)
    if file is None:
        raise SyscallError(errno.EBADF)
    return file


def working_directory(kernel: Kernel, proc: Process) -> Inode:
    return kernel.fs.resolve(proc.cwd, context=proc)


def start_of(kernel: Kernel, proc: Process, dirfd: int, path: str) -> Inode | None:
    """Where a walk of `path` starts: None for the root; EBADF or ENOTDIR for a dirfd that cannot be one."""
    if path.startswith("/"):
        return None
    if dirfd == AT_FDCWD:
        return working_directory(kernel, proc)
    file = descriptor(proc, dirfd)
    if not isinstance(file, Directory):
        raise SyscallError(errno.ENOTDIR)
    return file.directory


def lookup(kernel: Kernel, proc: Process, dirfd: int, path: str, follow: bool = True) -> Inode:
    """The inode `path` names for `proc`, relative paths from `dirfd` (an empty path is ENOENT first)."""
    if not path:
        raise SyscallError(errno.ENOENT)
    return kernel.fs.resolve(path, start_of(kernel, proc, dirfd, path), follow, proc)


def lookup_executable(kernel: Kernel, proc: Process, path: str) -> HostFile:
    """The file execve(path) runs: from the working directory if relative; through /proc/self/exe too."""
    if not path:
        raise SyscallError(errno.ENOENT)
    return kernel.fs.lookup_executable(path, start_of(kernel, proc, AT_FDCWD, path), proc)
