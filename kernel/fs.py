"""The guest filesystem: a read-only view of one host directory.

Guest paths are resolved inside the root; nothing outside it (through `..`
or a symbolic link) can be reached.  Each file has one VM object, shared by
every mapping of it, so program text is paged in once for all processes.
"""

from __future__ import annotations

import os
import posixpath
import stat

from kernel import errno
from kernel.errno import SyscallError
from kernel.vm.context import VMContext
from kernel.vm.object import VNODE, VMObject

PATH_MAX = 4096


class HostFile:
    """A regular file of the host, seen by the guest as `path`."""

    def __init__(self, path: str, host_path: str, size: int, executable: bool) -> None:
        self.path = path
        self.host_path = host_path
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


class HostDirectory:
    """A directory of the host, seen by the guest as `path`: it can be opened, not read."""

    def __init__(self, path: str, host_path: str) -> None:
        self.path = path
        self.host_path = host_path


class FileSystem:
    def __init__(self, root: str, vm: VMContext) -> None:
        self.root = os.path.realpath(root)
        self.vm = vm
        self._files: dict[str, HostFile] = {}
        # Programs started from the host, by the name they were given, so that a
        # program can exec itself through its argv[0].
        self._started: dict[str, str] = {}

    def lookup(self, path: str) -> HostFile:
        """The regular file at guest `path`; raises SyscallError(ENOENT/EACCES/EISDIR/...)."""
        found = self.lookup_any(path)
        if isinstance(found, HostDirectory):
            raise SyscallError(errno.EISDIR)
        return found

    def lookup_any(self, path: str) -> HostFile | HostDirectory:
        """The regular file or the directory at guest `path`, as open(2) finds it.

        A path that ends in a slash (or "/.") names a directory: a regular
        file there is ENOTDIR, as on Linux.  Any error the host gives while
        resolving it (a name too long, a loop of symbolic links) is the
        guest's errno.
        """
        if not path:
            raise SyscallError(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        if path in self._started:
            return self._open_host(path, self._started[path])
        guest = posixpath.normpath(posixpath.join("/", path))
        host = os.path.realpath(os.path.join(self.root, guest.lstrip("/")))
        if host != self.root and not host.startswith(self.root.rstrip(os.sep) + os.sep):
            raise SyscallError(errno.ENOENT)
        found = self._open_host(guest, host)
        if isinstance(found, HostFile) and (path.endswith("/") or path.endswith("/.")):
            raise SyscallError(errno.ENOTDIR)
        return found

    def lookup_executable(self, path: str) -> HostFile:
        """The file execve(path) would run: as lookup, but a directory or a file without an execute bit is EACCES."""
        try:
            file = self.lookup(path)
        except SyscallError as error:
            raise SyscallError(errno.EACCES if error.errno == errno.EISDIR else error.errno) from None
        if not file.executable:
            raise SyscallError(errno.EACCES)
        return file

    def open_host(self, host_path: str) -> HostFile:
        """A file named by a host path (the program given on the command line).

        The guest can then open or exec it by the same name, even from outside the root.
        """
        host = os.path.realpath(host_path)
        file = self._open_host(host_path, host)
        if isinstance(file, HostDirectory):
            raise SyscallError(errno.EISDIR)
        self._started[host_path] = host
        return file

    def _open_host(self, guest: str, host: str) -> HostFile | HostDirectory:
        try:
            info = os.stat(host)
        except OSError as error:
            # ENOENT, ENOTDIR, EACCES, ENAMETOOLONG, ELOOP, EIO...: the host's answer is the guest's.
            raise SyscallError(error.errno or errno.EIO) from None
        if stat.S_ISDIR(info.st_mode):
            return HostDirectory(guest, host)
        if not stat.S_ISREG(info.st_mode):
            raise SyscallError(errno.EACCES)
        if not os.access(host, os.R_OK):
            raise SyscallError(errno.EACCES)
        cached = self._files.get(host)
        if cached is None or cached.size != info.st_size:
            cached = HostFile(guest, host, info.st_size, bool(info.st_mode & 0o111))
            self._files[host] = cached
        return cached

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
