"""The guest filesystem: a read-only view of one host directory, and the mounts on it (/proc).

A guest path is walked a component at a time, as Linux's namei does, from
the root or from a starting directory (a process's cwd, a directory fd):
`..` of the root is the root itself, and a symbolic link's target is
followed inside the root (an absolute one from the guest's root), so
nothing outside the root can be reached.  Each node the walk finds is an
inode of the guest: a regular file, a directory, or some other file (a
symbolic link, a FIFO, a device) that can be looked at but not opened.
Each regular file has one VM object, shared by every mapping of it, so
program text is paged in once for all processes.
"""

from __future__ import annotations

import os
import posixpath
import stat
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, NamedTuple

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.vm.context import VMContext
from vmgames.kernel.vm.object import VNODE, VMObject

PATH_MAX = 4096
NAME_MAX = 255
MAXSYMLINKS = 40        # links one lookup may follow (Linux's MAXSYMLINKS)

# d_type in a linux_dirent64, from the file type bits of st_mode (Linux's fs_umode_to_dtype).
DT_UNKNOWN = 0


def dtype_of(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12


class Stat(NamedTuple):
    """What stat(2) says of a file (Linux's struct kstat); times in nanoseconds since the epoch."""

    mode: int
    ino: int
    dev: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of_host(cls, info: os.stat_result) -> Stat:
        return cls(info.st_mode, info.st_ino, info.st_dev, info.st_nlink, info.st_uid, info.st_gid, info.st_rdev,
                   info.st_size, info.st_blksize, info.st_blocks, info.st_atime_ns, info.st_mtime_ns,
                   info.st_ctime_ns)


class DirectoryEntry(NamedTuple):
    """One record getdents64 gives: the name, its inode number and its type (DT_*)."""

    name: str
    ino: int
    type: int


class Inode(ABC):
    """What a guest path names.  `path` is its guest path with every link resolved (what getcwd shows).

    `context` is the process looking (the filesystem does not know what a
    process is; /proc does): what /proc/self means depends on who asks.
    """

    path: str
    is_directory = False
    is_symlink = False
    is_device = False       # a device the kernel itself provides (/dev/null): open() reaches it

    @abstractmethod
    def stat(self, context: Any = None) -> Stat:
        """stat(2) of what the path names."""

    def child(self, name: str, context: Any) -> Inode:
        """The entry `name` of this directory; ENOENT if there is none."""
        raise SyscallError(errno.ENOTDIR)

    def entries(self, context: Any) -> list[DirectoryEntry]:
        """The directory's entries, '.' and '..' first, then the rest sorted by name."""
        raise SyscallError(errno.ENOTDIR)

    def link(self, context: Any) -> str | Inode:
        """A symbolic link's target: its text, or (a /proc magic link) the inode itself."""
        raise SyscallError(errno.EINVAL)

    def readlink(self, context: Any) -> str:
        """What readlink(2) gives for this link: EINVAL for anything else."""
        raise SyscallError(errno.EINVAL)


class HostInode(Inode):
    """A file of the host, seen by the guest as `path`."""

    def __init__(self, path: str, host_path: str) -> None:
        self.path = path
        self.host_path = host_path

    def stat(self, context: Any = None) -> Stat:
        """The host's lstat of it (a link or a FIFO is described, never followed or opened)."""
        try:
            return Stat.of_host(os.lstat(self.host_path))
        except OSError as error:
            raise SyscallError(error.errno or errno.EIO) from None


class HostFile(HostInode):
    """A regular file of the host."""

    def __init__(self, path: str, host_path: str, size: int, executable: bool) -> None:
        super().__init__(path, host_path)
        self.size = size
        self.executable = executable    # some execute bit is set (root may then run it)
        self.object: VMObject | None = None

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the file; a host that fails to give them (the file went away, a disk error) is EIO."""
        if offset >= self.size:
            return b""
        try:
            with open(self.host_path, "rb") as f:
                f.seek(offset)
                return f.read(min(length, self.size - offset))
        except OSError:
            raise SyscallError(errno.EIO) from None


class HostDirectory(HostInode):
    """A directory of the host: it can be opened, walked through and listed."""

    is_directory = True

    def __init__(self, path: str, host_path: str, fs: FileSystem) -> None:
        super().__init__(path, host_path)
        self.fs = fs

    def child(self, name: str, context: Any) -> Inode:
        return self.fs.child(self, name)

    def entries(self, context: Any) -> list[DirectoryEntry]:
        """Sorted by name, so that a listing is the same on every host (Linux's order is the disk's)."""
        parent = self.fs.parent(self, context)
        listed = [DirectoryEntry(".", self.stat().ino, dtype_of(stat.S_IFDIR)),
                  DirectoryEntry("..", parent.stat(context).ino, dtype_of(stat.S_IFDIR))]
        try:
            with os.scandir(self.host_path) as found:
                for entry in sorted(found, key=lambda e: e.name):
                    listed.append(DirectoryEntry(entry.name, entry.inode(), _dtype_of_entry(entry)))
        except OSError as error:
            raise SyscallError(error.errno or errno.EIO) from None
        return listed


def _dtype_of_entry(entry: os.DirEntry) -> int:
    """The type the host's getdents gave, asking the host again only for the kinds DirEntry does not say."""
    try:
        if entry.is_symlink():
            return dtype_of(stat.S_IFLNK)
        if entry.is_dir(follow_symlinks=False):
            return dtype_of(stat.S_IFDIR)
        if entry.is_file(follow_symlinks=False):
            return dtype_of(stat.S_IFREG)
        return dtype_of(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return DT_UNKNOWN


class HostSymlink(HostInode):
    """A symbolic link of the host: its target is followed inside the guest's root."""

    is_symlink = True

    def link(self, context: Any) -> str:
        try:
            return os.readlink(self.host_path)
        except OSError as error:
            raise SyscallError(error.errno or errno.EIO) from None

    def readlink(self, context: Any) -> str:
        return self.link(context)


class HostSpecial(HostInode):
    """A FIFO, a device or a socket of the host: stat shows it, open refuses it (EACCES)."""


class SyntheticFile(Inode):
    """A file the kernel makes up when it is opened (/proc/self/maps): its bytes depend on who opens it."""

    @abstractmethod
    def contents(self, context: Any) -> bytes:
        """Its bytes, as `context` (the process opening it) sees them."""


class FileSystem:
    def __init__(self, root: str, vm: VMContext) -> None:
        self.root = os.path.realpath(root)
        self.vm = vm
        self._files: dict[str, HostFile] = {}
        # Programs started from the host, by the name they were given, so that a
        # program can exec itself through its argv[0].
        self._started: dict[str, str] = {}
        self.mounts: dict[str, Inode] = {}      # guest path -> the root of what is mounted there

    def mount(self, path: str, inode: Inode) -> None:
        """Put another filesystem's root (/proc) at guest `path`, a directory of the root."""
        self.mounts[path] = inode

    @property
    def root_inode(self) -> HostDirectory:
        return HostDirectory("/", self.root, self)

    def guest_path_of(self, host_directory: str) -> str:
        """The guest's path for a host directory inside the root (links resolved), or / for one outside it:
        the first process's working directory is vmgames' own, as a shell's child inherits its directory."""
        host = os.path.realpath(host_directory)
        if host == self.root:
            return "/"
        if host.startswith(self.root.rstrip(os.sep) + os.sep):
            return "/" + os.path.relpath(host, self.root)
        return "/"

    def resolve(self, path: str, start: Inode | None = None, follow: bool = True, context: Any = None) -> Inode:
        """The inode `path` names: Linux's path walk, relative paths from `start` (default the root).

        A symbolic link in the middle is always followed, the last one only
        if `follow` (or the path ends in a slash).  Errors as Linux's: ENOENT,
        ENOTDIR (a component that is not a directory, or a trailing slash on
        a file), ELOOP (more than 40 links), ENAMETOOLONG (a path of PATH_MAX
        bytes, a name longer than NAME_MAX), EACCES or EIO from the host.
        """
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        if path in self._started:
            return self._inode_at(path, self._started[path])
        inode = self.root_inode if path.startswith("/") or start is None else start
        names = deque(name for name in path.split("/") if name)
        directory_only = path.endswith("/")
        links = 0
        while names:
            name = names.popleft()
            if not inode.is_directory:
                raise SyscallError(errno.ENOTDIR)
            if len(name) > NAME_MAX:
                raise SyscallError(errno.ENAMETOOLONG)
            if name == ".":
                continue
            if name == "..":
                inode = self.parent(inode, context)
                continue
            found = inode.child(name, context)
            if found.is_symlink and (names or follow or directory_only):
                links += 1
                if links > MAXSYMLINKS:
                    raise SyscallError(errno.ELOOP)
                target = found.link(context)
                if isinstance(target, Inode):
                    inode = target          # a /proc magic link: the inode itself, not a path
                    continue
                if not target:
                    raise SyscallError(errno.ENOENT)
                if target.startswith("/"):
                    inode = self.root_inode
                if target.endswith("/") and not names:
                    directory_only = True
                names.extendleft(reversed([n for n in target.split("/") if n]))
                continue
            inode = found
        if directory_only and not inode.is_directory:
            raise SyscallError(errno.ENOTDIR)
        return inode

    def parent(self, inode: Inode, context: Any = None) -> Inode:
        """The directory `..` names: the one holding `inode` (the root's is the root)."""
        if inode.path == "/":
            return inode
        return self.resolve(posixpath.dirname(inode.path), context=context)

    def child(self, directory: HostDirectory, name: str) -> Inode:
        """The inode of `name` in a host directory: a mount there, or the host's file."""
        path = posixpath.join(directory.path, name)
        mounted = self.mounts.get(path)
        if mounted is not None:
            return mounted
        return self._inode_at(path, os.path.join(directory.host_path, name))

    def _inode_at(self, guest: str, host: str) -> Inode:
        try:
            info = os.lstat(host)
        except OSError as error:
            # ENOENT, ENOTDIR, EACCES, ENAMETOOLONG, EIO...: the host's answer is the guest's.
            raise SyscallError(error.errno or errno.EIO) from None
        if stat.S_ISDIR(info.st_mode):
            return HostDirectory(guest, host, self)
        if stat.S_ISLNK(info.st_mode):
            return HostSymlink(guest, host)
        if not stat.S_ISREG(info.st_mode):
            return HostSpecial(guest, host)
        cached = self._files.get(host)
        if cached is None or cached.size != info.st_size:
            cached = HostFile(guest, host, info.st_size, bool(info.st_mode & 0o111))
            self._files[host] = cached
        return cached

    def lookup(self, path: str) -> HostFile:
        """The regular file at guest `path` (from the root); raises SyscallError(ENOENT/EACCES/EISDIR/...)."""
        found = self.lookup_any(path)
        if found.is_directory:
            raise SyscallError(errno.EISDIR)
        if not isinstance(found, HostFile):
            raise SyscallError(errno.EACCES)
        return found

    def lookup_any(self, path: str, start: Inode | None = None, context: Any = None,
                   follow: bool = True) -> Inode:
        """The regular file, directory or made-up file at guest `path`, as open(2) finds it.

        A path that ends in a slash (or "/.") names a directory: a regular
        file there is ENOTDIR, as on Linux.  Anything else (a FIFO, a device of
        the host) cannot be opened: EACCES; nor can a file the host does not let us
        read.  With `follow` False (O_NOFOLLOW) a link at the end is ELOOP.
        """
        found = self.resolve(path, start, follow, context)
        if found.is_symlink:
            raise SyscallError(errno.ELOOP)
        if isinstance(found, HostFile) and not os.access(found.host_path, os.R_OK):
            raise SyscallError(errno.EACCES)
        if not isinstance(found, HostFile | SyntheticFile) and not found.is_directory and not found.is_device:
            raise SyscallError(errno.EACCES)
        return found

    def lookup_executable(self, path: str, start: Inode | None = None, context: Any = None) -> HostFile:
        """The file execve(path) would run: a directory, or a file without an execute bit, is EACCES."""
        found = self.lookup_any(path, start, context)
        if not isinstance(found, HostFile) or not found.executable:
            raise SyscallError(errno.EACCES)
        return found

    def open_host(self, host_path: str) -> HostFile:
        """A file named by a host path (the program given on the command line).

        The guest can then open or exec it by the same name, even from outside the root.
        """
        host = os.path.realpath(host_path)
        found = self._inode_at(host_path, host)
        if isinstance(found, HostDirectory):
            raise SyscallError(errno.EISDIR)
        if not isinstance(found, HostFile) or not os.access(host, os.R_OK):
            raise SyscallError(errno.EACCES)
        self._started[host_path] = host
        return found

    def guest_path(self, file: HostFile) -> str:
        """The name the guest knows a file by, absolute (readlink of /proc/self/exe).

        A program started from outside the root has none: its host path stands for it.
        """
        if file.host_path.startswith(self.root.rstrip(os.sep) + os.sep):
            return "/" + os.path.relpath(file.host_path, self.root)
        return file.host_path

    def object_for(self, file: HostFile) -> VMObject:
        """The file's VM object (one per file); the caller gets a new reference.

        The filesystem keeps a reference of its own, like a vnode cache, so a
        file's pages stay resident after the last process using it exits.
        """
        if file.object is None:
            pages = (file.size + 4095) // 4096
            file.object = VMObject(self.vm, VNODE, pages, vnode=file)
        file.object.reference()
        return file.object
