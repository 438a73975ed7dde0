"""Syscalls on names and what they name: the stat family, directories, the working directory, access, readlink.

The guest filesystem is read-only and shows the host's files as the host
describes them (fs.Stat: its inode numbers, devices, times, owners); the
walk from a name to a file is kernel/fs.py's, from the root, the working
directory or a directory fd (kernel/namei.py).  Each call checks what
Linux checks, in Linux's order (fs/stat.c, fs/readdir.c, fs/open.c,
fs/d_path.c, fs/namei.c).
"""

from __future__ import annotations

import os
import stat
import struct
from typing import TYPE_CHECKING

from vmgames.kernel import errno, namei
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import Directory
from vmgames.kernel.fs import Inode, Stat
from vmgames.kernel.namei import AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_SYMLINK_NOFOLLOW, descriptor
from vmgames.kernel.uaccess import copyin, copyout

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

AT_STATX_SYNC_TYPE = 0x6000      # AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC: both at once is EINVAL
STATX_BASIC_STATS = 0x7FF        # type, mode, nlink, uid, gid, atime, mtime, ctime, ino, size, blocks
STATX__RESERVED = 0x8000_0000
STATX_SIZE = 256                 # bytes of struct statx
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4
DIRENT64_HEADER = 19             # d_ino, d_off, d_reclen, d_type: offsetof(struct linux_dirent64, d_name)
INT_MAX = (1 << 31) - 1


def _seconds(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, ns % 1_000_000_000


def pack_stat(info: Stat) -> bytes:
    """struct stat as x86-64 lays it out (arch/x86/include/uapi/asm/stat.h): 144 bytes."""
    times = (*_seconds(info.atime_ns), *_seconds(info.mtime_ns), *_seconds(info.ctime_ns))
    return struct.pack("<QQQIIIIQqqq6q3q", info.dev, info.ino, info.nlink, info.mode, info.uid, info.gid, 0,
                       info.rdev, info.size, info.blksize, info.blocks, *times, 0, 0, 0)


def pack_statx(info: Stat) -> bytes:
    """struct statx (include/uapi/linux/stat.h), the basic fields filled; 256 bytes."""
    def timestamp(ns: int) -> bytes:
        return struct.pack("<qIi", *_seconds(ns), 0)

    head = struct.pack("<IIQIIIHHQQQQ", STATX_BASIC_STATS, info.blksize, 0, info.nlink, info.uid, info.gid,
                       info.mode & 0xFFFF, 0, info.ino, info.size, info.blocks, 0)
    times = timestamp(info.atime_ns) + bytes(16) + timestamp(info.ctime_ns) + timestamp(info.mtime_ns)
    devices = struct.pack("<IIII", os.major(info.rdev), os.minor(info.rdev), os.major(info.dev), os.minor(info.dev))
    return (head + times + devices).ljust(STATX_SIZE, b"\0")


def _empty_path(proc: Process, dirfd: int, path: int) -> bool:
    """Whether `path` is NULL or "" for a real descriptor: the call is then about the open file (fstat)."""
    if dirfd < 0:
        return False
    if path == 0:
        return True
    try:
        return copyin(proc, path, 1) == b"\0"
    except SyscallError:
        return False


def _stat_at(kernel: Kernel, proc: Process, dirfd: int, path: int, flags: int, valid_flags: int) -> Stat:
    """What fstatat, statx and faccessat look at, in Linux 6.18's order: with AT_EMPTY_PATH, an empty (or
    NULL) path and a descriptor, the open file itself (any: a pipe, the console), whatever else the flags
    say; then flags it does not know are EINVAL, a bad path EFAULT, an empty path ENOENT (the working
    directory with AT_EMPTY_PATH), and the file the path names from `dirfd`."""
    if flags & AT_EMPTY_PATH and _empty_path(proc, dirfd, path):
        return descriptor(proc, dirfd).stat()
    if flags & ~valid_flags:
        raise SyscallError(errno.EINVAL)
    name = "" if path == 0 and flags & AT_EMPTY_PATH else namei.path_argument(proc, path)
    if not name and flags & AT_EMPTY_PATH:
        return namei.working_directory(kernel, proc).stat(proc)
    return namei.lookup(kernel, proc, dirfd, name, follow=not flags & AT_SYMLINK_NOFOLLOW).stat(proc)


STAT_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH


def sys_newfstatat(kernel: Kernel, proc: Process, dirfd: int, path: int, buf: int, flags: int, *_: int) -> int:
    copyout(proc, buf, pack_stat(_stat_at(kernel, proc, dirfd, path, flags, STAT_FLAGS)))
    return 0


def sys_fstat(kernel: Kernel, proc: Process, fd: int, buf: int, *_: int) -> int:
    copyout(proc, buf, pack_stat(descriptor(proc, fd).stat()))
    return 0


def sys_stat(kernel: Kernel, proc: Process, path: int, buf: int, *_: int) -> int:
    return sys_newfstatat(kernel, proc, AT_FDCWD, path, buf, 0)


def sys_lstat(kernel: Kernel, proc: Process, path: int, buf: int, *_: int) -> int:
    return sys_newfstatat(kernel, proc, AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW)


def sys_statx(kernel: Kernel, proc: Process, dirfd: int, path: int, flags: int, mask: int, buf: int,
              *_: int) -> int:
    """statx: the same answers as stat, in struct statx; the basic fields only (no birth time).  A reserved
    mask bit, or both sync types, is EINVAL before anything else."""
    if mask & STATX__RESERVED or flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE:
        raise SyscallError(errno.EINVAL)
    copyout(proc, buf, pack_statx(_stat_at(kernel, proc, dirfd, path, flags, STAT_FLAGS | AT_STATX_SYNC_TYPE)))
    return 0


def sys_getdents64(kernel: Kernel, proc: Process, fd: int, dirp: int, count: int, *_: int) -> int:
    """linux_dirent64 records from where the directory's position is: '.' and '..' first, then the entries
    sorted by name.  d_off is the position of the next one (what lseek takes back).  0 at the end; EINVAL
    if the first record does not fit."""
    file = descriptor(proc, fd)
    if not isinstance(file, Directory):
        raise SyscallError(errno.ENOTDIR)
    listing = file.listing(proc)
    room = count if count <= INT_MAX else -1     # the kernel holds the count in an int
    records = bytearray()
    position = file.position
    while position < len(listing):
        entry = listing[position]
        name = entry.name.encode("utf-8", "surrogateescape") + b"\0"
        length = (DIRENT64_HEADER + len(name) + 7) & ~7
        if len(records) + length > room:
            if not records:
                raise SyscallError(errno.EINVAL)
            break
        header = struct.pack("<QqHB", entry.ino, position + 1, length, entry.type)
        records += header + name.ljust(length - DIRENT64_HEADER, b"\0")
        position += 1
    copyout(proc, dirp, bytes(records))
    file.position = position
    return len(records)


def sys_getcwd(kernel: Kernel, proc: Process, buf: int, size: int, *_: int) -> int:
    """The working directory's guest path and its NUL; ERANGE if `size` is short (before the copy's EFAULT)."""
    path = proc.cwd.encode("utf-8", "surrogateescape") + b"\0"
    if len(path) > size:
        raise SyscallError(errno.ERANGE)
    copyout(proc, buf, path)
    return len(path)


def sys_chdir(kernel: Kernel, proc: Process, path: int, *_: int) -> int:
    _change_directory(kernel, proc, namei.lookup(kernel, proc, AT_FDCWD, namei.path_argument(proc, path)))
    return 0


def sys_fchdir(kernel: Kernel, proc: Process, fd: int, *_: int) -> int:
    file = descriptor(proc, fd)
    if not isinstance(file, Directory):
        raise SyscallError(errno.ENOTDIR)
    _change_directory(kernel, proc, file.directory)
    return 0


def _change_directory(kernel: Kernel, proc: Process, inode: Inode) -> None:
    if not inode.is_directory:
        raise SyscallError(errno.ENOTDIR)
    if not permitted(kernel, inode.stat(proc), MAY_EXEC):
        raise SyscallError(errno.EACCES)
    proc.cwd = inode.path


def permitted(kernel: Kernel, info: Stat, mask: int) -> bool:
    """Linux's generic_permission for the run's identity: the owner's, group's or others' bits; root
    (CAP_DAC_OVERRIDE) may read and write anything and search any directory, and execute a file with
    some execute bit."""
    uid, gid = kernel.credentials
    shift = 6 if uid == info.uid else 3 if gid == info.gid else 0
    if not mask & ~(info.mode >> shift) & 0o7:
        return True
    if uid != 0:
        return False
    return stat.S_ISDIR(info.mode) or not mask & MAY_EXEC or bool(info.mode & 0o111)


def sys_access(kernel: Kernel, proc: Process, path: int, mode: int, *_: int) -> int:
    return sys_faccessat2(kernel, proc, AT_FDCWD, path, mode, 0)


def sys_faccessat(kernel: Kernel, proc: Process, dirfd: int, path: int, mode: int, *_: int) -> int:
    return sys_faccessat2(kernel, proc, dirfd, path, mode, 0)


def sys_faccessat2(kernel: Kernel, proc: Process, dirfd: int, path: int, mode: int, flags: int, *_: int) -> int:
    """Linux's do_faccessat on a read-only filesystem: W_OK of a file, directory or link is EROFS
    (sb_permission, before the bits are looked at); X_OK follows the execute bits."""
    if mode & ~(R_OK | W_OK | X_OK):
        raise SyscallError(errno.EINVAL)
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    info = _stat_at(kernel, proc, dirfd, path, flags, AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)
    kind = stat.S_IFMT(info.mode)
    if mode & W_OK and kind in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        raise SyscallError(errno.EROFS)
    if not permitted(kernel, info, mode):
        raise SyscallError(errno.EACCES)
    return 0


def sys_readlink(kernel: Kernel, proc: Process, path: int, buf: int, size: int, *_: int) -> int:
    return sys_readlinkat(kernel, proc, AT_FDCWD, path, buf, size)


def sys_readlinkat(kernel: Kernel, proc: Process, dirfd: int, path: int, buf: int, size: int, *_: int) -> int:
    """A link's target, cut to `size` bytes and not NUL-terminated; EINVAL for a size <= 0 (first) or for
    something that is not a link; /proc/self/exe gives the program's guest path."""
    if size <= 0:
        raise SyscallError(errno.EINVAL)
    name = namei.path_argument(proc, path)
    if not name:
        # An empty path names dirfd itself, which (without O_PATH) is never a link.
        if dirfd != AT_FDCWD:
            descriptor(proc, dirfd)
        raise SyscallError(errno.ENOENT)
    inode = namei.lookup(kernel, proc, dirfd, name, follow=False)
    if not inode.is_symlink:
        raise SyscallError(errno.EINVAL)
    target = inode.readlink(proc).encode("utf-8", "surrogateescape")[:size]
    copyout(proc, buf, target)
    return len(target)
