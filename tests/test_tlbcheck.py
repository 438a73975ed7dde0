"""--check-tlb, the TLB sanitizer: quiet on a correct kernel, and it names each invalidation the kernel forgets.

The forgetting is injected (kernel/vm/shootdown.py: SKIPPED_INVALIDATIONS, for these tests only): fork's
write-protect, munmap, mprotect, madvise.
"""

import os
import re
import shutil
import subprocess

import pytest

from kernel.vm import shootdown
from tools.cli import main

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
def test_each_forgotten_invalidation_is_named(reason, program, memory, monkeypatch, capfd):
    monkeypatch.setattr(shootdown, "SKIPPED_INVALIDATIONS", {reason})
    path = COWFORK if program == "cowfork" else memory
    assert main(["run", "--check-tlb", "--root", "/", path]) == 3
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vmgames: --check-tlb: ")]
    assert lines, err
    named = re.compile(rf"the PTE write at t = [\d,]+ by process \d+ \(reason {reason}: ")
    assert all(named.search(line) for line in lines), err
    assert all(line.endswith(") had no invalidation") for line in lines)
