"""A GDB remote stub for the machine: each process is a thread, every stop is exact.

Execution never leaves the kernel's own scheduler.  The stub stops it from
the inside and talks to gdb right there, until gdb resumes:
- one Unicorn code hook sees every instruction while gdb is attached (a hook
  added in the middle of a translated block would only start with the next
  block): it stops before an instruction at a breakpoint runs, in whichever
  process reaches it, and at the stepping process's next instruction after a
  single step or a watched write;
- `monitor break fault`/`break syscall` stop in the kernel's debugger hooks,
  before vm_fault or the syscall runs (`monitor step-kernel` stops after);
- a fatal fault stops with its signal before the kernel kills the process;
- Ctrl-C is polled between bounded slices (the kernel's `pause_at`), and
  waited for together with the input when a console read blocks the host.

gdb's vCont names the threads it resumes, and the others stay stopped (the
scheduler passes over them): gdb steps a thread over a breakpoint alone, and
a stop of any other thread then would break its step (gdb 13 aborts).  Such
a thread may sleep in a syscall that only another process can end (wait4);
then, and only while every thread gdb resumed sleeps, the others run in its
place, and one that reaches a breakpoint is held before it without telling
gdb (it hits the breakpoint once gdb resumes it).  When nothing can run any
more, the resume ends with a stop of the thread gdb resumed, signal 0 and a
note saying why.  A step over a syscall that sleeps ends when it returns; a
thread asleep in one shows its pc after it, as Linux shows one.  The stub's
own stops (fault and syscall breaks) are signal 0 too, so that gdb does not
take one on an instruction with a breakpoint for a hit of the breakpoint.

When gdb goes away (or detaches), the stub lets go and the machine runs on.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

import unicorn

from emulator import mmu
from emulator import pte as E
from emulator.cpu import SYSCALL_LENGTH
from kernel import signals, syscall
from kernel.kernel import Kernel
from kernel.proc import SLEEPING, ZOMBIE, Process
from kernel.trap import signal_of_fault
from kernel.vm import fault
from kernel.vm.fault import FaultResult, find_page, predict_kind
from tools.gdb import monitor
from tools.gdb.protocol import Connection, Disconnected
from tools.gdb.registers import REGISTERS, target_xml

POLL_EVERY = 200_000        # instructions between looks for Ctrl-C
MAX_MEMORY_REQUEST = 0x10000
NO_SIGNAL, SIGINT, SIGTRAP = 0, 2, 5
FEATURES = "PacketSize=4000;qXfer:features:read+;swbreak+;QStartNoAckMode+;vContSupported+"
HELP = """\
monitor vm                  every process's map entries, protections and shadow chains
monitor pte ADDR            the 4-level page walk of ADDR, every entry's bits
monitor chain ADDR          the shadow chain at ADDR and which level holds the page
monitor tlb [N]             CR3, invalidation counts, the last N invalidations
monitor stats               what the kernel did so far (the --stats table)
monitor faults [N]          the last N faults (default 10)
monitor break fault [KIND]  stop before the kernel handles each fault (of KIND), until 'break clear'
monitor break syscall NAME  stop before the kernel handles each syscall NAME, until 'break clear'
monitor break clear         forget every fault and syscall break
monitor step-kernel         (stopped before a fault) let vm_fault run, then stop again
kinds: """ + ", ".join(fault.KINDS)


class KilledFromGdb(Exception):
    """gdb asked to kill the program: the run ends here, wherever the machine was."""


def parse_hex(text: bytes) -> int:
    """A number in a packet: hex digits only (int() would also take a sign, "0x", spaces and underscores)."""
    if not text or text.strip(b"0123456789abcdefABCDEF"):
        raise ValueError(f"not a hex number: {text!r}")
    return int(text, 16)


def tap_events(kernel: Kernel) -> monitor.EventTap:
    """Start keeping faults and TLB events for `monitor faults` and `monitor tlb`.

    Called before the program is loaded, so that they list what `monitor
    stats` counts from the start (exec's own faults included).
    """
    tap = monitor.EventTap(kernel.recorder.sink)
    kernel.recorder.sink = tap
    return tap


class Stop(NamedTuple):
    """Why execution stopped, for the stop reply."""

    tid: int
    signal: int
    reason: str = ""          # stop-reply fields such as "swbreak:;"
    in_engine: bool = True    # inside a running instruction (a hook), not between slices
    note: str = ""            # printed in gdb's console before the stop
    writable: bool = True     # registers may be changed here (not in the middle of a fault or syscall)


class _Step(NamedTuple):
    """A single step gdb asked for: stop before the process's next instruction, once `skip` more have begun."""

    armed_at: int            # the clock then: the instruction running at that time is not the next one
    skip: int
    reason: str = ""         # stop-reply fields, as "watch:ADDR;" after a watched write


@dataclass
class _FaultStop:
    """A stop before vm_fault: the PTE then, and whether gdb asked to stop again after it."""

    pte_before: int
    step_kernel: bool = False


class GdbStub:
    """Serves one gdb; the first stop comes in the scheduler, before the first instruction of the first process."""

    def __init__(self, kernel: Kernel, conn: Connection, tap: monitor.EventTap, log=sys.stderr) -> None:
        self.kernel = kernel
        self.machine = kernel.machine
        self.engine = kernel.machine.engine
        self.conn: Connection | None = conn
        self.log = log
        self.stop: Stop | None = None
        self.waiting = False                  # gdb resumed us and waits for a stop reply
        self.thread = 0                       # Hg: whose registers and memory (0: the stopped one)
        self.breakpoints: set[int] = set()
        self.watchpoints: dict[tuple[int, int], int] = {}
        self.resumed: set[int] | None = None  # the threads gdb's last vCont let run (None: all of them)
        self.steps: dict[int, _Step] = {}
        self.held_at: dict[int, int] = {}     # others, run in a sleeping thread's place, held before a breakpoint
        self.restarting: set[int] = set()     # asleep in a syscall (or just woken), to make it again when they run
        self._code_hook = self.engine.hook_add(unicorn.UC_HOOK_CODE, self._on_instruction)
        self.fault_breaks: set[str] = set()
        self.syscall_breaks: set[str] = set()
        self.fault_stop: _FaultStop | None = None
        self._last_stop = (-1, -1)
        self.tap = tap
        kernel.before_fault = self._before_fault
        kernel.after_fault = self._after_fault
        kernel.before_syscall = self._before_syscall
        kernel.after_syscall = self._after_syscall
        kernel.may_run = self._may_run
        kernel.on_held = self._on_held
        kernel.console_wait = self._wait_for_console
        kernel.on_pause = self._poll
        kernel.pause_at = self.machine.now          # the first stop: as soon as the first process is loaded

    # Serving gdb while stopped.

    def serve(self, stop: Stop) -> None:
        """Talk to gdb until it resumes execution (or goes away)."""
        if self.conn is None:
            return
        self.stop = stop
        self._last_stop = (self.machine.now, self._rip(self._process(stop.tid)))
        try:
            if self.waiting:
                self.waiting = False
                self.thread = stop.tid   # gdb takes the thread of a stop reply as the one selected
                if stop.note:
                    self.conn.send(b"O" + (stop.note + "\n").encode().hex().encode())
                self.conn.send(self._stop_reply(stop))
            while self.conn is not None and not self._handle(self.conn.read_packet()):
                pass
        except Disconnected as error:
            self.detach(f"gdb went away ({error}); running on")

    def detach(self, why: str) -> None:
        if self.conn is None:
            return
        print(f"vmgames: {why}", file=self.log)
        self.conn.close()
        self.conn = None
        for handle in [self._code_hook, *self.watchpoints.values()]:
            self.engine.hook_del(handle)
        self.breakpoints.clear()
        self.watchpoints.clear()
        self.resumed = None
        self.steps.clear()
        self.held_at.clear()
        self.restarting.clear()
        self.fault_stop = None
        kernel = self.kernel
        kernel.before_fault = kernel.after_fault = kernel.before_syscall = kernel.after_syscall = None
        kernel.may_run = kernel.on_held = kernel.console_wait = kernel.on_pause = kernel.pause_at = None
        kernel.recorder.sink = self.tap.downstream

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

    def _stop_reply(self, stop: Stop) -> bytes:
        return b"T%02xthread:%x;%s" % (stop.signal, stop.tid, stop.reason.encode())

    def _handle(self, packet: bytes) -> bool:
        """Answer one packet; True when gdb resumed execution."""
        kind, body = packet[:1], packet[1:]
        reply: bytes | None
        try:
            if packet.startswith(b"vCont"):
                return self._resume_vcont(packet)
            if kind in (b"c", b"C"):
                return self._resume(None, set())
            if kind in (b"s", b"S"):
                return self._resume(None, {self.stop.tid})
            reply = self._answer(kind, body, packet)
        except (ValueError, IndexError, TypeError):
            reply = b"E01"
        if reply is not None:
            self.conn.send(reply)
        # `monitor step-kernel` resumes the kernel, not the program: its reply comes after vm_fault.
        return self.fault_stop is not None and self.fault_stop.step_kernel

    def _answer(self, kind: bytes, body: bytes, packet: bytes) -> bytes | None:
        if kind == b"?":
            return self._stop_reply(self.stop)
        if kind == b"g":
            return b"".join(self._register_bytes(self._selected(), n) for n in range(len(REGISTERS))).hex().encode()
        if kind == b"G":
            return self._write_registers(bytes.fromhex(body.decode()))
        if kind == b"p":
            number = parse_hex(body)
            return self._register_bytes(self._selected(), number).hex().encode() if number < len(REGISTERS) else b"E01"
        if kind == b"P":
            number, value = body.split(b"=")
            return self._write_register(parse_hex(number), bytes.fromhex(value.decode()))
        if kind == b"m":
            address, length = (parse_hex(x) for x in body.split(b","))
            return self._read_memory(address, length)
        if kind == b"M":
            where, data = body.split(b":")
            address, length = (parse_hex(x) for x in where.split(b","))
            return self._write_memory(address, bytes.fromhex(data.decode())[:length])
        if kind in (b"Z", b"z"):
            return self._breakpoint(kind == b"Z", *(parse_hex(x) for x in body.split(b",")[:3]))
        if kind == b"H":
            tid = parse_hex(body[1:]) if body[1:] not in (b"-1", b"") else 0
            if tid and not self._alive(tid):
                return b"E01"
            if body[:1] == b"g":
                self.thread = tid
            return b"OK"
        if kind == b"T":
            return b"OK" if self._alive(parse_hex(body)) else b"E01"
        if kind == b"D":
            self.conn.send(b"OK")
            self.detach("gdb detached; running on")
            return None
        if kind == b"k" or packet.startswith(b"vKill"):
            if packet.startswith(b"vKill"):
                self.conn.send(b"OK")
            self._kill_all()
            return None
        if kind == b"q":
            return self._query(packet)
        if packet == b"QStartNoAckMode":
            self.conn.send(b"OK")
            self.conn.acks = False
            return None
        return b""

    def _query(self, packet: bytes) -> bytes:
        if packet.startswith(b"qSupported"):
            return FEATURES.encode()
        if packet.startswith(b"qXfer:features:read:target.xml:"):
            offset, length = (parse_hex(x) for x in packet.rsplit(b":", 1)[1].split(b","))
            data = target_xml().encode()
            chunk = data[offset:offset + length]
            return (b"l" if offset + length >= len(data) else b"m") + chunk
        if packet == b"qfThreadInfo":
            return b"m" + b",".join(b"%x" % p.pid for p in self._threads())
        if packet == b"qsThreadInfo":
            return b"l"
        if packet == b"qC":
            return b"QC%x" % self.stop.tid
        if packet == b"qAttached":
            return b"0"
        if packet.startswith(b"qThreadExtraInfo,"):
            proc = self._process(parse_hex(packet.split(b",")[1]))
            text = f"{proc.name} [{proc.pid}], {proc.state}" if proc else "gone"
            return text.encode().hex().encode()
        if packet.startswith(b"qRcmd,"):
            return self._monitor(bytes.fromhex(packet[6:].decode()).decode(errors="replace"))
        if packet.startswith(b"qSymbol"):
            return b"OK"
        return b""

    # Resuming.

    def _resume_vcont(self, packet: bytes) -> bool:
        """vCont;ACTION[:TID]...: each thread takes the first action naming it, the rest the one naming none."""
        if packet == b"vCont?":
            self.conn.send(b"vCont;c;C;s;S")
            return False
        named: dict[int, bool] = {}           # thread -> steps
        default: bool | None = None           # the others: None (stay stopped), False (continue), True (step)
        for action in packet.split(b";")[1:]:
            verb, _, tid_text = action.partition(b":")
            if verb[:1] not in (b"c", b"C", b"s", b"S"):
                self.conn.send(b"E01")
                return False
            stepping = verb[:1] in (b"s", b"S")
            if tid_text in (b"", b"-1"):
                default = stepping
                break
            tid = parse_hex(tid_text)
            if not self._alive(tid):
                self.conn.send(b"E01")
                return False
            named.setdefault(tid, stepping)
        if default is None and not named:     # a bare "vCont": nothing to resume
            self.conn.send(b"E01")
            return False
        steps = {tid for tid, stepping in named.items() if stepping}
        if default and self.stop.tid not in named:
            steps.add(self.stop.tid)          # "step every thread": gdb does not ask that; step the stopped one
        return self._resume(None if default is not None else set(named), steps)

    def _resume(self, resumed: set[int] | None, steps: set[int]) -> bool:
        """Let the threads in `resumed` (None: all) run, single-stepping those in `steps`."""
        self.resumed = resumed
        self.held_at.clear()
        self.steps = {}
        for tid in steps:
            # The next instruction to start is its next one, unless we are stopped before it has begun.
            here = self.stop.in_engine and tid == self.stop.tid or tid in self.restarting
            self.steps[tid] = _Step(self.machine.now, 0 if here else 1)
        self.waiting = True
        return True

    def _runs_for_others(self, pid: int) -> bool:
        """Is `pid` running only because every thread gdb resumed sleeps (see the module's docstring)?"""
        return self.resumed is not None and pid not in self.resumed

    def _resumed_all_asleep(self) -> bool:
        living = [proc for proc in map(self._process, self.resumed) if proc is not None]
        return bool(living) and all(proc.state == SLEEPING for proc in living)

    def _may_run(self, proc: Process) -> bool:
        """The scheduler's question: a thread gdb did not resume runs only in the place of sleeping ones."""
        if not self._runs_for_others(proc.pid):
            return True
        return proc.pid not in self.held_at and self._resumed_all_asleep()

    def _resumed_thread(self) -> int:
        """The thread to report a stop in when the one running is not one gdb resumed: a living, stepping one first."""
        return min(self.resumed, key=lambda tid: (self._process(tid) is None, tid not in self.steps, tid))

    def _on_held(self, kernel: Kernel) -> None:
        """Nothing gdb resumed can run, nor any other process in its place: end the resume with a stop."""
        tid = self._resumed_thread()
        proc = self._process(tid)
        if proc is None:
            note = (f"vmgames: process {tid} has exited; the others are stopped (gdb resumed only {tid}): "
                    "select one ('thread N') to go on")
        else:
            name = syscall.syscall_name(self._read_register(proc, REGISTERS[0].unicorn_id))
            if not self.held_at:
                note = f"vmgames: process {tid} sleeps in {name} and nothing else may run in its place"
            else:
                held = ", ".join(f"process {pid} at {address:#x}" for pid, address in sorted(self.held_at.items()))
                note = (f"vmgames: process {tid} sleeps in {name}; the processes that ran in its place stopped "
                        f"before breakpoints ({held}), which they hit once resumed: 'continue', or "
                        f"'thread {min(self.held_at)}' and 'continue' if gdb steps process {tid} alone again")
        self.serve(Stop(tid, NO_SIGNAL, in_engine=False, note=note, writable=False))

    def _on_instruction(self, engine, address: int, size: int, user_data) -> None:
        pid = self.kernel.current.pid
        if pid in self.restarting:
            # The syscall it slept in, made again now that it is woken: for gdb the same instruction still.
            self.restarting.discard(pid)
            return
        if self._runs_for_others(pid):
            # Held before a breakpoint, or as soon as a thread gdb resumed can run again: the instruction does not run.
            at_breakpoint = address in self.breakpoints
            if at_breakpoint or not self._resumed_all_asleep():
                if at_breakpoint:
                    self.held_at[pid] = address
                self.machine.clock.unretire()
                self.machine.stop()
            return
        step = self.steps.get(pid)
        if step is not None and self.machine.now != step.armed_at:
            if step.skip:
                self.steps[pid] = step._replace(skip=step.skip - 1)
            else:
                del self.steps[pid]
                self.serve(Stop(pid, SIGTRAP, step.reason))
                return
        if address in self.breakpoints and (self.machine.now, address) != self._last_stop:
            self.serve(Stop(pid, SIGTRAP, "swbreak:;"))

    def _on_watched_write(self, engine, access: int, paddr: int, size: int, value: int, watched) -> None:
        va, length = watched
        proc = self.kernel.current
        if self._runs_for_others(proc.pid):
            return
        leaf = monitor.leaf_pte(proc, va)
        if not leaf & E.P:
            return
        start = (leaf & E.ADDR_MASK) | (va & 0xFFF)
        if paddr < start + length and start < paddr + size:
            self.steps[proc.pid] = _Step(self.machine.now, 0, f"watch:{va:x};")

    def _interrupted(self, in_syscall: bool) -> Stop:
        """A Ctrl-C stop, in the running thread unless it runs in the place of one gdb resumed."""
        pid = self.kernel.current.pid
        if self._runs_for_others(pid):
            return Stop(self._resumed_thread(), SIGINT, in_engine=False, writable=False)
        return Stop(pid, SIGINT, in_engine=in_syscall, writable=not in_syscall)

    def _poll(self, kernel: Kernel) -> None:
        kernel.pause_at = self.machine.now + POLL_EVERY
        if self.stop is None:
            # gdb has just attached; the first process is loaded (its CR3 too) and has run nothing yet.
            self.serve(Stop(kernel.current.pid, SIGTRAP, in_engine=False))
            return
        try:
            interrupted = self.conn.poll_interrupt()
        except Disconnected as error:
            self.detach(f"gdb went away ({error}); running on")
            return
        if interrupted:
            self.serve(self._interrupted(in_syscall=False))

    def _wait_for_console(self, kernel: Kernel, stream: BinaryIO) -> None:
        """A console read would block the host: wait for its input and for Ctrl-C together."""
        try:
            fd = stream.fileno()   # the console reads with read1, which leaves nothing in the stream's buffer
        except (AttributeError, OSError, ValueError):
            return
        while self.conn is not None:
            try:
                if not self.conn.wait_for(fd):
                    return
            except Disconnected as error:
                self.detach(f"gdb went away ({error}); running on")
                return
            self.serve(self._interrupted(in_syscall=True))

    # The kernel's debugger hooks.

    def _before_fault(self, kernel: Kernel, proc: Process, va: int, access: int, error_code: int,
                      user: bool) -> None:
        if not self.fault_breaks or self._runs_for_others(proc.pid):
            return
        kind = predict_kind(proc.vmspace, va, access, error_code)
        if "any" not in self.fault_breaks and kind not in self.fault_breaks:
            return
        before = monitor.leaf_pte(proc, va)
        self.fault_stop = _FaultStop(before)
        who = "" if user else " in the kernel (copyin/copyout of the syscall there)"
        note = (f"vmgames: process {proc.pid} faults{who} at rip {self._rip(proc):#x}: {mmu.ACCESS_NAMES[access]} "
                f"of {va:#x}, error code {error_code:#x}, kind {kind} (before the kernel handles it)\n"
                f"vmgames: PTE before: {monitor.describe_pte(before)}\n"
                f"vmgames: 'monitor step-kernel' runs the fault handler and stops after it")
        # An instruction fetch faults before the instruction starts (and is counted); data faults in the middle.
        self.serve(Stop(proc.pid, NO_SIGNAL, in_engine=access != mmu.FETCH, note=note, writable=False))
        if self.fault_stop is not None and not self.fault_stop.step_kernel:
            self.fault_stop = None

    def _after_fault(self, kernel: Kernel, proc: Process, va: int, result: FaultResult, user: bool) -> None:
        stop, self.fault_stop = self.fault_stop, None
        if stop is not None and stop.step_kernel:
            after = monitor.leaf_pte(proc, va)
            where = f", object {result.object} level {result.level} of {result.depth}" if not result.fatal else ""
            text = (f"vm_fault: {result.kind}{' (' + result.reason + ')' if result.reason else ''}{where}\n"
                    f"PTE before: {monitor.describe_pte(stop.pte_before)}\n"
                    f"PTE after:  {monitor.describe_pte(after)}\n")
            try:
                self.conn.send(b"O" + text.encode().hex().encode())
                self.conn.send(b"OK")
            except Disconnected as error:
                self.detach(f"gdb went away ({error}); running on")
                return
            self.serve(self.stop._replace(note="", writable=False))
        # A fatal fault of the kernel's own is the syscall's EFAULT, not a signal.
        if result.fatal and user and not self._runs_for_others(proc.pid):
            signal = signal_of_fault(result.reason)
            note = f"vmgames: process {proc.pid} will be killed by {signals.name(signal)}: {va:#x} ({result.reason})"
            self.serve(Stop(proc.pid, signal, note=note, writable=False))

    def _before_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if not self.syscall_breaks or self._runs_for_others(proc.pid):
            return
        name = syscall.syscall_name(number)
        if name in self.syscall_breaks:
            note = f"vmgames: process {proc.pid} calls {name} (before the kernel handles it)"
            self.serve(Stop(proc.pid, NO_SIGNAL, note=note, writable=False))

    def _after_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if proc.state == SLEEPING:
            self.restarting.add(proc.pid)

    # Monitor commands.

    def _monitor(self, command: str) -> bytes | None:
        words = command.split()
        if not words or words[0] == "help":
            return self._output(HELP)
        name, args = words[0], words[1:]
        proc = self._selected()
        try:
            if name == "vm":
                text = monitor.vm(self.kernel)
            elif name in ("pte", "chain") and len(args) == 1:
                va = int(args[0], 0)
                if va < 0 or va >> 64:
                    return self._output(f"{args[0]} is not a 64-bit address")
                if not mmu.is_canonical(va):
                    return self._output(f"{va:#x} is not canonical: bits 63-48 must be copies of bit 47 "
                                        "(user addresses are 0 to 0x7fffffffffff)")
                if proc.state == ZOMBIE:
                    return self._output(f"process {proc.pid} has exited: its address space is gone")
                text = monitor.pte(proc, va) if name == "pte" else monitor.chain(proc, va)
            elif name in ("tlb", "faults"):
                count = int(args[0], 0) if args else 10
                if count < 1:
                    return self._output(f"monitor {name} N: N must be at least 1")
                text = monitor.tlb(self.kernel, self.tap, count) if name == "tlb" else monitor.faults(self.tap, count)
            elif name == "stats":
                text = monitor.stats(self.kernel)
            elif name == "break":
                text = self._monitor_break(args)
            elif name == "step-kernel":
                if self.fault_stop is None or self.fault_stop.step_kernel:
                    return self._output("not stopped before a fault: use 'monitor break fault' first")
                self.fault_stop.step_kernel = True
                return None
            else:
                return self._output(f"unknown monitor command {command!r}\n{HELP}")
        except ValueError:
            return self._output(f"not a number in {command!r}")
        return self._output(text)

    def _monitor_break(self, args: list[str]) -> str:
        if args[:1] == ["fault"] and len(args) <= 2:
            kind = args[1] if len(args) == 2 else "any"
            if kind not in (*fault.KINDS, "any"):
                return f"unknown fault kind {kind!r}; kinds: {', '.join(fault.KINDS)}"
            self.fault_breaks.add(kind)
            return (f"will stop before the kernel handles each {'' if kind == 'any' else kind + ' '}fault, "
                    "until 'monitor break clear'")
        if args[:1] == ["syscall"] and len(args) == 2:
            if args[1] not in syscall.NAMES:
                return syscall.unknown_name_message(args[1])
            self.syscall_breaks.add(args[1])
            return f"will stop before the kernel handles each {args[1]}, until 'monitor break clear'"
        if args == ["clear"]:
            self.fault_breaks.clear()
            self.syscall_breaks.clear()
            return "no fault or syscall breaks"
        return "usage: monitor break fault [KIND] | break syscall NAME | break clear"

    def _output(self, text: str) -> bytes:
        self.conn.send(b"O" + (text + "\n").encode().hex().encode())
        return b"OK"

    # Threads, registers, memory.

    def _threads(self) -> list[Process]:
        return sorted((p for p in self.kernel.processes.values() if p.state != ZOMBIE), key=lambda p: p.pid)

    def _process(self, tid: int) -> Process | None:
        proc = self.kernel.processes.get(tid)
        return proc if proc is not None and proc.state != ZOMBIE else None

    def _alive(self, tid: int) -> bool:
        return self._process(tid) is not None

    def _selected(self) -> Process:
        """Hg's thread, else the stop's, even when it has just exited (gdb reads its registers once more)."""
        proc = self._process(self.thread) or self.kernel.processes.get(self.stop.tid)
        if proc is None:
            raise ValueError("no such thread")
        return proc

    def _rip(self, proc: Process | None) -> int:
        if proc is None:
            return -1
        return self._read_register(proc, REGISTERS[16].unicorn_id)

    def _read_register(self, proc: Process, unicorn_id: int) -> int:
        value = self.engine.reg_read(unicorn_id) if self.kernel.loaded is proc else proc.context.reg_read(unicorn_id)
        if unicorn_id == REGISTERS[16].unicorn_id and proc.pid in self.restarting:
            # The kernel keeps rip on the syscall, to make it again when woken; Linux shows the pc after it.
            value += SYSCALL_LENGTH
        return value

    def _register_bytes(self, proc: Process, number: int) -> bytes:
        reg = REGISTERS[number]
        value = self._read_register(proc, reg.unicorn_id)
        return (value & ((1 << reg.bits) - 1)).to_bytes(reg.bits // 8, "little")

    def _write_register(self, number: int, data: bytes) -> bytes:
        if number >= len(REGISTERS) or len(data) != REGISTERS[number].bits // 8:
            return b"E01"
        proc = self._selected()
        if not self.stop.writable or proc.state == ZOMBIE or proc.pid in self.restarting:
            return b"E01"   # in the middle of a fault or syscall (asleep in one too): rip and rax are the kernel's
        value = int.from_bytes(data, "little")
        if self.kernel.loaded is proc:
            self.engine.reg_write(REGISTERS[number].unicorn_id, value)
        else:
            proc.context.reg_write(REGISTERS[number].unicorn_id, value)
        return b"OK"

    def _write_registers(self, data: bytes) -> bytes:
        """G: the whole set in `g` order; only the registers whose value changes are written."""
        proc, offset = self._selected(), 0
        for number, reg in enumerate(REGISTERS):
            size = reg.bits // 8
            if offset + size > len(data):
                return b"E01"
            if data[offset:offset + size] != self._register_bytes(proc, number):
                reply = self._write_register(number, data[offset:offset + size])
                if reply != b"OK":
                    return reply
            offset += size
        return b"OK"

    def _read_memory(self, address: int, length: int) -> bytes:
        if length > MAX_MEMORY_REQUEST or address + length > 1 << 64 or not mmu.is_canonical(address):
            return b"E01"
        proc = self._selected()
        if proc.state == ZOMBIE:
            return b"E01"
        data = self._peek(proc, address, length)
        return data.hex().encode() if data or not length else b"E0e"

    def _peek(self, proc: Process, va: int, length: int) -> bytes:
        """What the program would read, without faulting anything in; stops at the first unmapped byte.

        A page not in the page tables is read where the fault handler would
        find it: in an object of the chain, in the file, or zeros.
        """
        out = bytearray()
        while len(out) < length:
            n = min(length - len(out), 4096 - (va & 0xFFF))
            mapped = self.kernel.peek(proc, va, n)
            if mapped:
                out += mapped
            else:
                entry = proc.vmspace.map.lookup(va)
                if entry is None:
                    break
                obj, index, _, page = find_page(entry, va)
                offset = va & 0xFFF
                if page is not None:
                    out += self.machine.ram.bytes[page.paddr + offset:page.paddr + offset + n]
                elif obj.vnode is not None:
                    out += obj.vnode.read(index * 4096 + offset, n).ljust(n, b"\0")
                else:
                    out += bytes(n)
            va += n
        return bytes(out)

    def _write_memory(self, address: int, data: bytes) -> bytes:
        """Write only to pages mapped writable: a write through copy-on-write would have to break it first."""
        if len(data) > MAX_MEMORY_REQUEST or not mmu.is_canonical(address) or address + len(data) > 1 << 47:
            return b"E01"
        proc = self._selected()
        if proc.state == ZOMBIE:
            return b"E01"
        pieces = []
        va, rest = address, data
        while rest:
            leaf = monitor.leaf_pte(proc, va)
            if not (leaf & E.P and leaf & E.RW):
                return b"E0e"
            n = min(len(rest), 4096 - (va & 0xFFF))
            pieces.append(((leaf & E.ADDR_MASK) | (va & 0xFFF), rest[:n]))
            va, rest = va + n, rest[n:]
        for paddr, chunk in pieces:
            self.machine.write_physical(paddr, chunk)
        return b"OK"

    def _breakpoint(self, insert: bool, kind: int, address: int, length: int = 1) -> bytes:
        if kind == 0:
            if insert:
                self.breakpoints.add(address)
            else:
                self.breakpoints.discard(address)
            return b"OK"
        if kind == 2:
            key = (address, length)
            if not 0 < length <= 8:
                return b"E01"
            if insert and key not in self.watchpoints:
                # Unicorn reports a store by its physical address here (the TLB is virtual), so the hook sees
                # every store and checks where the watched range lives in the storing process.
                self.watchpoints[key] = self.engine.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._on_watched_write,
                                                             user_data=key)
                # Code translated (and TLB entries filled) before a memory hook existed store without asking it.
                self.engine.ctl_flush_tb()
                self.engine.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
            elif not insert and key in self.watchpoints:
                self.engine.hook_del(self.watchpoints.pop(key))
            return b"OK"
        return b""

    def _kill_all(self) -> None:
        self.detach("gdb killed the program")
        raise KilledFromGdb()


def listen(address: str) -> socket.socket:
    """A listening socket on HOST:PORT (HOST defaults to 127.0.0.1, never all interfaces unless asked)."""
    host, _, port = address.rpartition(":")
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host.strip("[]") or "127.0.0.1", int(port)))
    server.listen(1)
    return server
