"""Shared fixtures: assemble a program, run it on a fresh machine, look at what happened."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import Process
from vmgames.kernel.vmmeter import record
from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot

from tests import invariants

PRELUDE = ".intel_syntax noprefix\n.globl _start\n"


@dataclass
class Run:
    kernel: Kernel
    proc: Process
    stdout: bytes
    stderr: bytes

    @property
    def status(self) -> int:
        return self.proc.shell_status

    @property
    def recorder(self):
        return self.kernel.recorder

    def faults(self) -> dict[str, int]:
        return self.recorder.by_kind("fault")


def frames_owned_by_file_cache(kernel: Kernel) -> int:
    return sum(len(f.object.pages) for f in kernel.fs._files.values() if f.object is not None)


def assert_no_leak(kernel: Kernel) -> None:
    """Once every process has exited, only the file cache may hold frames, and it holds the files' bytes."""
    invariants.check_files(kernel)
    in_use = kernel.allocator.total - kernel.allocator.free_count
    assert in_use == frames_owned_by_file_cache(kernel)
    assert kernel.recorder.frames_in_use == in_use
    swap = kernel.vm.swap_pager
    assert swap is None or swap.used == 0, f"{swap.used} swap blocks still in use after every process exited"


def check_before_every_syscall(kernel: Kernel) -> None:
    """Hold the kernel to its invariants at every kernel entry the program makes."""
    handler = kernel.machine.syscall_handler

    def checked() -> None:
        invariants.check(kernel)
        handler()

    kernel.machine.syscall_handler = checked


@pytest.fixture
def build(tmp_path):
    """build(source, name) -> path of an executable assembled from `source`."""
    def _build(source: str, name: str = "prog") -> str:
        path = tmp_path / name
        path.write_bytes(assemble(PRELUDE + source, f"{name}.s"))
        path.chmod(0o755)
        return str(path)
    return _build


@pytest.fixture
def run(build, tmp_path):
    """run(source, *args, ram=..., stdin=b"", events=[], root=..., cpus=1, seed=0, swap=0, page_used=...) -> Run,
    after every process has finished.

    `source` is assembly, or the path of a program to run.  With `events`, every recorder event is appended to
    that list, as a trace would have it.  The guest's root is a scratch directory unless `root` says otherwise.
    """
    def _run(source: str, *args: str, ram: int = 16 << 20, stdin: bytes = b"", deterministic: bool = True,
             events: list | None = None, root: str | None = None, cpus: int = 1, seed: int = 0, swap: int = 0,
             page_used: str = "accessed-bit") -> Run:
        path = build(source) if "\n" in source else source
        out, err = io.BytesIO(), io.BytesIO()
        kernel = boot(ram, deterministic=deterministic, root=root or str(tmp_path), cpus=cpus, seed=seed,
                      stdin=io.BytesIO(stdin), stdout=out, stderr=err, swap=swap, page_used=page_used)
        if events is not None:
            kernel.recorder.sink = lambda *event: events.append(record(*event))
        proc = kernel.spawn(kernel.fs.open_host(path), [path, *args], [])
        check_before_every_syscall(kernel)
        kernel.run()
        assert_no_leak(kernel)
        return Run(kernel, proc, out.getvalue(), err.getvalue())
    return _run
