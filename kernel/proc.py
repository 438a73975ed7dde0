"""Processes: the process table's entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernel.file import OpenFile
from kernel.vm.map import VMSpace

if TYPE_CHECKING:
    from kernel.kernel import Kernel

RUNNABLE = "runnable"
SLEEPING = "sleeping"    # blocked in a syscall, which restarts when it is woken
ZOMBIE = "zombie"        # exited, waiting for its parent to reap it

MAX_FDS = 1024


@dataclass(eq=False)
class Process:
    pid: int
    ppid: int
    name: str
    kernel: Kernel
    vmspace: VMSpace
    context: Any = None                      # the saved CPU context (a UcContext)
    files: dict[int, OpenFile] = field(default_factory=dict)
    cloexec: set[int] = field(default_factory=set)   # descriptors that exec closes (FD_CLOEXEC)
    state: str = RUNNABLE
    exit_code: int = 0
    signal: int = 0                          # the signal that killed it, or 0
    death: str = ""                          # one line saying how it died, for the user
    instructions: int = 0                    # instructions this process retired
    channel: Any = None                      # what a sleeping process waits for
    reaped: list[int] = field(default_factory=list)   # pids of the children it has waited for
    exit_order: int = 0                      # when it exited, to reap children in that order

    @property
    def wait_status(self) -> int:
        """The status word as Linux's wait4 encodes it."""
        return self.signal & 0x7F if self.signal else (self.exit_code & 0xFF) << 8

    @property
    def shell_status(self) -> int:
        """What a shell reports as $?: the exit code, or 128 + the signal."""
        return 128 + self.signal if self.signal else self.exit_code & 0xFF

    def close_fd(self, fd: int) -> bool:
        """Drop a descriptor; the open file closes when its last descriptor goes."""
        file = self.files.pop(fd, None)
        self.cloexec.discard(fd)
        if file is None:
            return False
        file.detach(self)
        file.references -= 1
        if file.references == 0:
            file.close()
        return True

    def close_on_exec(self) -> None:
        for fd in list(self.cloexec):
            self.close_fd(fd)

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close_fd(fd)

    def allocate_fd(self, file: OpenFile) -> int:
        for fd in range(MAX_FDS):
            if fd not in self.files:
                self.files[fd] = file
                return fd
        return -1
