"""`make bench`: how fast the machine runs user code, faults and syscalls.

Figures are printed, never asserted.  Each is the best of a few repeats; the
per-event costs come from the difference between a long and a short run of
the same program, so process set-up and exit cancel out.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

from vmgames.emulator import yardstick
from vmgames.tools import trace
from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot
from vmgames.tools.snippets import CLONE_THREAD

LOOP_ITERATIONS = 50_000_000
LOOP = """
.intel_syntax noprefix
.globl _start
.text
_start:
    mov rcx, {n}
again:
    add rax, rcx
    xor rbx, rax
    dec rcx
    jnz again
    mov eax, 60
    xor edi, edi
    syscall
"""

def _write_every_page(label: str, value: int) -> str:
    """Assembly that writes `value` to each of the {n} pages of `area`."""
    return f"""
    lea rbx, [rip + area]
    mov ecx, {{n}}
{label}:
    mov byte ptr [rbx], {value}
    add rbx, 4096
    dec ecx
    jnz {label}
"""


TOUCH = """
.intel_syntax noprefix
.globl _start
.text
_start:
""" + _write_every_page("again", 1) + """
    mov eax, 60
    xor edi, edi
    syscall
.bss
.align 4096
area: .zero {size}
"""

GETPID = """
.intel_syntax noprefix
.globl _start
.text
_start:
    mov ebx, {n}
again:
    mov eax, 39
    syscall
    dec ebx
    jnz again
    mov eax, 60
    xor edi, edi
    syscall
"""


# Touch {n} pages of bss, fork; the child writes every page (a COW copy each,
# since the parent still holds them) and exits; the parent waits.
FORK_THEN_CHILD_WRITES = """
.intel_syntax noprefix
.globl _start
.text
_start:
""" + _write_every_page("touch", 1) + """
    mov eax, 57
    syscall
    test rax, rax
    jz child
    mov rdi, rax
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    mov eax, 61
    syscall
    mov eax, 60
    xor edi, edi
    syscall
child:
""" + _write_every_page("write", 2) + """
    mov eax, 60
    xor edi, edi
    syscall
.bss
.align 4096
area: .zero {size}
"""

FORK_EXIT_WAIT = """
.intel_syntax noprefix
.globl _start
.text
_start:
    mov r12d, {n}
again:
    mov eax, 57
    syscall
    test rax, rax
    jz child
    mov rdi, rax
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    mov eax, 61
    syscall
    dec r12d
    jnz again
    mov eax, 60
    xor edi, edi
    syscall
child:
    mov eax, 60
    xor edi, edi
    syscall
"""


# Four threads share {n} iterations of the compute loop (n/4 each, the main thread's included); the last to
# finish wakes the main thread, which waits on a futex (it spins on no CPU) and exits.  The threads share the
# stack they were cloned on, so nothing here touches it (no call, no push).
FOUR_THREADS_LOOP = f"""
.intel_syntax noprefix
.globl _start
.text
_start:
    mov r12d, 3
spawn:
{CLONE_THREAD}    test rax, rax
    jz worker
    dec r12d
    jnz spawn
    mov rcx, {{quarter}}
main_loop:
    add rax, rcx
    xor rbx, rax
    dec rcx
    jnz main_loop
wait:
    mov eax, [rip + done]
    cmp eax, 3
    je finished
    lea rdi, [rip + done]
    mov esi, 128
    mov edx, eax
    xor r10d, r10d
    mov eax, 202
    syscall
    jmp wait
finished:
    mov eax, 231
    xor edi, edi
    syscall
worker:
    mov rcx, {{quarter}}
worker_loop:
    add rax, rcx
    xor rbx, rax
    dec rcx
    jnz worker_loop
    lock inc dword ptr [rip + done]
    lea rdi, [rip + done]
    mov esi, 129
    mov edx, 1
    mov eax, 202
    syscall
    mov eax, 60
    xor edi, edi
    syscall
.data
done: .long 0
"""

# One thread write-protects a page, gives the right back and writes it (a fault puts the right back in the
# PTE), {n} times, while another, on the other CPU, reads it: each round trip is one shootdown.
SHOOTDOWN_ROUND_TRIPS = f"""
.intel_syntax noprefix
.globl _start
.text
_start:
    mov qword ptr [rip + area], 1
{CLONE_THREAD}    test rax, rax
    jz reader
    mov r12d, {{n}}
again:
    lea rdi, [rip + area]
    mov esi, 4096
    mov edx, 1
    mov eax, 10
    syscall
    lea rdi, [rip + area]
    mov esi, 4096
    mov edx, 3
    mov eax, 10
    syscall
    mov qword ptr [rip + area], 2
    dec r12d
    jnz again
    mov eax, 231
    xor edi, edi
    syscall
reader:
    mov rax, [rip + area]
    jmp reader
.bss
.align 4096
area: .zero 4096
"""


@contextlib.contextmanager
def _bench_kernel(source: str, ram: int = 256 << 20, deterministic: bool = True, **options):
    """A kernel that has already run `source` once, and a function that runs it again.

    The first run is never timed: it pays for the host touching the machine's
    RAM for the first time (the buffer is an anonymous mmap) and for paging the
    program in, neither of which a long-running machine pays again.
    """
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "bench")
        with open(path, "wb") as f:
            f.write(assemble(source, "bench.s"))
        kernel = boot(ram, deterministic=deterministic, root=scratch, stdout=io.BytesIO(), stderr=io.BytesIO(),
                      **options)

        def run_once() -> None:
            kernel.spawn(kernel.fs.open_host(path), ["bench"], [])
            kernel.run()

        run_once()
        yield kernel, run_once


def _time_program(source: str, deterministic: bool = True, repeats: int = 3, ram: int = 256 << 20,
                  **options) -> float:
    """Best wall time of running `source` from spawn to exit, on a warm machine booted with `options`."""
    with _bench_kernel(source, ram, deterministic, **options) as (kernel, run_once):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run_once()
            best = min(best, time.perf_counter() - start)
        return best


def _time_with_and_without_trace(source: str, path: str, ram: int, repeats: int = 9) -> tuple[float, float]:
    """Best wall times of a run untraced and traced to `path`, taken in turn so that both see the same load.

    The same run's time moves by 20-30% from one repeat to the next on this kind of machine, on a quiet
    machine and with the garbage collector off too, so the best of many is taken.
    """
    with _bench_kernel(source, ram) as (kernel, run_once):
        plain = traced = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run_once()
            plain = min(plain, time.perf_counter() - start)
            with open(path, "wb") as stream:
                start = time.perf_counter()
                kernel.recorder.sink = sink = trace.writer(stream, trace.header("bench", ["bench"], {}, ram))
                run_once()
                sink.flush()
                kernel.recorder.sink = None
            traced = min(traced, time.perf_counter() - start)
        return plain, traced


def _raw_unicorn_loop(n: int) -> float:
    """The same loop on a bare Unicorn engine: no paging, no hooks."""
    import keystone

    code, _ = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64).asm(
        f"mov rcx, {n}\nagain: add rax, rcx\nxor rbx, rax\ndec rcx\njnz again", yardstick.LOAD_ADDRESS)
    seconds, registers = yardstick.run_bare(bytes(code))
    assert registers["rcx"] == 0
    return seconds


def _timed_kernel_calls(source: str) -> dict[str, float]:
    """Seconds spent in Kernel.fork and in the kernel's fault handler during one run on a warm machine."""
    with _bench_kernel(source, ram=512 << 20) as (kernel, run_once):
        fork, handler = kernel.fork, kernel.machine.page_fault_handler
        spent = {"fork": 0.0, "faults": 0.0}

        def timed_fork(parent):
            start = time.perf_counter()
            child = fork(parent)
            spent["fork"] += time.perf_counter() - start
            return child

        def timed_fault(va: int, access: int, error: int) -> object | None:
            start = time.perf_counter()
            verdict = handler(va, access, error)
            spent["faults"] += time.perf_counter() - start
            return verdict

        kernel.fork, kernel.machine.page_fault_handler = timed_fork, timed_fault
        run_once()
        return spent


def _per_event(template: str, small: int, large: int, **extra: int) -> float:
    """Seconds per loop iteration: (t(large) - t(small)) / (large - small)."""
    t_small = _time_program(template.format(n=small, size=small * 4096, **extra))
    t_large = _time_program(template.format(n=large, size=large * 4096, **extra))
    return (t_large - t_small) / (large - small)


def _smp_figures() -> None:
    """Issue 14: compute on four CPUs against one, the cost of a CPU switch and of a shootdown."""
    print("issue 14 (goals in brackets)")
    n = 20_000_000
    source = FOUR_THREADS_LOOP.replace("{quarter}", str(n // 4))
    one = _time_program(source, cpus=1)
    four = _time_program(source, cpus=4)
    print(f"  compute, 4 threads on 4 CPUs       {4 * n / four / 1e6:8.0f} M instructions/s  "
          f"({one / four:.2f}x the same work on 1 CPU: {4 * n / one / 1e6:.0f})  [>= 0.8x]")
    # Each CPU's turn is `interleave` instructions: the difference between two interleaves, per turn.
    fine, coarse = 2_000, 100_000
    t_fine = _time_program(source, cpus=4, interleave=fine)
    t_coarse = _time_program(source, cpus=4, interleave=coarse)
    turns = 4 * n * (1 / fine - 1 / coarse)
    print(f"  a CPU switch (one CPU's turn)      {(t_fine - t_coarse) / turns * 1e6:8.2f} us  "
          f"(interleave {fine:,} against {coarse:,} instructions)")
    trips = 20_000
    with _bench_kernel(SHOOTDOWN_ROUND_TRIPS.replace("{n}", str(trips)), cpus=2) as (kernel, run_once):
        before = kernel.recorder.count("tlb", "ipi-invlpg")
        spent = _time_calls(kernel.shootdown, "_send", kernel, "_take_ipis", run=run_once)
        ipis = (kernel.recorder.count("tlb", "ipi-invlpg") - before) // 3     # in each of the three runs
    print(f"  a shootdown (one IPI, taken)       {spent / ipis * 1e6:8.2f} us  "
          f"(sending it and taking it, of {ipis:,}; the target's TLB refills come on top; host Linux: "
          "vmgames calibrate)")


def _time_calls(*targets_and_names: object, run) -> float:
    """Seconds spent inside the named methods (object, name, object, name, ...) during run(), best of 3."""
    best = float("inf")
    pairs = list(zip(targets_and_names[::2], targets_and_names[1::2], strict=True))
    originals = [getattr(target, name) for target, name in pairs]
    for _ in range(3):
        spent = [0.0]
        for (target, name), original in zip(pairs, originals, strict=True):
            def timed(*args, _original=original, _spent=spent):
                start = time.perf_counter()
                try:
                    return _original(*args)
                finally:
                    _spent[0] += time.perf_counter() - start
            setattr(target, name, timed)
        try:
            run()
        finally:
            for (target, name), original in zip(pairs, originals, strict=True):
                setattr(target, name, original)
        best = min(best, spent[0])
    return best


def main() -> None:
    instructions = 4 * LOOP_ITERATIONS
    raw = instructions / _raw_unicorn_loop(LOOP_ITERATIONS) / 1e6
    deterministic = instructions / _time_program(LOOP.format(n=LOOP_ITERATIONS)) / 1e6
    fast = instructions / _time_program(LOOP.format(n=LOOP_ITERATIONS), deterministic=False, repeats=5) / 1e6
    print("vmgames benchmarks (best of 3; goals from issue 2 in brackets)")
    print(f"  compute loop, raw Unicorn          {raw:8.0f} M instructions/s")
    print(f"  compute loop, fast mode            {fast:8.0f} M instructions/s  ({fast / raw:.2f}x raw)  [>= 0.8x]")
    print(f"  compute loop, deterministic mode   {deterministic:8.0f} M instructions/s  [>= 50]")
    fault = _per_event(TOUCH, 1024, 16384)
    touch_16k = _timed_kernel_calls(TOUCH.format(n=16384, size=16384 * 4096))
    handler = touch_16k["faults"] / 16384
    print(f"  zero-fill fault, end to end        {fault * 1e6:8.2f} us  ({1 / fault:,.0f} per second)  [< 5 us]")
    print(f"    of which the kernel's handler    {handler * 1e6:8.2f} us"
          "  (the rest: TLB-fill hook, two walks, unmap at exit)")
    syscall = _per_event(GETPID, 10_000, 100_000)
    print(f"  getpid round trip                  {syscall * 1e6:8.2f} us  ({1 / syscall:,.0f} per second)  [< 3 us]")
    print("issue 3 (goals in brackets; host Linux: fork of 16 MiB 0.57 ms, COW fault 4.1 us)")
    resident = 16384
    fork_program = _timed_kernel_calls(FORK_THEN_CHILD_WRITES.format(n=resident, size=resident * 4096))
    fork_seconds = fork_program["fork"]
    print(f"  fork with 64 MiB resident          {fork_seconds * 1e3:8.2f} ms  "
          f"({fork_seconds / resident * 1e9:.0f} ns per resident page)  [< 10 ms]")
    cow = _per_event(FORK_THEN_CHILD_WRITES, 1024, 8192)
    # The fork program's faults are the touch program's plus one COW copy per page.
    cow_handler = (fork_program["faults"] - touch_16k["faults"]) / resident
    print(f"  COW fault with copy, end to end    {cow * 1e6:8.2f} us per page (touch + fork + copy + exits)")
    print(f"    of which the kernel's handler    {cow_handler * 1e6:8.2f} us  [COW fault < 6 us]")
    round_trip = _per_event(FORK_EXIT_WAIT, 100, 1000)
    print(f"  fork + exit + wait round trip      {round_trip * 1e6:8.2f} us  ({1 / round_trip:,.0f} per second)")
    tracing = _trace_figures()
    _smp_figures()
    _speed_and_scale_figures(raw, fast, {"zero-fill": fault, "cow": cow, "fork": fork_seconds / resident,
                                   "getpid": syscall}, tracing)


def _trace_figures() -> float:
    """Issue 5: what tracing every event costs, and reading a million-event trace back; the first, as a fraction."""
    print("issue 5 (goals in brackets)")
    pages = 32768
    source = FORK_THEN_CHILD_WRITES.format(n=pages, size=pages * 4096)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "bench.jsonl")
        plain, traced = _time_with_and_without_trace(source, path, ram=512 << 20)
        print(f"  tracing every event (fork + COW)   {100 * (traced / plain - 1):7.0f} % slower  "
              f"({_events_in(path):,} events, {os.path.getsize(path) / 1e6:.0f} MB)  [<= 25%]")
        _report_figures(scratch)
    return traced / plain - 1


def _events_in(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


def _report_figures(scratch: str) -> None:
    """`vmgames report` on a trace of over a million events, in a process of its own to measure its peak memory."""
    pages = 170_000   # six events a page: fault, alloc, zero, PTE write, and at exit PTE write, free
    program, path = os.path.join(scratch, "touch"), os.path.join(scratch, "million.jsonl")
    with open(program, "wb") as f:
        f.write(assemble(TOUCH.format(n=pages, size=pages * 4096), "touch.s"))
    kernel = boot(1 << 30, root=scratch, stdout=io.BytesIO(), stderr=io.BytesIO())
    with open(path, "wb") as stream:
        kernel.recorder.sink = sink = trace.writer(stream, trace.header(program, [program], {}, 1 << 30))
        kernel.spawn(kernel.fs.open_host(program), [program], [])
        kernel.run()
        sink.flush()
    events = _events_in(path)
    # The child's own high-water mark (VmHWM): ru_maxrss would count the pages it shared with this
    # process between fork and exec.
    child = ("import sys; from vmgames.tools.cli import main; main(sys.argv[1:]); "
             "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0], "
             "file=sys.stderr)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child, "report", path], check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak = int(done.stderr.split()[-1]) * 1024
    print(f"  vmgames report, {events:,} events  {seconds:8.2f} s  ({events / seconds:,.0f} events/s, "
          f"peak {peak / 1e6:.0f} MB resident, {os.path.getsize(path) / 1e6:.0f} MB of trace)  [bounded memory]")


HOST_EVENTS_SOURCE = os.path.join(os.path.dirname(__file__), "calibrate", "host_events.c")
HOST_PAGES = 16384
MACHINES = 4          # the deterministic loop's speed depends on where each engine's code lands: several boots


def _host_events() -> dict[str, float]:
    """The host kernel's figures in nanoseconds (tools/calibrate/host_events.c, compiled now with gcc)."""
    with tempfile.TemporaryDirectory() as scratch:
        binary = os.path.join(scratch, "host_events")
        subprocess.run(["gcc", "-O2", "-o", binary, HOST_EVENTS_SOURCE], check=True)
        done = subprocess.run([binary, str(HOST_PAGES), "5"], check=True, capture_output=True, text=True)
    return {name: float(value) for name, value in (line.split() for line in done.stdout.splitlines())}


def _exit_per_page() -> float:
    """Seconds the kernel's exit takes per resident page: exits of 16,384 and of 1,024 touched pages."""
    spent = {}
    for pages in (1024, HOST_PAGES):
        with _bench_kernel(TOUCH.format(n=pages, size=pages * 4096)) as (kernel, run_once):
            spent[pages] = _time_calls(kernel, "_exit_in_own_context", run=run_once)
    return (spent[HOST_PAGES] - spent[1024]) / (HOST_PAGES - 1024)


def _chains_seconds(jobs: int) -> float:
    """Wall time of `vmgames experiment chains` (its 20 cells) with `jobs` workers (its output is not the point)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vmgames.tools.cli", "experiment", "chains", "--jobs", str(jobs)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _speed_and_scale_figures(raw: float, fast: float, ours: dict[str, float], tracing: float) -> None:
    """Issue 16: the deterministic loop against raw Unicorn, kernel events against the host's, sweeps on 2 cores."""
    host = _host_events()
    print(f"issue 16 (goals in brackets; the host: this machine's Linux, measured now by "
          f"{os.path.relpath(HOST_EVENTS_SOURCE)})")
    source = LOOP.format(n=LOOP_ITERATIONS // 5)
    rates = sorted(4 * LOOP_ITERATIONS // 5 / _time_program(source, repeats=2) / 1e6 for _ in range(MACHINES))
    print(f"  compute loop, deterministic mode   {rates[-1]:8.0f} M instructions/s  ({rates[-1] / raw:.2f}x the bare "
          f"engine, {rates[-1] / fast:.2f}x fast mode's Unicorn; {rates[0]:.0f}-{rates[-1]:.0f} over {MACHINES} "
          "machines)  [>= 0.5x raw]")
    exit_page = _exit_per_page()
    # The touch loop's time per page is a fault and its page's share of the exit; the fork-then-write loop's
    # adds the fork's share and the child's COW fault.
    figures = [("zero-fill fault", ours["zero-fill"] - exit_page, host["zero_fill_fault_ns"]),
               ("COW fault", ours["cow"] - ours["zero-fill"] - ours["fork"], host["cow_fault_ns"]),
               ("fork, per resident page", ours["fork"], host["fork_per_page_ns"]),
               ("exit, per resident page", exit_page, host["exit_per_page_ns"]),
               ("getpid round trip", ours["getpid"], host["getpid_ns"])]
    for name, seconds, host_ns in figures:
        print(f"  {name:<33}{seconds * 1e6:8.2f} us  host {host_ns / 1000:6.2f} us  "
              f"({seconds * 1e9 / host_ns:5.1f}x the host)  [<= 3x]")
    print(f"  tracing every event (fork + COW)   {100 * tracing:7.0f} % slower  (the issue 5 figure)  [<= 15%]")
    one, two = _chains_seconds(1), _chains_seconds(2)
    print(f"  experiment chains                  {two:8.1f} s with --jobs 2, {one:.1f} s with --jobs 1  "
          f"({one / two:.2f}x; {os.cpu_count()} cores)  [>= 1.8x]")


if __name__ == "__main__":
    main()
