"""A GDB remote stub for the machine: each process is a thread, every stop is exact.

The stub is one session with one gdb: the connection, the current stop and
the thread gdb selected.  Execution never leaves the kernel's own scheduler:
the stub stops it from the inside and talks to gdb right there, until gdb
resumes.  The work is cut by concern:
- tools/gdb/protocol.py    the wire: framing, checksums, acks, Ctrl-C;
- tools/gdb/packets.py     each packet and its answer (registers, memory, breakpoints, threads, queries);
- tools/gdb/execution.py   resumes, steps, held threads, and the stops in the kernel (its observer);
- tools/gdb/monitor.py     the `monitor` commands;
- tools/gdb/registers.py   the register set gdb sees, and its target description;
- emulator/debug.py        the board's debug port, through which all of them touch the machine.

When gdb goes away (or detaches), the stub lets go and the machine runs on.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from vmgames.emulator.cpu import SYSCALL_LENGTH
from vmgames.emulator.debug import DebugPort
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE, Process
from vmgames.tools.gdb import monitor, packets
from vmgames.tools.gdb.execution import NO_SIGNAL, SIGINT, SIGTRAP, ExecutionControl, Stop
from vmgames.tools.gdb.packets import KilledFromGdb
from vmgames.tools.gdb.protocol import Connection, Disconnected

__all__ = ["NO_SIGNAL", "SIGINT", "SIGTRAP", "GdbStub", "KilledFromGdb", "Stop", "listen", "tap_events"]


def tap_events(kernel: Kernel) -> monitor.EventTap:
    """Start keeping faults and TLB events for `monitor faults` and `monitor tlb`.

    Called before the program is loaded, so that they list what `monitor
    stats` counts from the start (exec's own faults included).
    """
    tap = monitor.EventTap(kernel.recorder.sink)
    kernel.recorder.sink = tap
    return tap


class GdbStub:
    """Serves one gdb; the first stop comes in the scheduler, before the first instruction of the first process."""

    def __init__(self, kernel: Kernel, conn: Connection, tap: monitor.EventTap, log=sys.stderr) -> None:
        self.kernel = kernel
        self.machine = kernel.machine
        self.port = DebugPort(kernel.machine)
        self.conn: Connection | None = conn
        self.log = log
        self.tap = tap
        self.stop: Stop | None = None
        self.waiting = False                  # gdb resumed us and waits for a stop reply
        self.thread = 0                       # Hg: whose registers and memory (0: the stopped one)
        self.control = ExecutionControl(self)
        self.control.attach()

    # Serving gdb while stopped.

    def serve(self, stop: Stop) -> None:
        """Talk to gdb until it resumes execution (or goes away)."""
        if self.conn is None:
            return
        self.stop = stop
        self.control.last_stop = (self.machine.now, self.rip(self.process(stop.tid)))
        try:
            if self.waiting:
                self.waiting = False
                self.thread = stop.tid   # gdb takes the thread of a stop reply as the one selected
                if stop.note:
                    self.console(stop.note)
                self.conn.send(packets.stop_reply(stop))
            while self.conn is not None and not self.handle(self.conn.read_packet()):
                pass
        except Disconnected as error:
            self.detach(f"gdb went away ({error}); running on")

    def handle(self, packet: bytes) -> bool:
        """Answer one packet; True when gdb resumed execution."""
        return packets.handle(self, packet)

    def console(self, text: str) -> None:
        """Print a line in gdb's console."""
        self.conn.send(b"O" + (text + "\n").encode().hex().encode())

    def detach(self, why: str) -> None:
        if self.conn is None:
            return
        print(f"vmgames: {why}", file=self.log)
        self.conn.close()
        self.conn = None
        self.control.release()
        self.kernel.recorder.sink = self.tap.downstream

    def finish(self, init: Process) -> None:
        """The last process is gone: tell a waiting gdb how the program ended."""
        if self.conn is None:
            return
        try:
            if self.waiting:
                reply = b"X%02x" % init.signal if init.signal else b"W%02x" % (init.exit_code & 0xFF)
                self.conn.send(reply)
        except Disconnected:
            pass
        self.detach("the program has ended; gdb disconnected")

    # Threads and their registers.

    def threads(self) -> list[Process]:
        return sorted((p for p in self.kernel.processes.values() if p.state != ZOMBIE), key=lambda p: p.pid)

    def process(self, tid: int) -> Process | None:
        proc = self.kernel.processes.get(tid)
        return proc if proc is not None and proc.state != ZOMBIE else None

    def alive(self, tid: int) -> bool:
        return self.process(tid) is not None

    def selected(self) -> Process:
        """Hg's thread, else the stop's, even when it has just exited (gdb reads its registers once more)."""
        proc = self.process(self.thread) or self.kernel.processes.get(self.stop.tid)
        if proc is None:
            raise ValueError("no such thread")
        return proc

    def context(self, proc: Process) -> Any:
        """Where `proc`'s registers are: None when live on the selected CPU, else its saved context."""
        return self.kernel.registers_of(proc)

    def register(self, proc: Process, name: str) -> int:
        """Register `name` of `proc` as gdb should see it."""
        value = self.port.read_register(name, self.context(proc))
        if name == "rip" and proc.pid in self.control.restarting:
            # The kernel keeps rip on the syscall, to make it again when woken; Linux shows the pc after it.
            value += SYSCALL_LENGTH
        return value

    def rip(self, proc: Process | None) -> int:
        return -1 if proc is None else self.register(proc, "rip")


def listen(address: str) -> socket.socket:
    """A listening socket on HOST:PORT (HOST defaults to 127.0.0.1, never all interfaces unless asked)."""
    host, _, port = address.rpartition(":")
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host.strip("[]") or "127.0.0.1", int(port)))
    server.listen(1)
    return server
