"""/proc: the few files of Linux's procfs that static programs read.

Mounted at the guest's /proc (whether or not the root has such a
directory): /proc/self, a link to the caller's own /proc/<pid>; and for each
process /proc/<pid>/exe, the program it runs (a "magic" link: following it
reaches the file itself, so open() and execve() of it work even where no
path names the program), and /proc/<pid>/maps, its map in Linux's format.
Busybox re-executes itself through /proc/self/exe; glibc reads it to find
itself.  Nothing else of procfs exists.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.fs import DirectoryEntry, Inode, Stat, SyntheticFile, dtype_of
from vmgames.kernel.vm.map import MapEntry, prot_letters
from vmgames.kernel.vm.object import VNODE

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

PROC_DEV = 0x16                 # st_dev of procfs: an anonymous device (0:22 here; Linux numbers them as mounted)
ROOT_INO = 1
SELF_INO = 0xF000_0001          # Linux's proc_self_init gives /proc/self an inode number of its own
MAPS_NAME_COLUMN = 73           # show_map_vma pads the line to 25 + 6 * sizeof(void *) - 1 columns, then a space


class _ProcInode(Inode):
    """An inode of /proc: owned by the process it describes (root for /proc itself), stamped at boot."""

    mode = stat.S_IFDIR | 0o555
    nlink = 1

    def __init__(self, kernel: Kernel, path: str, ino: int) -> None:
        self.kernel = kernel
        self.path = path
        self.ino = ino

    def stat(self, context: Any = None) -> Stat:
        uid, gid = self.kernel.credentials
        return Stat(self.mode, self.ino, PROC_DEV, self.nlink, uid, gid, 0, 0, 1024, 0, 0, 0, 0)


class ProcRoot(_ProcInode):
    """/proc: one directory per process, and self."""

    is_directory = True
    nlink = 2

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "/proc", ROOT_INO)

    def child(self, name: str, context: Any) -> Inode:
        if name == "self":
            return SelfLink(self.kernel)
        if name.isascii() and name.isdigit() and name == str(int(name)) and int(name) in self.kernel.processes:
            return ProcessDirectory(self.kernel, int(name))
        raise SyscallError(errno.ENOENT)

    def entries(self, context: Any) -> list[DirectoryEntry]:
        directory = dtype_of(stat.S_IFDIR)
        pids = [DirectoryEntry(str(pid), _pid_ino(pid, 0), directory) for pid in sorted(self.kernel.processes)]
        return [DirectoryEntry(".", ROOT_INO, directory), DirectoryEntry("..", ROOT_INO, directory), *pids,
                DirectoryEntry("self", SELF_INO, dtype_of(stat.S_IFLNK))]


def _pid_ino(pid: int, which: int) -> int:
    return (pid << 8) | which


def _caller(context: Any) -> Process:
    """The process looking: what "self" means.  A lookup with no process behind it finds no self."""
    if context is None:
        raise SyscallError(errno.ENOENT)
    return context


class SelfLink(_ProcInode):
    """/proc/self: a link to the caller's own /proc/<pid>."""

    is_symlink = True
    mode = stat.S_IFLNK | 0o777

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "/proc/self", SELF_INO)

    def link(self, context: Any) -> str:
        return str(_caller(context).pid)

    def readlink(self, context: Any) -> str:
        return self.link(context)


class ProcessDirectory(_ProcInode):
    """/proc/<pid>: exe and maps."""

    is_directory = True
    nlink = 2

    def __init__(self, kernel: Kernel, pid: int) -> None:
        super().__init__(kernel, f"/proc/{pid}", _pid_ino(pid, 0))
        self.pid = pid

    def child(self, name: str, context: Any) -> Inode:
        if name == "exe":
            return ExeLink(self.kernel, self.pid)
        if name == "maps":
            return MapsFile(self.kernel, self.pid)
        raise SyscallError(errno.ENOENT)

    def entries(self, context: Any) -> list[DirectoryEntry]:
        return [DirectoryEntry(".", self.ino, dtype_of(stat.S_IFDIR)),
                DirectoryEntry("..", ROOT_INO, dtype_of(stat.S_IFDIR)),
                DirectoryEntry("exe", _pid_ino(self.pid, 1), dtype_of(stat.S_IFLNK)),
                DirectoryEntry("maps", _pid_ino(self.pid, 2), dtype_of(stat.S_IFREG))]


def _process(kernel: Kernel, pid: int) -> Process:
    """The live process /proc/<pid> describes; a zombie has no program and no map left (ENOENT)."""
    proc = kernel.processes.get(pid)
    if proc is None or proc.vmspace is None or proc.vmspace.exe is None:
        raise SyscallError(errno.ENOENT)
    return proc


class ExeLink(_ProcInode):
    """/proc/<pid>/exe: the program the process runs, as Linux's mm->exe_file."""

    is_symlink = True
    mode = stat.S_IFLNK | 0o777

    def __init__(self, kernel: Kernel, pid: int) -> None:
        super().__init__(kernel, f"/proc/{pid}/exe", _pid_ino(pid, 1))
        self.pid = pid

    def link(self, context: Any) -> Inode:
        return _process(self.kernel, self.pid).vmspace.exe

    def readlink(self, context: Any) -> str:
        return self.kernel.fs.guest_path(self.link(context))


class MapsFile(_ProcInode, SyntheticFile):
    """/proc/<pid>/maps: its bytes are made when it is opened (Linux makes them as they are read)."""

    mode = stat.S_IFREG | 0o444

    def __init__(self, kernel: Kernel, pid: int) -> None:
        super().__init__(kernel, f"/proc/{pid}/maps", _pid_ino(pid, 2))
        self.pid = pid

    def contents(self, context: Any) -> bytes:
        return maps(self.kernel, _process(self.kernel, self.pid)).encode("utf-8", "surrogateescape")


def maps(kernel: Kernel, proc: Process) -> str:
    """The process's map in the format of Linux's show_map_vma, one line per region.

    Neighbouring entries Linux would have merged into one vma (the same
    kind of memory, the same rights, following on in the same file) are
    one line, as a brk heap grown in steps is one [heap].
    """
    lines = []
    for start, end, entry, offset, file in _regions(proc):
        shared = "s" if entry.shared else "p"
        if file is not None:
            info = file.stat()
            dev, ino, name = info.dev, info.ino, kernel.fs.guest_path(file)
        else:
            dev, ino, name = 0, 0, {"heap": "[heap]", "stack": "[stack]"}.get(entry.name, "")
        line = (f"{start:08x}-{end:08x} {prot_letters(entry.protection)}{shared} {offset:08x} "
                f"{os.major(dev):02x}:{os.minor(dev):02x} {ino} ")
        if name:
            line = line.ljust(MAPS_NAME_COLUMN - 1) + " " + name if len(line) < MAPS_NAME_COLUMN else line + name
        lines.append(line + "\n")
    return "".join(lines)


def _regions(proc: Process) -> list[tuple[int, int, MapEntry, int, Any]]:
    """(start, end, first entry, file offset, file or None) for each run of entries Linux would merge."""
    regions: list[tuple[int, int, MapEntry, int, Any]] = []
    for entry in proc.vmspace.map.entries:
        file, offset = _backing_file(entry)
        if regions:
            start, end, first, first_offset, first_file = regions[-1]
            follows = first_file is None or first_offset + (end - start) == offset
            if (end == entry.start and first_file is file and follows and first.name == entry.name
                    and first.protection == entry.protection and first.shared == entry.shared):
                regions[-1] = (start, entry.end, first, first_offset, first_file)
                continue
        regions.append((entry.start, entry.end, entry, offset, file))
    return regions


def _backing_file(entry: MapEntry) -> tuple[Any, int]:
    """The file at the bottom of the entry's chain and the offset in it of the entry's start (0 if anonymous)."""
    obj, offset = entry.bottom()
    if obj.kind != VNODE:
        return None, 0
    return obj.vnode, offset
