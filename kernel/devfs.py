"""/dev: the two character devices every program expects, /dev/null and /dev/zero.

Mounted at the guest's /dev (the host's devices stay out of reach, whatever
the root holds).  /dev/null reads as empty and swallows writes; /dev/zero
reads as zeroes, swallows writes, and mapped, is anonymous memory: private,
or shared with MAP_SHARED, as Linux's shmem gives it (kernel/sysmem.py).
Their numbers are Linux's (1:3 and 1:5); /dev/wire, vmgames' own device,
is opened by name (kernel/sysfile.py).
"""

from __future__ import annotations

import stat
from typing import Any

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.file import O_ACCMODE, O_RDONLY, OpenFile
from vmgames.kernel.fs import DirectoryEntry, Inode, Stat, dtype_of

DEV_DEV = 0x5                   # st_dev of the devtmpfs (0:5, as on Linux)
ROOT_INO = 1
MEM_MAJOR = 1


class DevRoot(Inode):
    """/dev: null and zero."""

    is_directory = True
    path = "/dev"

    def __init__(self) -> None:
        self.devices = {"null": Device("null", 3, 2), "zero": Device("zero", 5, 3)}

    def stat(self, context: Any = None) -> Stat:
        return Stat(stat.S_IFDIR | 0o755, ROOT_INO, DEV_DEV, 2, 0, 0, 0, 0, 4096, 0, 0, 0, 0)

    def child(self, name: str, context: Any) -> Inode:
        if name not in self.devices:
            raise SyscallError(errno.ENOENT)
        return self.devices[name]

    def entries(self, context: Any) -> list[DirectoryEntry]:
        directory = dtype_of(stat.S_IFDIR)
        return [DirectoryEntry(".", ROOT_INO, directory), DirectoryEntry("..", ROOT_INO, directory),
                *(DirectoryEntry(name, device.ino, dtype_of(stat.S_IFCHR)) for name, device in
                  sorted(self.devices.items()))]


class Device(Inode):
    """A character device of the memory major: /dev/null (minor 3) or /dev/zero (minor 5)."""

    is_device = True

    def __init__(self, name: str, minor: int, ino: int) -> None:
        self.path = f"/dev/{name}"
        self.name = name
        self.minor = minor
        self.ino = ino

    def stat(self, context: Any = None) -> Stat:
        return Stat(stat.S_IFCHR | 0o666, self.ino, DEV_DEV, 1, 0, 0, (MEM_MAJOR << 8) | self.minor, 0, 4096, 0,
                    0, 0, 0)

    def open(self, flags: int) -> OpenFile:
        return DeviceFile(self, flags)


class DeviceFile(OpenFile):
    """An open /dev/null or /dev/zero."""

    def __init__(self, device: Device, flags: int = O_RDONLY) -> None:
        super().__init__(flags)
        self.device = device
        self.readable = flags & O_ACCMODE != 1
        self.writable = flags & O_ACCMODE != O_RDONLY

    @property
    def is_zero(self) -> bool:
        return self.device.name == "zero"

    def read(self, length: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        return bytes(length) if self.is_zero else b""

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        return len(data)

    def seek(self, offset: int, whence: int) -> int:
        return 0             # Linux's null_lseek: every seek succeeds and stays at 0

    def pread(self, offset: int, length: int) -> bytes:
        return self.read(length)

    def stat(self) -> Stat:
        return self.device.stat()
