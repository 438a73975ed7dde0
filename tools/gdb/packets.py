"""The remote protocol's packets: what each one asks, and the stub's answer.

One packet is answered at a time, while execution is stopped: registers
(g, G, p, P) of the selected thread, live on the CPU or saved in its
context; memory (m, M) as the program would see it, without faulting;
breakpoints and write watchpoints (Z0, Z2) on the board's debug port;
threads (H, T, qfThreadInfo, ...); queries and the target description.
The resuming packets (c, s, vCont) are parsed here and carried out by
execution control (tools/gdb/execution.py); `qRcmd` (monitor) by
tools/gdb/monitor.py.

A packet the stub cannot take gets E01 (an empty reply when it does not
know the packet at all): nothing a client sends raises out of here but
KilledFromGdb, which gdb's kill asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmgames.emulator import mmu
from vmgames.emulator import pte as E
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE, Process
from vmgames.kernel.uaccess import peek
from vmgames.tools.gdb import monitor
from vmgames.tools.gdb.execution import Stop
from vmgames.tools.gdb.registers import REGISTERS, SELECTORS, target_xml

if TYPE_CHECKING:
    from vmgames.tools.gdb.stub import GdbStub

MAX_MEMORY_REQUEST = 0x10000
FEATURES = "PacketSize=4000;qXfer:features:read+;swbreak+;QStartNoAckMode+;vContSupported+"


class KilledFromGdb(Exception):
    """gdb asked to kill the program: the run ends here, wherever the machine was."""


def parse_hex(text: bytes) -> int:
    """A number in a packet: hex digits only (int() would also take a sign, "0x", spaces and underscores)."""
    if not text or text.strip(b"0123456789abcdefABCDEF"):
        raise ValueError(f"not a hex number: {text!r}")
    return int(text, 16)


def on_cpu(kernel: Kernel, proc: Process) -> str:
    """Where a thread runs, for `info threads` on a machine of several CPUs ("" on one)."""
    if len(kernel.cpus) == 1 or proc.cpu is None:
        return ""
    running = kernel.cpus[proc.cpu].current is proc
    return f", {'on' if running else 'last on'} cpu {proc.cpu}"


def stop_reply(stop: Stop) -> bytes:
    return b"T%02xthread:%x;%s" % (stop.signal, stop.tid, stop.reason.encode())


def handle(stub: GdbStub, packet: bytes) -> bool:
    """Answer one packet; True when gdb resumed execution."""
    kind, body = packet[:1], packet[1:]
    reply: bytes | None
    try:
        if packet.startswith(b"vCont"):
            return _resume_vcont(stub, packet)
        if kind in (b"c", b"C"):
            return stub.control.resume(None, set())
        if kind in (b"s", b"S"):
            return stub.control.resume(None, {stub.stop.tid})
        reply = _answer(stub, kind, body, packet)
    except (ValueError, IndexError, TypeError):
        reply = b"E01"
    if reply is not None:
        stub.conn.send(reply)
    # `monitor step-kernel` resumes the kernel, not the program: its reply comes after vm_fault.
    fault_stop = stub.control.fault_stop
    return fault_stop is not None and fault_stop.step_kernel


def _answer(stub: GdbStub, kind: bytes, body: bytes, packet: bytes) -> bytes | None:
    if kind == b"?":
        return stop_reply(stub.stop)
    if kind == b"g":
        return b"".join(_register_bytes(stub, stub.selected(), n) for n in range(len(REGISTERS))).hex().encode()
    if kind == b"G":
        return _write_registers(stub, bytes.fromhex(body.decode()))
    if kind == b"p":
        number = parse_hex(body)
        return _register_bytes(stub, stub.selected(), number).hex().encode() if number < len(REGISTERS) else b"E01"
    if kind == b"P":
        number, value = body.split(b"=")
        return _write_register(stub, parse_hex(number), bytes.fromhex(value.decode()))
    if kind == b"m":
        address, length = (parse_hex(x) for x in body.split(b","))
        return _read_memory(stub, address, length)
    if kind == b"M":
        where, data = body.split(b":")
        address, length = (parse_hex(x) for x in where.split(b","))
        return _write_memory(stub, address, bytes.fromhex(data.decode())[:length])
    if kind in (b"Z", b"z"):
        return _breakpoint(stub, kind == b"Z", *(parse_hex(x) for x in body.split(b",")[:3]))
    if kind == b"H":
        tid = parse_hex(body[1:]) if body[1:] not in (b"-1", b"") else 0
        if tid and not stub.alive(tid):
            return b"E01"
        if body[:1] == b"g":
            stub.thread = tid
        return b"OK"
    if kind == b"T":
        return b"OK" if stub.alive(parse_hex(body)) else b"E01"
    if kind == b"D":
        stub.conn.send(b"OK")
        stub.detach("gdb detached; running on")
        return None
    if kind == b"k" or packet.startswith(b"vKill"):
        if packet.startswith(b"vKill"):
            stub.conn.send(b"OK")
        stub.detach("gdb killed the program")
        raise KilledFromGdb()
    if kind == b"q":
        return _query(stub, packet)
    if packet == b"QStartNoAckMode":
        stub.conn.send(b"OK")
        stub.conn.acks = False
        return None
    return b""


def _query(stub: GdbStub, packet: bytes) -> bytes | None:
    if packet.startswith(b"qSupported"):
        return FEATURES.encode()
    if packet.startswith(b"qXfer:features:read:target.xml:"):
        offset, length = (parse_hex(x) for x in packet.rsplit(b":", 1)[1].split(b","))
        data = target_xml().encode()
        chunk = data[offset:offset + length]
        return (b"l" if offset + length >= len(data) else b"m") + chunk
    if packet == b"qfThreadInfo":
        return b"m" + b",".join(b"%x" % p.pid for p in stub.threads())
    if packet == b"qsThreadInfo":
        return b"l"
    if packet == b"qC":
        return b"QC%x" % stub.stop.tid
    if packet == b"qAttached":
        return b"0"
    if packet.startswith(b"qThreadExtraInfo,"):
        proc = stub.process(parse_hex(packet.split(b",")[1]))
        # A process's first thread shows as "name [pid]", its others as "name [pid] thread tid".
        thread = f" thread {proc.pid}" if proc and not proc.is_leader else ""
        text = f"{proc.name} [{proc.tgid}]{thread}, {proc.state}{on_cpu(stub.kernel, proc)}" if proc else "gone"
        return text.encode().hex().encode()
    if packet.startswith(b"qRcmd,"):
        return monitor.command(stub, bytes.fromhex(packet[6:].decode()).decode(errors="replace"))
    if packet.startswith(b"qSymbol"):
        return b"OK"
    return b""


def _resume_vcont(stub: GdbStub, packet: bytes) -> bool:
    """vCont;ACTION[:TID]...: each thread takes the first action naming it, the rest the one naming none."""
    if packet == b"vCont?":
        stub.conn.send(b"vCont;c;C;s;S")
        return False
    named: dict[int, bool] = {}           # thread -> steps
    default: bool | None = None           # the others: None (stay stopped), False (continue), True (step)
    for action in packet.split(b";")[1:]:
        verb, _, tid_text = action.partition(b":")
        if verb[:1] not in (b"c", b"C", b"s", b"S"):
            stub.conn.send(b"E01")
            return False
        stepping = verb[:1] in (b"s", b"S")
        if tid_text in (b"", b"-1"):
            default = stepping
            break
        tid = parse_hex(tid_text)
        if not stub.alive(tid):
            stub.conn.send(b"E01")
            return False
        named.setdefault(tid, stepping)
    if default is None and not named:     # a bare "vCont": nothing to resume
        stub.conn.send(b"E01")
        return False
    steps = {tid for tid, stepping in named.items() if stepping}
    if default and stub.stop.tid not in named:
        steps.add(stub.stop.tid)          # "step every thread": gdb does not ask that; step the stopped one
    return stub.control.resume(None if default is not None else set(named), steps)


# Registers.

def _register_bytes(stub: GdbStub, proc: Process, number: int) -> bytes:
    reg = REGISTERS[number]
    value = stub.register(proc, reg.name)
    return (value & ((1 << reg.bits) - 1)).to_bytes(reg.bits // 8, "little")


def _write_register(stub: GdbStub, number: int, data: bytes) -> bytes:
    if number >= len(REGISTERS) or len(data) != REGISTERS[number].bits // 8:
        return b"E01"
    proc = stub.selected()
    if REGISTERS[number].name in SELECTORS and data != _register_bytes(stub, proc, number):
        return b"E01"   # the segment selectors are the kernel's (writing back the same value is no change)
    if not stub.stop.writable or proc.state == ZOMBIE or proc.pid in stub.control.restarting:
        return b"E01"   # in the middle of a fault or syscall (asleep in one too): rip and rax are the kernel's
    stub.port.write_register(REGISTERS[number].name, int.from_bytes(data, "little"), stub.context(proc))
    return b"OK"


def _write_registers(stub: GdbStub, data: bytes) -> bytes:
    """G: the whole set in `g` order; only the registers whose value changes are written, all or none.

    The packet is checked whole before any register is written: one that is short or changes a
    segment selector leaves every register as it was.
    """
    proc, offset, changes = stub.selected(), 0, []
    for number, reg in enumerate(REGISTERS):
        size = reg.bits // 8
        if offset + size > len(data):
            return b"E01"
        value = data[offset:offset + size]
        if value != _register_bytes(stub, proc, number):
            if reg.name in SELECTORS:
                return b"E01"
            changes.append((number, value))
        offset += size
    for number, value in changes:
        reply = _write_register(stub, number, value)
        if reply != b"OK":
            return reply
    return b"OK"


# Memory.

def _read_memory(stub: GdbStub, address: int, length: int) -> bytes:
    if length > MAX_MEMORY_REQUEST or address + length > 1 << 64 or not mmu.is_canonical(address):
        return b"E01"
    proc = stub.selected()
    if proc.state == ZOMBIE:
        return b"E01"
    data = peek(proc, address, length)
    return data.hex().encode() if data or not length else b"E0e"


def _write_memory(stub: GdbStub, address: int, data: bytes) -> bytes:
    """Write only to pages mapped writable: a write through copy-on-write would have to break it first."""
    if len(data) > MAX_MEMORY_REQUEST or not mmu.is_canonical(address) or address + len(data) > 1 << 47:
        return b"E01"
    proc = stub.selected()
    if proc.state == ZOMBIE:
        return b"E01"
    pieces = []
    va, rest = address, data
    while rest:
        leaf = stub.port.leaf_entry(proc.vmspace.pmap.cr3, va)
        if not (leaf & E.P and leaf & E.RW):
            return b"E0e"
        n = min(len(rest), 4096 - (va & 0xFFF))
        pieces.append(((leaf & E.ADDR_MASK) | (va & 0xFFF), rest[:n]))
        va, rest = va + n, rest[n:]
    for paddr, chunk in pieces:
        stub.port.write_physical(paddr, chunk)
    return b"OK"


# Breakpoints and watchpoints.

def _breakpoint(stub: GdbStub, insert: bool, kind: int, address: int, length: int = 1) -> bytes:
    if kind == 0:
        if insert:
            stub.port.set_breakpoint(address)
        else:
            stub.port.clear_breakpoint(address)
        return b"OK"
    if kind == 2:
        if not 0 < length <= 8:
            return b"E01"
        if insert:
            stub.port.watch_writes(address, length, stub.control.on_watched_write)
        else:
            stub.port.unwatch_writes(address, length)
        return b"OK"
    return b""
