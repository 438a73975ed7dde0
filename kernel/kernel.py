"""The kernel: the process table, the scheduler and the trap handlers, put together.

Each half lives where its name says, as xv6 keeps proc.c, trap.c and the
scheduler apart: kernel/proc.py (processes: spawn, fork, exit, signals,
sleep and wakeup), kernel/sched.py (the run queue and slices),
kernel/trap.py (syscalls, page faults and fatal traps), kernel/callout.py
(work due at a virtual time).  This class holds the state they share and
the observers (a debugger, a run limit) watching it.

The machine calls in on a syscall or a page fault (from inside the running
engine) and returns to the scheduler when a run ends: the quantum expired,
a syscall blocked or exited, or the process took a fault it cannot survive,
in which case it is killed with the signal a Linux kernel would send.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from typing import BinaryIO

from vmgames.emulator.determinism import SplitMix64
from vmgames.emulator.machine import Machine
from vmgames.kernel.callout import CalloutQueue
from vmgames.kernel.devfs import DevRoot
from vmgames.kernel.fs import FileSystem
from vmgames.kernel.observer import Observer
from vmgames.kernel.oom import oom_kill
from vmgames.kernel.pcpu import PerCPU
from vmgames.kernel.proc import RUNNABLE, Process, ProcessTable
from vmgames.kernel.procfs import ProcRoot
from vmgames.kernel.sched import DEFAULT_INTERLEAVE, DEFAULT_QUANTUM, Scheduler
from vmgames.kernel.sysproc import CLOCK_REALTIME, _now_ns
from vmgames.kernel.timer import Timers
from vmgames.kernel.trap import Traps
from vmgames.kernel.vm.context import VMContext
from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vm.pageout import PageoutDaemon
from vmgames.kernel.vm.shootdown import TLBShootdown
from vmgames.kernel.vmmeter import Recorder
from vmgames.kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE, Wire

DEFAULT_MAX_PROCESSES = 256
# getrandom's bytes come from the run's --seed, in a stream of their own (rdrand's is SplitMix64(seed)),
# and so does the order CPUs run in each round.
GETRANDOM_STREAM = int.from_bytes(b"getrandm", "little")
CPU_ORDER_STREAM = int.from_bytes(b"cpuorder", "little")


class Kernel(ProcessTable, Scheduler, Traps):
    def __init__(self, machine: Machine, root: str = ".", stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 quantum: int = DEFAULT_QUANTUM, interleave: int = DEFAULT_INTERLEAVE,
                 max_processes: int = DEFAULT_MAX_PROCESSES,
                 wire_rate: int = DEFAULT_WIRE_RATE, wire_capacity: int = DEFAULT_WIRE_CAPACITY,
                 uid: int = 0, gid: int = 0) -> None:
        self.machine = machine
        self.recorder = Recorder()
        self.recorder.clock = machine.clock_reader()
        self.allocator = PageAllocator(machine, self.recorder)
        self.vm = VMContext(self.allocator, self.recorder)
        self.pageout = PageoutDaemon(self.vm)   # woken by the allocator when frames run short
        self.allocator.pagedaemon = self.pageout
        self.pageout.oom = lambda pages: oom_kill(self, pages)
        self.fs = FileSystem(root, self.vm)
        self.fs.mount("/proc", ProcRoot(self))
        self.fs.mount("/dev", DevRoot())
        self.credentials = (uid, gid)           # every process's uid and gid (vmgames run --uid, --gid)
        self.entropy = SplitMix64(machine.determinism.seed ^ GETRANDOM_STREAM)    # what getrandom gives
        self._inode_numbers = itertools.count(1)    # for pipes: each has an inode number of its own
        self.stdio = (stdin or sys.stdin.buffer, stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        self.quantum = quantum
        self.interleave = interleave            # instructions each CPU runs per round, with several
        self.cpu_order = SplitMix64(machine.determinism.seed ^ CPU_ORDER_STREAM)
        self.max_processes = max_processes
        self.processes: dict[int, Process] = {}
        self.wire_rate = wire_rate              # bytes per 1000 instructions
        self.wire_capacity = wire_capacity      # bytes in flight on one wire
        self.callout = CalloutQueue(machine)    # wires: their peers take data at exact virtual times
        self.run_queue: deque[Process] = deque()    # one for every CPU
        self.cpus = [PerCPU(processor) for processor in machine.processors]
        self.pcpu = self.cpus[0]                # the CPU the kernel works on now (kernel/pcpu.py)
        self.shootdown = TLBShootdown(machine, self.recorder, self.cpus)
        self.timers = Timers(self)              # timed sleeps: a callout device while one is pending
        self.futexes: dict[tuple, deque] = {}   # futex word -> its sleepers, oldest first (kernel/futex.py)
        self.exec_error = ""                    # why the last exec said ENOEXEC
        self.prefault: str | None = None        # kernel/vm/prefault.py's MAP or FAULT_AROUND (vmgames run --prefault)
        self._next_pid = 1
        self._exits = 0
        self._reaped: dict[int, Process] = {}   # reaped processes, for their parents' RUSAGE_CHILDREN
        # The tools watching this run (a debugger, run limits, a snapshot): kernel/observer.py.
        self.observers: tuple[Observer, ...] = ()   # a tuple: one may leave while they are being called
        machine.page_fault_handler = self._page_fault
        machine.syscall_handler = self._syscall

    def observe(self, observer: Observer) -> None:
        """Let `observer` watch the run from now on."""
        self.observers += (observer,)

    def unobserve(self, observer: Observer) -> None:
        self.observers = tuple(o for o in self.observers if o is not observer)

    # The host's console, for the processes' standard descriptors.

    def _before_console_read(self, stream: BinaryIO) -> bool:
        """Let a debugger or a run limit wait for the input; False if the reader was put to sleep meanwhile."""
        for observer in self.observers:
            observer.console_wait(self, stream)
        return self.current is None or self.current.state == RUNNABLE

    def _before_console_write(self, stream: BinaryIO) -> bool:
        """The same for a write to the host, which blocks while nobody reads a full pipe."""
        for observer in self.observers:
            observer.console_write_wait(self, stream)
        return self.current is None or self.current.state == RUNNABLE

    def log(self, message: str) -> None:
        """A line of the kernel's own (Linux's dmesg), on the host's stderr between the programs' output."""
        stream = self.stdio[2]
        try:
            stream.write(f"vmgames: kernel: {message}\n".encode())
            stream.flush()
        except (OSError, ValueError):
            pass        # the host closed it: the log line is lost, the run goes on

    def new_inode_number(self) -> int:
        return next(self._inode_numbers)

    def realtime_ns(self) -> int:
        """CLOCK_REALTIME now: the times the kernel stamps on what it makes (a pipe)."""
        return _now_ns(self, None, CLOCK_REALTIME)

    def open_wire(self) -> Wire:
        """A new wire (open("/dev/wire")): its peer's deliveries are callouts."""
        wire = Wire(self, self.wire_rate, self.wire_capacity)
        self.callout.register(wire)
        return wire
