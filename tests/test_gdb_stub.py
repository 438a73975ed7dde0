"""The GDB remote stub, driven by a real gdb in batch mode, and by hand at the packet level for bad input."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
from vmgames.kernel.observer import Observer
from vmgames.kernel.syszerocopy import VMG_ZEROCOPY
from vmgames.kernel.vm.fault import predict_kind
from vmgames.tools.boot import boot
from vmgames.tools.gdb.protocol import frame
from vmgames.tools.gdb.registers import target_xml

from tests import test_zerocopy as zerocopy
from tests.programs import EXIT_0, EXIT_WITH_RDI, VMGAMES
from tests.test_gdb_packets_fuzz import _stub as packet_stub
from tests.test_pipes import FORK, WAIT4, WRITE, syscall

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COWFORK = os.path.join(ROOT, "build", "cowfork")
CASCADE = os.path.join(ROOT, "build", "cascade")
TIMEOUT = 120

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None,
                               reason="gdb is not installed (.ci/run installs it): the stub's gdb tests need it")


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_machine_left_running():
    """A failed test must not leave a vmgames behind (one running a spinning program would never end)."""
    yield
    while _started:
        vm = _started.pop()
        if vm.poll() is None:
            vm.kill()
            vm.communicate()


def _start(*args: str, stdin: int | None = None) -> tuple[subprocess.Popen, int]:
    """vmgames run --gdb 0 ARGS: on a free loopback port; the port it listens on."""
    vm = subprocess.Popen([*VMGAMES, "run", "--gdb", "0", *args], cwd=ROOT, stdin=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _started.append(vm)
    line = vm.stderr.readline().decode()
    match = re.match(r"vmgames: waiting for gdb on 127\.0\.0\.1:(\d+) ", line)
    assert match, line
    return vm, int(match.group(1))


def gdb(program: str, *commands: str, args: tuple[str, ...] = (),
        options: tuple[str, ...] = ()) -> tuple[str, str, int]:
    """Run gdb -batch against the stub (vmgames run with `options`, the program with `args`): (gdb's output,
    vmgames' stdout + stderr, vmgames' status)."""
    vm, port = _start(*options, program, *args)
    script = ["set pagination off", "set confirm off", f"target remote 127.0.0.1:{port}", *commands]
    result = subprocess.run(["gdb", "-batch", "-nx", *(x for c in script for x in ("-ex", c)), program],
                            capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    out, err = vm.communicate(timeout=TIMEOUT)
    return result.stdout + result.stderr, out.decode() + err.decode(), vm.returncode


@needs_gdb
def test_a_breakpoint_stops_the_child_where_registers_and_memory_read_back_what_it_has():
    output, vm_output, _ = gdb(COWFORK, "break child", "continue", "info threads", "p $rax", "x/gx &value",
                               "info symbol $pc", "p/x $fs_base")
    assert "Thread 2 hit Breakpoint 1, 0x0000000000401036 in child ()" in output
    # Both processes are threads; the parent sleeps in wait4, shown after the syscall instruction as on Linux.
    assert re.search(r"  1    Thread 1 \(cowfork \[1\], sleeping\) 0x0000000000401028 in _start \(\)", output)
    assert re.search(r"\* 2    Thread 2 \(cowfork \[2\], runnable\) 0x0000000000401036 in child \(\)", output)
    assert "$1 = 0\n" in output                       # fork returned 0 in the child
    assert re.search(r"0x403000:\s+0x0000000000000001\n", output)   # the parent's write, seen through the chain
    assert "child in section .text" in output
    assert "$2 = 0x0\n" in output
    assert "killed from gdb" in vm_output


@needs_gdb
def test_a_single_step_runs_exactly_one_instruction():
    output, _, _ = gdb(COWFORK, "p/x $pc", "x/gx &value", "stepi", "p/x $pc", "x/gx &value", "stepi", "p/x $pc",
                       "p/x $rax")
    assert "$1 = 0x401000\n" in output
    values = re.findall(r"0x403000:\s+(0x[0-9a-f]+)\n", output)
    assert values == ["0x0000000000000000", "0x0000000000000001"]   # bss reads as zeros before its first fault
    assert "$2 = 0x40100b\n" in output                # movq $1, value(%rip) is 11 bytes
    assert "$3 = 0x401010\n" in output and "$4 = 0x39\n" in output   # mov $57, %eax


@needs_gdb
def test_break_fault_cow_copy_stops_at_the_childs_write_and_step_kernel_shows_the_copy():
    output, vm_output, _ = gdb(COWFORK, "monitor break fault cow-copy", "continue", "info symbol $pc",
                               "eval \"monitor chain %p\", &value", "monitor step-kernel",
                               "eval \"monitor chain %p\", &value", "stepi", "info symbol $pc", "x/gx &value",
                               "thread 1", "x/gx &value", "monitor faults 2")
    assert ("vmgames: process 2 faults at rip 0x401036: write of 0x403000, error code 0x6, kind cow-copy "
            "(before the kernel handles it)") in output
    assert "Thread 2 stopped.\n" in output            # signal 0: the stub's own stop, not a breakpoint's
    assert "child in section .text" in output         # the pc is on the writing instruction
    # Before: the child's entry is needs-copy over the object it shares with its parent.
    assert re.search(r"map entry 0x403000-0x404000 rw- CN bss, page index 0\n"
                     r"  level 0: object (\d+) \(anonymous, ref 2, shd 0, 1 pages\), page index 0  <- holds the page",
                     output)
    assert "vm_fault: cow-copy, object" in output and "level 0 of 2" in output
    assert "PTE before: 0x0000000000000000 not present" in output
    assert re.search(r"PTE after:  0x8000000000[0-9a-f]{3}007 frame 0x[0-9a-f]+  P W U NX", output)
    # After: a shadow object in front holds the child's copy; the shared object below keeps the parent's page.
    assert re.search(r"map entry 0x403000-0x404000 rw- C- bss, page index 0\n"
                     r"  level 0: object \d+ \(anonymous, ref 1, shd 0, 1 pages\), page index 0  <- holds the page "
                     r"\(frame 0x[0-9a-f]+\)\n"
                     r"  level 1: object \d+ \(anonymous, ref 2, shd 1, 1 pages\), page index 0\n", output)
    assert re.findall(r"0x403000:\s+(0x[0-9a-f]+)\n", output) == ["0x0000000000000002", "0x0000000000000001"]
    assert re.search(r"t=\d+ pid 2: cow-copy write of 0x403000 at rip 0x401036, object \d+ level 0 of 2", output)
    assert "killed from gdb" in vm_output


@needs_gdb
def test_monitor_pte_shows_the_four_level_walk_and_monitor_vm_the_map():
    output, _, _ = gdb(COWFORK, "stepi", "eval \"monitor pte %p\", &value", "monitor vm", "monitor tlb 1",
                       "monitor stats")
    walk = re.findall(r"  (PML4|PDPT|PD  |PT  )\[\s*(\d+)\] at 0x[0-9a-f]+: (0x[0-9a-f]{16}) frame 0x[0-9a-f]+  (.*)",
                      output)
    assert [(level.strip(), int(index)) for level, index, _, _ in walk] == [("PML4", 0), ("PDPT", 0), ("PD", 2),
                                                                               ("PT", 3)]
    assert walk[-1][3] == "P W U A D NX"              # the first write set the accessed and dirty bits
    assert "process 1 (cowfork), runnable, cr3 0x1000, 3 pages mapped" in output
    assert re.search(r"0x000000403000-0x000000404000 rw- -- bss    1 mapped\n"
                     r"      object \d+ \(anonymous, ref 1, shd 0, 1 pages\)", output)
    assert "invalidations so far: 0 invalidate-page, 1 invalidate-all" in output
    assert re.search(r"  zero-fill\s+2\n", output)   # the stack (exec wrote the arguments) and value


@needs_gdb
def test_a_hardware_watchpoint_stops_after_the_write_with_old_and_new_values():
    output, _, _ = gdb(COWFORK, "watch *(long *)&value", "continue", "p/x $pc")
    assert "Hardware watchpoint 1: *(long *)&value" in output
    assert "Old value = 0\nNew value = 1\n" in output
    assert "$1 = 0x40100b\n" in output


@needs_gdb
def test_the_program_runs_to_its_end_under_gdb():
    output, vm_output, status = gdb(COWFORK, "continue")
    assert "[Inferior 1 (Remote target) exited normally]" in output
    assert vm_output.startswith("child: value = 2\nparent: value = 1\n")
    assert status == 0


@needs_gdb
def test_stepping_over_a_breakpoint_keeps_the_other_threads_stopped():
    # The audit's repro: gdb steps the parent alone over its breakpoint on wait4; the child, which that wait4
    # waits for, runs in its place but is held before the breakpoint it reaches, and reported only later.
    output, vm_output, status = gdb(COWFORK, "break *0x401015", "continue", "stepi", "break *0x401026", "continue",
                                    "stepi", "info threads", "p $rax", "continue", "continue")
    assert "internal-error" not in output
    assert "Thread 1 hit Breakpoint 1, 0x0000000000401015 in _start ()\n0x0000000000401017 in _start ()" in output
    assert "Thread 1 hit Breakpoint 2, 0x0000000000401026 in _start ()\n" in output
    assert ("vmgames: process 1 sleeps in wait4; the processes that ran in its place stopped before breakpoints "
            "(process 2 at 0x401015), which they hit once resumed: 'continue', or 'thread 2' and 'continue' if gdb "
            "steps process 1 alone again\n") in output
    assert "\nThread 1 stopped.\n0x0000000000401028 in _start ()\n" in output
    assert re.search(r"\* 1    Thread 1 \(cowfork \[1\], sleeping\) 0x0000000000401028 in _start \(\)\n"
                     r"  2    Thread 2 \(cowfork \[2\], runnable\) 0x0000000000401015 in _start \(\)\n", output)
    assert "$1 = 61\n" in output                      # still in wait4: rax holds its number until it returns
    assert "Thread 2 hit Breakpoint 1, 0x0000000000401015 in _start ()" in output
    # The restarted wait4 is not a second hit of breakpoint 2.
    assert output.count("hit Breakpoint 2") == 1 and "[Inferior 1 (Remote target) exited normally]" in output
    assert vm_output.startswith("child: value = 2\nparent: value = 1\n") and status == 0


@needs_gdb
def test_a_single_step_over_a_syscall_that_sleeps_ends_when_it_returns():
    # At the breakpoint gdb steps the parent alone: the child runs in its place until wait4 returns.
    output, _, _ = gdb(COWFORK, "break *0x401026", "continue", "stepi", "p/x $pc", "p $rax", "info threads")
    assert "Thread 1 hit Breakpoint 1, 0x0000000000401026 in _start ()\n0x0000000000401028 in _start ()\n" in output
    assert "$1 = 0x401028\n$2 = 2\n" in output        # wait4 returned the child's pid
    assert re.search(r"\* 1    Thread 1 \(cowfork \[1\], runnable\) 0x0000000000401028 in _start \(\)\n$", output)
    # Off a breakpoint, gdb steps one thread and lets the others run.
    output, _, _ = gdb(COWFORK, "break *0x401021", "continue", "stepi", "stepi", "p/x $pc", "p $rax")
    assert "0x0000000000401026 in _start ()\n0x0000000000401028 in _start ()\n$1 = 0x401028\n$2 = 2\n" in output


@needs_gdb
def test_a_thread_stepped_alone_that_exits_ends_the_step_and_gdb_goes_on_with_another():
    output, vm_output, status = gdb(COWFORK, "break *0x401080", "continue", "stepi", "continue", "thread 1",
                                    "info threads", "stepi", "p $rax", "delete", "continue")
    assert "Thread 2 hit Breakpoint 1, 0x0000000000401080 in report ()" in output
    assert "vmgames: process 2 has exited; the others are stopped (gdb resumed only 2)" in output
    assert "Cannot execute this command without a live selected thread." in output
    # The parent was woken by the exit but has not run: still in wait4, which the step completes.
    assert re.search(r"\* 1    Thread 1 \(cowfork \[1\], runnable\) 0x0000000000401028 in _start \(\)\n"
                     r"0x0000000000401028 in _start \(\)\n\$1 = 2\n", output)
    assert "[Inferior 1 (Remote target) exited normally]" in output and "internal-error" not in output
    assert vm_output.startswith("child: value = 2\nparent: value = 1\n") and status == 0


@needs_gdb
def test_a_fault_break_on_an_instruction_with_a_breakpoint_is_not_a_second_hit():
    output, _, _ = gdb(COWFORK, "break child", "monitor break fault cow-copy", "continue", "continue", "p/x $pc",
                       "monitor break clear", "continue")
    assert "will stop before the kernel handles each cow-copy fault, until 'monitor break clear'" in output
    assert output.count("hit Breakpoint 1") == 1
    assert ("vmgames: process 2 faults at rip 0x401036: write of 0x403000, error code 0x6, kind cow-copy (before the "
            "kernel handles it)") in output
    assert "\nThread 2 stopped.\n0x0000000000401036 in child ()\n" in output and "$1 = 0x401036\n" in output
    assert "[Inferior 1 (Remote target) exited normally]" in output


@needs_gdb
def test_at_the_first_stop_monitor_faults_tlb_and_pte_agree_with_monitor_stats():
    output, _, _ = gdb(COWFORK, "monitor stats", "monitor faults", "monitor tlb", "monitor pte 0x7fffffffe000")
    assert re.search(r"  zero-fill\s+1\n", output)   # exec wrote the arguments to the stack
    assert re.search(r"t=0 pid 1: zero-fill write of 0x7fffffffe[0-9a-f]{3} \(by the kernel\)", output)
    assert "cr3 0x1000 (process 1's page tables); a flush is pending" in output
    assert "page walk of 0x7fffffffe000 in process 1 (cr3 0x1000)" in output


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def _exchange(sock: socket.socket, payload: bytes) -> bytes:
    """Send one packet, return the reply's payload (acks stripped)."""
    sock.sendall(frame(payload))
    return _reply(sock)


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not re.search(rb"\$[^#]*#..", data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed, got {data!r}"
        data += chunk
    sock.sendall(b"+")
    return re.search(rb"\$([^#]*)#..", data).group(1)


def test_bad_packets_get_error_replies_and_the_machine_goes_on():
    vm, port = _start(COWFORK)
    sock = _raw(port)
    sock.sendall(b"$qSupported#00")                  # a bad checksum is refused with '-'
    assert sock.recv(1) == b"-"
    assert b"qXfer:features:read+" in _exchange(sock, b"qSupported:swbreak+")
    assert _exchange(sock, b"mzz,yy") == b"E01"        # malformed
    assert _exchange(sock, b"mffffffffffffff00,ffffffff") == b"E01"   # absurd range
    assert _exchange(sock, b"m0,10") == b"E0e"         # unmapped
    assert _exchange(sock, b"m401000,3") == b"48c705"  # the first instruction, read without faulting it in
    assert _exchange(sock, b"M401000,1:90") == b"E0e"  # text is not mapped writable
    assert _exchange(sock, b"Z9,401000,1") == b""      # unsupported breakpoint kinds say so
    assert _exchange(sock, b"P999=00") == b"E01"
    assert _exchange(sock, b"p-1") == b"E01"           # numbers are hex digits: no sign, no "0x"
    assert _exchange(sock, b"P-1=0000000000000000") == b"E01"
    assert _exchange(sock, b"m-10,10") == b"E01"
    assert _exchange(sock, b"m0x401000,1") == b"E01"
    assert _exchange(sock, b"Hg63") == b"E01"          # no thread 0x63
    assert _exchange(sock, b"vCont") == b"E01"         # resumes nothing
    assert _exchange(sock, b"vCont;x") == b"E01"
    assert _exchange(sock, b"frobnicate") == b""
    assert _monitor(sock, "pte -1") == "-1 is not a 64-bit address\n"
    assert _monitor(sock, "pte 0x800000000000").startswith("0x800000000000 is not canonical: bits 63-48 must be")
    assert _monitor(sock, "chain 0x10000000000000000") == "0x10000000000000000 is not a 64-bit address\n"
    sock.sendall(b"$m4010")                            # gone mid-packet
    sock.close()
    out, err = vm.communicate(timeout=TIMEOUT)
    assert out == b"child: value = 2\nparent: value = 1\n"
    assert b"gdb went away" in err and b"Traceback" not in err
    assert vm.returncode == 0


def _continue_then_interrupt(sock) -> None:
    """Let process 1 run for half a second, then stop it with Ctrl-C as gdb does."""
    sock.sendall(frame(b"vCont;c"))
    assert sock.recv(1) == b"+"
    time.sleep(0.5)
    sock.sendall(b"\x03")
    assert _reply(sock) == b"T02thread:1;"


def test_ctrl_c_interrupts_a_program_that_never_stops(tmp_path):
    spin = tmp_path / "spin.s"
    spin.write_text(".intel_syntax noprefix\n.globl _start\n.text\n_start:\n    inc rax\n    jmp _start\n")
    vm, port = _start(str(spin))
    sock = _raw(port)
    assert _exchange(sock, b"?") == b"T05thread:1;"
    _continue_then_interrupt(sock)
    rax = int.from_bytes(bytes.fromhex(_exchange(sock, b"p0").decode()), "little")
    assert rax > 1000                                  # it ran, and stopped
    sock.sendall(frame(b"vKill;1"))
    assert _reply(sock) == b"OK"
    vm.communicate(timeout=TIMEOUT)
    assert vm.returncode == 128 + 9


def _monitor(sock: socket.socket, command: str) -> str:
    """A monitor command's output."""
    sock.sendall(frame(b"qRcmd," + command.encode().hex().encode()))
    output = b""
    while (reply := _reply(sock)) != b"OK":
        output += bytes.fromhex(reply[1:].decode())
    return output.decode()


def test_ctrl_c_stops_the_stepped_thread_not_one_running_in_its_place(build):
    # The parent waits for a child that never ends: stepped alone into wait4, it lets the child run (and spin).
    path = build(f"""
_start:
{syscall(FORK)}
    test rax, rax
    jz spin
{syscall(WAIT4, -1, 0, 0, 0)}
spin:
    inc rbx
    jmp spin
""")
    vm, port = _start(path)
    sock = _raw(port)
    assert _monitor(sock, "break syscall wait4").startswith("will stop before the kernel handles each wait4")
    assert _exchange(sock, b"vCont;c").startswith(b"O")   # the note
    assert _reply(sock) == b"T00thread:1;"
    _monitor(sock, "break clear")
    sock.sendall(frame(b"vCont;s:1"))
    assert sock.recv(1) == b"+"
    time.sleep(0.5)
    sock.sendall(b"\x03")
    assert _reply(sock) == b"T02thread:1;"             # never thread 2's: gdb waits for thread 1's stop only
    assert _exchange(sock, b"Hg2") == b"OK"
    rbx = int.from_bytes(bytes.fromhex(_exchange(sock, b"p1").decode()), "little")
    assert rbx > 1000                                  # the child ran meanwhile
    sock.sendall(frame(b"vKill;1"))
    assert _reply(sock) == b"OK"
    vm.communicate(timeout=TIMEOUT)


def test_ctrl_c_interrupts_a_program_waiting_for_console_input(build):
    path = build(f"""
_start:
    xor eax, eax
    xor edi, edi
    lea rsi, [rip + buf]
    mov edx, 1
    syscall
    mov edi, eax
{EXIT_WITH_RDI}
.bss
buf: .space 16
""")
    stdin_read, stdin_write = os.pipe()                # stays empty until the test writes to it
    try:
        vm, port = _start(path, stdin=stdin_read)
    finally:
        os.close(stdin_read)
    with os.fdopen(stdin_write, "wb") as stdin:
        sock = _raw(port)
        _continue_then_interrupt(sock)
        pc = int.from_bytes(bytes.fromhex(_exchange(sock, b"p10").decode()), "little")
        assert _exchange(sock, b"m%x,2" % pc) == b"0f05"      # stopped in the read: on its syscall instruction
        assert _exchange(sock, b"P0=0100000000000000") == b"E01"   # in the middle of a syscall
        sock.sendall(frame(b"vCont;s:1;c"))
        assert sock.recv(1) == b"+"
        stdin.write(b"x")
        stdin.flush()
        assert _reply(sock) == b"T05thread:1;"           # the step ends as the read returns
        assert _exchange(sock, b"p0") == b"0100000000000000"
        assert _exchange(sock, b"vCont;c") == b"W01"
    vm.communicate(timeout=TIMEOUT)
    assert vm.returncode == 1


def test_the_stub_listens_on_loopback_unless_told_otherwise():
    vm, port = _start(COWFORK)                         # "--gdb 0": a port only
    with open("/proc/net/tcp", encoding="ascii") as f:
        listening = f.read()
    assert f"0100007F:{port:04X} 00000000:0000 0A" in listening   # 127.0.0.1:port, LISTEN
    assert f"00000000:{port:04X} 00000000:0000 0A" not in listening
    vm.kill()
    result = subprocess.run([*VMGAMES, "run", "--gdb", "localhost:http", COWFORK],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and result.stderr == "vmgames: --gdb takes [HOST:]PORT, not 'localhost:http'\n"
    result = subprocess.run([*VMGAMES, "run", "--gdb", "1", "--fast", COWFORK],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "--gdb needs the instruction clock" in result.stderr


def _predicted_and_actual_kinds(path: str, *args: str) -> tuple[list[str], list[str]]:
    kernel = boot(32 << 20, root=ROOT, stdout=io.BytesIO(), stderr=io.BytesIO())
    predictions, outcomes = [], []

    class Watch(Observer):
        def before_fault(self, k, proc, va, access, error_code, user):
            predictions.append(predict_kind(proc.vmspace, va, access, error_code))

        def after_fault(self, k, proc, va, result, user):
            outcomes.append(result.kind)

    kernel.observe(Watch())
    kernel.spawn(kernel.fs.open_host(path), [path, *args], [])
    kernel.run()
    return predictions, outcomes


def test_predicted_fault_kinds_agree_with_vm_fault_on_every_fault_of_a_fork_cascade():
    predictions, outcomes = _predicted_and_actual_kinds(CASCADE, "7", "30", "16", "3")
    assert predictions == outcomes
    assert {"zero-fill", "file", "cow-copy", "cow-move"} <= set(outcomes)


def test_predicted_fault_kinds_agree_when_a_page_in_flight_cannot_move(build):
    # After the child exits, the parent's write would move the page up, but a copy-on-write send holds it.
    path = build(zerocopy.program(f"""
    mov byte ptr [rip + page], 1
{zerocopy.OPEN_WIRE}
{syscall(zerocopy.IOCTL, zerocopy.WIRE, VMG_ZEROCOPY, 1)}
{syscall(WRITE, zerocopy.WIRE, "page", 4096)}
{syscall(FORK)}
    test rax, rax
    jz child_done
{syscall(61, -1, 0, 0, 0)}
    mov byte ptr [rip + page], 3
child_done:
"""))
    predictions, outcomes = _predicted_and_actual_kinds(path)
    assert predictions == outcomes
    assert outcomes.count("cow-copy") == 1 and "cow-move" not in outcomes


def test_break_on_fault_stops_in_pdb_with_the_fault_in_scope():
    commands = "p kind, hex(va), access\nc\nc\nc\n"
    result = subprocess.run([*VMGAMES, "run", "--break-on", "fault:cow-copy", COWFORK],
                            input=commands, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
                            env={**os.environ, "PYTHONBREAKPOINT": ""})
    assert ("vmgames: process 2 faults at rip 0x401036: write of 0x403000, kind cow-copy, the page is in object 2, "
            "level 0 of the chain (one level down once the handler pushes a shadow: the entry is needs-copy).\n"
            ) in result.stdout
    assert "(Pdb) ('cow-copy', '0x403000', 1)" in result.stdout
    assert result.returncode == 0
    bad = subprocess.run([*VMGAMES, "run", "--break-on", "fault:sideways", COWFORK],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("vmgames: unknown fault kind 'sideways'; kinds: zero-fill")


@needs_gdb
def test_a_fatal_fault_stops_with_its_signal_before_the_kernel_kills_the_process():
    output, vm_output, status = gdb(os.path.join(ROOT, "build", "segv"), "continue", "p/x $pc", "continue")
    assert "vmgames: process 1 will be killed by SIGSEGV: 0x403000 (permission denied)" in output
    assert "Program received signal SIGSEGV, Segmentation fault.\n0x000000000040104e in _start ()" in output
    assert "Program terminated with signal SIGSEGV" in output
    assert "killed by SIGSEGV: write of 0x403000 (permission denied) at 0x40104e" in vm_output
    assert status == 128 + 11


@needs_gdb
def test_break_syscall_stops_before_the_kernel_and_registers_written_at_a_breakpoint_stick():
    output, vm_output, status = gdb(COWFORK, "monitor break syscall wait4", "continue", "p $rax", "p $rdi",
                                    "set var $rax = 7", "monitor break clear", "break child", "continue",
                                    "set var $rax = 77", "stepi", "p $rax", "detach")
    assert "vmgames: process 1 calls wait4 (before the kernel handles it)" in output
    assert "$1 = 61\n$2 = 2\n" in output              # wait4(2, ...)
    assert "Could not write register \"rax\"; remote failure reply 'E01'" in output   # not in a syscall
    assert "Thread 2 hit Breakpoint 1, 0x0000000000401036 in child ()" in output
    assert "$3 = 77\n" in output
    assert "[Inferior 1 (Remote target) detached]" in output
    assert vm_output.startswith("child: value = 2\nparent: value = 1\n") and "gdb detached; running on" in vm_output
    assert status == 0


def test_target_description_in_pieces_and_no_ack_mode():
    vm, port = _start(COWFORK)
    sock = _raw(port)
    whole = b""
    while True:
        reply = _exchange(sock, b"qXfer:features:read:target.xml:%x,200" % len(whole))
        whole += reply[1:]
        if reply[:1] == b"l":
            break
        assert reply[:1] == b"m" and len(reply) == 1 + 0x200
    assert whole.decode() == target_xml()
    assert '<reg name="fs_base" bitsize="64" type="int" regnum="57"/>' in whole.decode()
    assert _exchange(sock, b"QStartNoAckMode") == b"OK"
    sock.sendall(b"$g#00" + frame(b"p39"))             # without acks a bad packet is dropped, not refused
    data = b""
    while not re.fullmatch(rb"\$[0-9a-f]*#[0-9a-f]{2}", data):
        data += sock.recv(65536)
    assert data.startswith(b"$0000000000000000#")      # fs_base (register 0x39) of a fresh process
    sock.sendall(frame(b"D"))
    out, _ = vm.communicate(timeout=TIMEOUT)
    assert out == b"child: value = 2\nparent: value = 1\n"


@needs_gdb
def test_the_tutorial_session_is_what_gdb_shows():
    with open(os.path.join(ROOT, "docs", "gdb-tutorial.md"), encoding="utf-8") as f:
        transcript = re.search(r"\$ gdb -q build/cowfork\n(.*?)```", f.read(), re.S).group(1)
    commands = [line[len("(gdb) "):] for line in transcript.splitlines() if line.startswith("(gdb) ")]
    assert commands[0] == "target remote :1234" and "monitor step-kernel" in commands
    vm, port = _start("build/cowfork")
    script = ["set pagination off"]
    for command in commands:
        script += [f"echo (gdb) {command}\\n", command.replace(":1234", f"127.0.0.1:{port}")]
    result = subprocess.run(["gdb", "-q", "-batch", "-nx", *(x for c in script for x in ("-ex", c)), "build/cowfork"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, cwd=ROOT)
    out, _ = vm.communicate(timeout=TIMEOUT)
    assert result.stdout == transcript
    assert out == b"child: value = 2\nparent: value = 1\n"


def test_an_oversized_packet_drops_the_client_and_the_program_runs_on():
    vm, port = _start(COWFORK)
    sock = _raw(port)
    sock.sendall(b"$" + b"m" * 0x5000)
    assert sock.recv(1) == b""                         # dropped
    out, err = vm.communicate(timeout=TIMEOUT)
    assert out == b"child: value = 2\nparent: value = 1\n"
    assert b"gdb went away (packet longer than 16384 bytes); running on" in err
    assert vm.returncode == 0


def _pdb_session(commands: list[str]) -> str:
    """Run the tutorial's --break-on session with `commands` on pdb's stdin; its output as the tutorial shows it.

    pdb does not echo what it reads from a pipe, so each command is put back after its prompt; paths are
    shortened to the repository's.
    """
    result = subprocess.run([*VMGAMES, "run", "--break-on", "fault:cow-copy", "build/cowfork"],
                            input="".join(c + "\n" for c in commands), capture_output=True, text=True, cwd=ROOT,
                            timeout=TIMEOUT, env={**os.environ, "PYTHONBREAKPOINT": ""})
    first, *answers = result.stdout.replace(ROOT + os.sep, "").split("(Pdb) ")
    return first + "".join(f"(Pdb) {command}\n{answer}" for command, answer in zip(commands, answers, strict=False))


def test_the_tutorial_pdb_session_is_what_pdb_shows_on_the_code_as_it_is():
    with open(os.path.join(ROOT, "docs", "gdb-tutorial.md"), encoding="utf-8") as f:
        part = f.read().split("## Walking the fault handler itself in pdb", 1)[1]
    blocks = re.findall(r"```\n(.*?)```", part, re.S)
    start = "$ .venv/bin/vmgames run --break-on fault:cow-copy build/cowfork\n"
    assert blocks[0].startswith(start)
    transcript = "".join(blocks)[len(start):]
    # Every line of fault.py the session shows is that line of the code now.
    with open(os.path.join(ROOT, "kernel", "vm", "fault.py"), encoding="utf-8") as f:
        source = f.read().splitlines()
    shown = re.findall(r"> kernel/vm/fault\.py\((\d+)\)\w+\(\)\n-> (.*)\n", transcript)
    assert len(shown) >= 5
    for number, text in shown:
        assert source[int(number) - 1].strip() == text, f"fault.py line {number} is not {text!r}"
    breakpoints = re.findall(r"Breakpoint \d+ at kernel/vm/fault\.py:(\d+)", transcript)
    assert [source[int(number) - 1].split("(")[0] for number in breakpoints] == ["def find_page",
                                                                                 "def vm_fault_cow_moves"]
    # And replayed, pdb shows what the tutorial does (a line ending in "..." is cut short there).
    commands = [line[len("(Pdb) "):] for line in transcript.splitlines() if line.startswith("(Pdb) ")]
    replayed = _pdb_session(commands).splitlines()
    for number, line in enumerate(transcript.splitlines()):
        if line.endswith(", ..."):
            assert replayed[number].startswith(line[:-len("...")]), (number, replayed[number])
        else:
            assert replayed[number] == line, (number, replayed[number])


# clock_gettime into a fresh bss page: the zero-fill fault is the kernel's, taken by copyout inside the syscall.
CLOCK_INTO_BSS = f"""
.text
_start:
    mov edi, 1
    lea rsi, [rip + when]
    mov eax, 228
    syscall
{EXIT_0}
.bss
.align 4096
when: .zero 16
"""


def test_a_fault_inside_a_syscalls_copyout_reaches_the_fault_hooks(build):
    kernel = boot(16 << 20, root=ROOT, stdout=io.BytesIO(), stderr=io.BytesIO())
    seen = []

    class Watch(Observer):
        def before_fault(self, k, proc, va, access, error_code, user):
            seen.append(("before", va, access, user))

        def after_fault(self, k, proc, va, result, user):
            seen.append(("after", va, result.kind, user))

    kernel.observe(Watch())
    path = build(CLOCK_INTO_BSS)
    kernel.spawn(kernel.fs.open_host(path), [path], [])
    kernel.run()
    pages = [(when, va & ~0xFFF, what, user) for when, va, what, user in seen]
    assert pages == [
        ("before", 0x7FFF_FFFF_E000, 1, False), ("after", 0x7FFF_FFFF_E000, "zero-fill", False),  # exec's stack build
        ("before", 0x401000, 2, True), ("after", 0x401000, "file", True),                          # the text, fetched
        ("before", 0x402000, 1, False), ("after", 0x402000, "zero-fill", False)]  # clock_gettime's copyout


def test_break_on_zero_fill_stops_on_a_fault_taken_inside_a_syscall(build):
    result = subprocess.run([*VMGAMES, "run", "--break-on", "fault:zero-fill",
                             build(CLOCK_INTO_BSS)],
                            input="p user, hex(va)\nc\nc\nc\nc\n", capture_output=True, text=True, cwd=ROOT,
                            timeout=TIMEOUT, env={**os.environ, "PYTHONBREAKPOINT": ""})
    assert ("vmgames: process 1 faults in the kernel (copyin/copyout of the syscall there) at rip 0x401011: "
            "write of 0x402000, kind zero-fill") in result.stdout
    assert "(Pdb) (False, '0x402000')" in result.stdout
    assert result.returncode == 0


def test_the_predicted_kind_of_a_first_write_to_a_data_page_not_yet_read_from_the_file_is_cow_copy(build):
    """The page is paged in from the file and copied up in one fault: predict_kind is the handler's own decision."""
    path = build(f"""
.text
_start:
    mov byte ptr [rip + table], 1
{EXIT_0}
.data
.align 4096
table: .zero 8192
""")
    predictions, outcomes = _predicted_and_actual_kinds(path)
    assert predictions == outcomes == ["zero-fill", "file", "cow-copy"]


@needs_gdb
def test_gdb_cannot_change_a_segment_selector_but_may_write_it_back():
    output, vm_output, status = gdb(COWFORK, "p $cs", "set $cs = 8", "set $ss = 0", "set $gs = 0x2b", "p $cs",
                                    "p $ss", "p $gs", "set $cs = 35", "set remote set-register-packet off",
                                    "set $rax = 5", "set $ds = 0x2b", "p $rax", "p $ds", "continue")
    for name in ("cs", "ss", "gs"):
        assert f"Could not write register \"{name}\"; remote failure reply 'E01'" in output
    assert "Could not write registers; remote failure reply 'E01'" in output    # G changing ds
    assert output.count("E01") == 4                                               # not `set $cs = 35`
    assert "$1 = 35\n$2 = 35\n$3 = 27\n$4 = 0\n$5 = 5\n$6 = 0\n" in output
    assert vm_output.startswith("child: value = 2\nparent: value = 1\n") and status == 0


def test_p_and_g_packets_refuse_to_change_a_segment_selector_and_g_writes_all_or_nothing():
    stub, connection = packet_stub()

    def ask(packet: bytes) -> bytes:
        stub.handle(packet)
        return connection.sent[-1]

    registers = ask(b"g")
    cs = ask(b"p12")
    assert ask(b"P12=08000000") == b"E01" and ask(b"p12") == cs
    assert all(ask(b"P%x=2b000000" % n) == b"E01" for n in range(0x12, 0x18))    # cs, ss, ds, es, fs, gs
    assert ask(b"g") == registers
    assert ask(b"P12=" + cs) == b"OK"                          # the same value back: no change
    assert ask(b"P0=0500000000000000") == b"OK" and ask(b"p0") == b"0500000000000000"
    # G: rax changed together with ds is refused whole, rax included; with the selectors as they are, it is written.
    rax, cs_offset = 16, 2 * (16 * 8 + 8 + 4)                  # hex digits: 16 quadwords, rip, eflags
    ds_offset = cs_offset + 2 * 8
    changed = b"0700000000000000" + registers[rax:ds_offset] + b"2b000000" + registers[ds_offset + 8:]
    assert ask(b"G" + changed) == b"E01" and ask(b"p0") == b"0500000000000000"
    same_selectors = b"0700000000000000" + registers[rax:]
    assert ask(b"G" + same_selectors) == b"OK" and ask(b"p0") == b"0700000000000000"
    assert ask(b"g") == same_selectors


@needs_gdb
def test_monitor_break_syscall_takes_a_number_and_straces_name():
    output, _, status = gdb(COWFORK, "monitor break syscall 61", "monitor break syscall syscall_0x3d",
                            "monitor break syscall 0x3d", "continue", "p $rdi", "monitor break clear", "continue")
    assert output.count("will stop before the kernel handles each wait4, until 'monitor break clear'") == 2
    assert "unknown syscall '0x3d': not in Linux's x86-64 table" in output
    assert "vmgames: process 1 calls wait4 (before the kernel handles it)" in output and "$1 = 2\n" in output
    assert status == 0


def test_monitor_break_syscall_keeps_the_name_the_kernel_gives_at_the_break():
    stub, connection = packet_stub()
    for name in ("newfstatat", "262", "syscall_0x1f4", "500"):
        stub.handle(b"qRcmd," + f"break syscall {name}".encode().hex().encode())
        assert connection.sent[-1] == b"OK"
    assert stub.control.syscall_breaks == {"newfstatat", "syscall_0x1f4"}


@needs_gdb
def test_monitor_queues_and_swap_at_the_first_swap_in():
    pressure = os.path.join(ROOT, "build", "pressure")
    output, vm_output, status = gdb(pressure, "monitor break fault swap-in", "continue", "monitor queues",
                                    "monitor swap", "monitor break clear", "continue",
                                    args=("3000", "10", "2"), options=("--ram", "8M", "--swap", "64M"))
    stop = re.search(r"vmgames: process 1 faults at rip 0x[0-9a-f]+: (read|write) of 0x[0-9a-f]+, error code 0x[46], "
                     r"kind swap-in \(before the kernel handles it\)", output)
    assert stop, output
    assert re.search(r"page queues: [\d,]+ active, [\d,]+ inactive, [\d,]+ cache, [\d,]+ wired, [\d,]+ free", output)
    assert "it tells used pages by the accessed bits of their PTEs" in output
    assert re.search(r"page daemon wakeups [1-9][\d,]*", output)
    assert re.search(r"active, oldest first:\n  frame 0x[0-9a-f]+: object \d+ page \d+, act_count \d+", output)
    assert re.search(r"swap: 16,384 blocks of 4 KiB, [1-9][\d,]* in use", output)
    assert re.search(r"  object \d+ \(anonymous\): [1-9][\d,]* pages? on swap, blocks \d+-\d+", output)
    assert "pressure: 3000 pages (300 hot), 2 rounds" in vm_output and status == 0
