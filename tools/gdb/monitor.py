"""gdb's `monitor` commands: what `monitor vm`, `pte`, `chain`, `tlb`, `stats`,
`faults` (and, in tools/gdb/pressure.py, `queues` and `swap`) show (the kernel's view of one moment, as text for gdb's
console), and `monitor break` and `step-kernel`, which set where execution
control (tools/gdb/execution.py) stops in the kernel.

Nothing here changes the machine: page tables are read with the walker's
side-effect-free `walk_entries` and chains with the fault handler's own
`find_page`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from vmgames.emulator import mmu
from vmgames.emulator import pte as E
from vmgames.kernel import syscall
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE, Process
from vmgames.kernel.vm import fault
from vmgames.kernel.vm.fault import find_page
from vmgames.kernel.vm.map import prot_letters
from vmgames.kernel.vm.object import VMObject
from vmgames.kernel.vmmeter import TraceSink, record
from vmgames.tools import stats as run_stats
from vmgames.tools import vmstat
from vmgames.tools.gdb import pressure

if TYPE_CHECKING:
    from vmgames.tools.gdb.execution import ExecutionControl
    from vmgames.tools.gdb.stub import GdbStub

RECENT_EVENTS = 1000
HELP = """\
monitor vm                  every process's map entries, protections and shadow chains
monitor pte ADDR            the 4-level page walk of ADDR, every entry's bits
monitor chain ADDR          the shadow chain at ADDR and which level holds the page
monitor tlb [N]             CR3, invalidation counts, the last N invalidations
monitor cpus                each CPU: what it runs, the address space it has loaded, its TLB and clock
monitor queues              the page queues, their oldest pages, the pageout daemon's thresholds and work
monitor swap                swap space: blocks in use, free runs, fragmentation, the objects on swap
monitor stats               what the kernel did so far (the --stats table)
monitor faults [N]          the last N faults (default 10)
monitor break fault [KIND]  stop before the kernel handles each fault (of KIND), until 'break clear'
monitor break syscall NAME  stop before the kernel handles each syscall NAME (or number), until 'break clear'
monitor break clear         forget every fault and syscall break
monitor step-kernel         (stopped before a fault) let vm_fault run, then stop again
kinds: """ + ", ".join(fault.KINDS)


def command(stub: GdbStub, text: str) -> bytes | None:
    """Carry out one `monitor` command: its output goes to gdb's console.

    The reply is OK, or None for `step-kernel`, which resumes the kernel:
    its reply comes once vm_fault has run.
    """
    words = text.split()
    if not words or words[0] == "help":
        return _output(stub, HELP)
    name, args = words[0], words[1:]
    proc = stub.selected()
    try:
        if name == "vm":
            out = vm(stub.kernel)
        elif name in ("pte", "chain") and len(args) == 1:
            va = int(args[0], 0)
            if va < 0 or va >> 64:
                return _output(stub, f"{args[0]} is not a 64-bit address")
            if not mmu.is_canonical(va):
                return _output(stub, f"{va:#x} is not canonical: bits 63-48 must be copies of bit 47 "
                                     "(user addresses are 0 to 0x7fffffffffff)")
            if proc.state == ZOMBIE:
                return _output(stub, f"process {proc.pid} has exited: its address space is gone")
            out = pte(proc, va) if name == "pte" else chain(proc, va)
        elif name in ("tlb", "faults"):
            count = int(args[0], 0) if args else 10
            if count < 1:
                return _output(stub, f"monitor {name} N: N must be at least 1")
            out = tlb(stub.kernel, stub.tap, count) if name == "tlb" else faults(stub.tap, count)
        elif name == "stats":
            out = stats(stub.kernel)
        elif name == "cpus":
            out = cpus(stub.kernel)
        elif name == "queues" and not args:
            out = pressure.queues(stub.kernel)
        elif name == "swap" and not args:
            out = pressure.swap(stub.kernel)
        elif name == "break":
            out = _break(stub.control, args)
        elif name == "step-kernel":
            fault_stop = stub.control.fault_stop
            if fault_stop is None or fault_stop.step_kernel:
                return _output(stub, "not stopped before a fault: use 'monitor break fault' first")
            fault_stop.step_kernel = True
            return None
        else:
            return _output(stub, f"unknown monitor command {text!r}\n{HELP}")
    except ValueError:
        return _output(stub, f"not a number in {text!r}")
    return _output(stub, out)


def _break(control: ExecutionControl, args: list[str]) -> str:
    if args[:1] == ["fault"] and len(args) <= 2:
        kind = args[1] if len(args) == 2 else "any"
        if kind not in (*fault.KINDS, "any"):
            return f"unknown fault kind {kind!r}; kinds: {', '.join(fault.KINDS)}"
        control.fault_breaks.add(kind)
        return (f"will stop before the kernel handles each {'' if kind == 'any' else kind + ' '}fault, "
                "until 'monitor break clear'")
    if args[:1] == ["syscall"] and len(args) == 2:
        name = syscall.canonical_name(args[1])
        if name is None:
            return syscall.unknown_name_message(args[1])
        control.syscall_breaks.add(name)
        return f"will stop before the kernel handles each {name}, until 'monitor break clear'"
    if args == ["clear"]:
        control.fault_breaks.clear()
        control.syscall_breaks.clear()
        return "no fault or syscall breaks"
    return "usage: monitor break fault [KIND] | break syscall NAME | break clear"


def _output(stub: GdbStub, text: str) -> bytes:
    stub.console(text)
    return b"OK"


class EventTap:
    """Keeps the last faults and TLB invalidations the recorder saw, for `monitor faults` and `monitor tlb`.

    It sits in the recorder's sink (the one place every event passes) and
    hands each event on to the trace writer, if there is one.
    """

    def __init__(self, downstream: TraceSink | None) -> None:
        self.downstream = downstream
        self.faults: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.tlb: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)

    def __call__(self, t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        if type_ == "fault":
            self.faults.append(record(t, cpu, pid, type_, kind, fields))
        elif type_ == "tlb":
            self.tlb.append(record(t, cpu, pid, type_, kind, fields))
        if self.downstream is not None:
            self.downstream(t, cpu, pid, type_, kind, fields)


def describe_object(obj: VMObject) -> str:
    what = f"vnode {obj.vnode.path.rsplit('/', 1)[-1]}" if obj.vnode else obj.kind
    swapped = f", {len(obj.swap_blocks)} on swap" if obj.swap_blocks else ""
    return f"object {obj.id} ({what}, ref {obj.ref_count}, shd {obj.shadow_count}, {len(obj.pages)} pages{swapped})"


def describe_pte(entry: int) -> str:
    if not entry & E.P:
        return f"{entry:#018x} not present"
    return f"{entry:#018x} frame {E.frame_of(entry):#x}  {E.describe(entry)}"


def leaf_pte(proc: Process, va: int) -> int:
    """The PTE that maps va now (0 if the walk stops before a leaf)."""
    return mmu.leaf_entry(proc.kernel.machine.ram.qwords, proc.vmspace.pmap.cr3, va)


def vm(kernel: Kernel) -> str:
    lines = []
    for proc in sorted(kernel.processes.values(), key=lambda p: p.pid):
        if proc.state == ZOMBIE:
            continue
        pmap = proc.vmspace.pmap
        lines.append(f"process {proc.pid} ({proc.name}), {proc.state}, cr3 {pmap.cr3:#x}, {pmap.resident} pages mapped")
        for entry in proc.vmspace.map.entries:
            chain, obj = [], entry.object
            while obj is not None:
                chain.append(describe_object(obj))
                obj = obj.backing
            lines.append(f"  {entry.start:#014x}-{entry.end:#014x} {prot_letters(entry.protection)} {entry.flags()} "
                         f"{entry.name or '-':6} {pmap.resident_in(entry.start, entry.end)} mapped")
            lines.append("      " + "\n    -> ".join(chain))
    return "\n".join(lines) or "no processes"


def pte(proc: Process, va: int) -> str:
    qwords = proc.kernel.machine.ram.qwords
    lines = [f"page walk of {va:#x} in process {proc.pid} (cr3 {proc.vmspace.pmap.cr3:#x})"]
    walk = mmu.walk_entries(qwords, proc.vmspace.pmap.cr3, va)
    for (level, paddr, entry), shift in zip(walk, (39, 30, 21, 12), strict=False):
        index = (va >> shift) & 0x1FF
        lines.append(f"  {level:4}[{index:3}] at {paddr:#x}: {describe_pte(entry)}")
    return "\n".join(lines)


def chain(proc: Process, va: int) -> str:
    entry = proc.vmspace.map.lookup(va)
    if entry is None:
        return f"{va:#x} is not mapped in process {proc.pid}"
    holder, held_at, level, page = find_page(entry, va)
    lines = [f"{va:#x} in process {proc.pid}: map entry {entry.start:#x}-{entry.end:#x} "
             f"{prot_letters(entry.protection)} {entry.flags()} {entry.name}, page index {entry.pindex(va)}"]
    obj, index, depth = entry.object, entry.pindex(va), 0
    while obj is not None:
        mark = ""
        if obj is holder and page is not None:
            mark = f"  <- holds the page (frame {page.frame:#x})"
        lines.append(f"  level {depth}: {describe_object(obj)}, page index {index}{mark}")
        index += obj.backing_offset
        obj, depth = obj.backing, depth + 1
    if page is None and held_at in holder.swap_blocks:
        lines.append(f"  level {level} has it on swap (block {holder.swap_blocks[held_at]}): a fault would read it "
                     "back (a swap-in)")
    elif page is None:
        lines.append(f"  no object has the page: a fault would {'page it in' if holder.vnode else 'zero-fill it'}")
    elif entry.needs_copy:
        lines.append("  needs-copy: the chain is shared; a write pushes a shadow object in front and copies the page "
                     "up into it, a read maps it read-only")
    elif level == 0:
        lines.append("  the top object has the page: it is private to this mapping")
    else:
        lines.append(f"  found at level {level}: a read maps it read-only, a write copies it up (copy-on-write)")
    lines.append(f"  PTE now: {describe_pte(leaf_pte(proc, va))}")
    return "\n".join(lines)


def tlb(kernel: Kernel, tap: EventTap, count: int) -> str:
    recorder = kernel.recorder
    machine = kernel.machine
    owner = f"process {kernel.loaded.tgid}'s page tables" if kernel.loaded is not None else "no process loaded"
    whose = f"CPU {kernel.pcpu.index}: " if len(kernel.cpus) > 1 else ""
    lines = [f"{whose}cr3 {machine.cr3:#x} ({owner}); a flush is {'pending' if machine.tlb.pending else 'not pending'} "
             "(Unicorn's TLB is flushed whole, before user code runs again)",
             f"invalidations so far: {recorder.count('tlb', 'invalidate-page')} invalidate-page, "
             f"{recorder.count('tlb', 'invalidate-all')} invalidate-all"]
    several = len(kernel.cpus) > 1
    if several:
        lines.append(f"shootdowns so far: {recorder.count('tlb', 'shootdown')} sent, "
                     f"{sum(recorder.count('tlb', kind) for kind in vmstat.IPI_KINDS)} IPIs taken")
    recent = list(tap.tlb)[-count:]
    if recent:
        lines.append(f"the last {len(recent)}:")
    for event in recent:
        where = f" {event['address']:#x}" if event.get("address") is not None else ""
        cpu = f" cpu {event['cpu']}" if several else ""
        lines.append(f"  t={event['t']}{cpu} pid {event['pid']}: {event['kind']}{where} ({event['reason']})")
    return "\n".join(lines)


def cpus(kernel: Kernel) -> str:
    """Each CPU: the task it runs (or idle), whose address space its CR3 holds (kept while idle: lazy TLB),
    how many translations its TLB may hold, flushes and IPIs still to take, its clock."""
    lines = []
    for pcpu in kernel.cpus:
        processor = pcpu.processor
        proc = pcpu.current
        running = f"runs {proc.name} [{proc.tgid}] thread {proc.pid}" if proc is not None else "idle"
        space = pcpu.active_vmspace
        users = [p for p in kernel.processes.values() if p.vmspace is space and p.state != ZOMBIE]
        loaded = (f"cr3 {processor.cr3:#x} ({users[0].name} [{users[0].tgid}]'s address space"
                  f"{', kept while idle' if proc is None else ''})" if space is not None and users
                  else "no address space loaded")
        waiting = f", {len(pcpu.ipis)} shootdown IPIs to take" if pcpu.ipis else ""
        flush = ", a flush pending" if processor.tlb.pending else ""
        lines.append(f"cpu {pcpu.index}{' (selected)' if pcpu is kernel.pcpu else ''}: {running}; {loaded}; "
                     f"TLB may hold {len(processor.tlb.held)} translation{'s' * (len(processor.tlb.held) != 1)}"
                     f"{flush}{waiting}; t = {processor.now:,} "
                     f"({processor.idle_time:,} idle)")
    return "\n".join(lines)


def faults(tap: EventTap, count: int) -> str:
    recent = list(tap.faults)[-count:]
    if not recent:
        return "no faults yet"
    lines = []
    for event in recent:
        rip = f" at rip {event['rip']:#x}" if event.get("rip") is not None else " (by the kernel)"
        where = ""
        if event.get("object") is not None:
            where = f", object {event['object']} level {event['level']} of {event['depth']}, frame {event['frame']:#x}"
        reason = f" ({event['reason']})" if event.get("reason") else ""
        lines.append(f"t={event['t']} pid {event['pid']}: {event['kind']}{reason} {event['access']} "
                     f"of {event['address']:#x}{rip}{where}")
    return "\n".join(lines)


def stats(kernel: Kernel) -> str:
    machine = kernel.machine
    counters = run_stats.collect(kernel.recorder, machine.retired if machine.deterministic else None,
                                 kernel.allocator.total, machine.processors, kernel.allocator,
                                     kernel.vm.swap_pager)
    return run_stats.format_table(counters)
