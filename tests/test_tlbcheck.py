"""--check-tlb, the TLB sanitizer: quiet on a correct kernel, and it names each invalidation the kernel forgets.

The forgetting is injected (--skip-invalidation, kernel/vm/shootdown.py): on one CPU fork's write-protect,
munmap, mprotect, madvise; on two, with a thread of the process on the other CPU holding the page in its
TLB, those and a copy-on-write copy, a copy-on-write send, and every shootdown IPI alone.
"""

import os
import re
import shutil
import subprocess

import pytest
from vmgames.tools.cli import main

from tests.programs import CLONE_THREAD, EXIT_0, FORK, mmap

ROOT = os.path.join(os.path.dirname(__file__), "..")
COWFORK = os.path.join(ROOT, "build", "cowfork")
MEMORY = os.path.join(ROOT, "userland", "libc", "memory.c")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"    # .ci/run installs busybox-static


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    """userland/libc/memory.c (madvise, mremap, munmap, fork), static glibc."""
    path = str(tmp_path_factory.mktemp("tlb") / "memory")
    subprocess.run(["gcc", "-static", "-O1", "-o", path, MEMORY], check=True)
    return path


def test_a_correct_kernel_passes_the_check(memory, capfd):
    assert main(["run", "--check-tlb", COWFORK]) == 0
    assert main(["run", "--check-tlb", "--root", "/", memory]) == 0
    assert "--check-tlb" not in capfd.readouterr().err
    # Forks, a vfork, execs (whose old image goes before the CR3 load of the new one) and a pipeline.
    assert main(["run", "--check-tlb", "--root", "/", BUSYBOX, "sh", "-c", "echo $(ls /dev) | wc -w"]) == 0
    said = capfd.readouterr()
    assert (said.out, said.err) == ("2\n", "")


# A copy-on-write copy's own invalidation cannot be missed on one CPU: the write that faulted refills the
# entry it replaces.  Only another CPU could keep the old one (the shootdown issue 14 adds).
@pytest.mark.parametrize(("reason", "program"), [
    ("fork", "cowfork"), ("munmap", "memory"), ("madvise", "memory"), ("mprotect", "memory")])
def test_each_forgotten_invalidation_is_named(reason, program, memory, capfd):
    path = COWFORK if program == "cowfork" else memory
    assert main(["run", "--check-tlb", "--skip-invalidation", reason, "--root", "/", path]) == 3
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vmgames: --check-tlb: ")]
    assert lines, err
    named = re.compile(rf"the PTE write at t = [\d,]+ by process \d+ \(reason {reason}: ")
    assert all(named.search(line) for line in lines), err
    assert all(line.endswith(") had no invalidation") for line in lines)


PROT_READ, MADV_DONTNEED, VMG_ZEROCOPY = 1, 4, 0x7A01

# The child of a fork sleeps a while (so that the parent's page stays shared: its write copies) and exits.
FORK_A_SLEEPER = f"""
{FORK}
    test rax, rax
    jnz forked
    lea rdi, [rip + a_while]
    xor esi, esi
    mov eax, 35
    syscall
{EXIT_0}
forked:
"""


def under_a_thread(action: str, thread_access: str = "mov qword ptr [rbx], 9", prelude: str = "") -> str:
    """A program whose second thread (on the other CPU) touches the page at rbx and spins on a flag while the
    main thread does `action` to the page; then both exit, status 0."""
    return f"""
.text
_start:
{mmap(8192, 3)}
    mov rbx, rax
    mov qword ptr [rbx], 7
{prelude}
{CLONE_THREAD}    test rax, rax
    jz thread
wait_ready:
    cmp qword ptr [rbx + 4096], 1
    jne wait_ready
{action}
    mov qword ptr [rbx + 4096], 2
wait_done:
    cmp qword ptr [rbx + 4096], 3
    jne wait_done
    mov eax, 231
    xor edi, edi
    syscall
thread:
    {thread_access}
    mov qword ptr [rbx + 4096], 1
wait_told:
    cmp qword ptr [rbx + 4096], 2
    jne wait_told
    mov qword ptr [rbx + 4096], 3
{EXIT_0}
.section .rodata
a_while: .quad 0, 5000000
wire: .asciz "/dev/wire"
"""


def _call(number: int, *registers: str) -> str:
    names = ("rdi", "rsi", "rdx", "r10")
    return "\n".join([*(f"    mov {name}, {value}" for name, value in zip(names, registers, strict=False)),
                      f"    mov eax, {number}", "    syscall"])


OPEN_A_COW_WIRE = _call(2, "0", "1", "0").replace("mov rdi, 0", "lea rdi, [rip + wire]") + f"""
    mov r12, rax
{_call(16, "r12", str(VMG_ZEROCOPY), "1")}"""

SMP_CASES = {
    "mprotect": under_a_thread(_call(10, "rbx", "4096", str(PROT_READ))),
    "munmap": under_a_thread(_call(11, "rbx", "4096")),
    "madvise": under_a_thread(_call(28, "rbx", "4096", str(MADV_DONTNEED))),
    "fork": under_a_thread(FORK_A_SLEEPER),
    # The page is shared with a child already; the thread's CPU holds its old frame when the copy replaces it.
    "cow": under_a_thread("    mov qword ptr [rbx], 8", thread_access="mov rax, [rbx]", prelude=FORK_A_SLEEPER),
    "cow-send": under_a_thread(_call(1, "r12", "rbx", "4096"), prelude=OPEN_A_COW_WIRE),
}


@pytest.mark.parametrize("reason", sorted(SMP_CASES))
def test_on_two_cpus_a_correct_kernel_passes_and_each_forgotten_invalidation_is_named(reason, build, capfd):
    program = build(SMP_CASES[reason])
    assert main(["run", "--cpus", "2", "--check-tlb", program]) == 0
    assert capfd.readouterr().err == ""
    assert main(["run", "--cpus", "2", "--check-tlb", "--skip-invalidation", reason, program]) == 3
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vmgames: --check-tlb: ")]
    assert lines, err
    assert all(f"(reason {reason}: " in line for line in lines), err


@pytest.mark.parametrize("reason", ["mprotect", "fork", "cow", "cow-send", "munmap"])
def test_a_forgotten_shootdown_ipi_alone_is_named_with_the_cpu_that_missed_it(reason, build, capfd):
    program = build(SMP_CASES[reason])
    assert main(["run", "--cpus", "2", "--check-tlb", "--skip-invalidation", "remote-shootdown", program]) == 3
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("vmgames: --check-tlb: ")]
    assert any(f"(reason {reason}: " in line for line in lines), lines
    for line in lines:    # after fork, a write to the other page shared with the child copies it: reason cow
        stale_on = re.search(r"CPU (\d)'s TLB may still translate", line).group(1)
        written_on = re.search(r"on CPU (\d) by process \d+ \(reason ", line).group(1)
        assert written_on != stale_on and line.endswith(f"had no shootdown IPI to CPU {stale_on}")


def test_an_unknown_reason_is_refused_with_the_list(capfd):
    assert main(["run", "--skip-invalidation", "forks", COWFORK]) == 2
    assert capfd.readouterr().err == (
        "vmgames: --skip-invalidation: no invalidation is made for 'forks'; the reasons are fault, cow, cow-send, "
        "fork, mprotect, munmap, madvise, collapse, page-remove, terminate, aging, pageout, remote-shootdown\n")
