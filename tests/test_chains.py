"""The chain-depth experiment and its dead-page measure."""

import io
import os

from emulator.machine import Machine
from kernel.kernel import Kernel
from tests.test_fork import FORK_AND_WRITE
from tools.assembler import assemble
from tools.experiments import chains


def _dead_pages_when_the_child_exits(build, tmp_path, collapse: bool) -> list[int]:
    program = build(FORK_AND_WRITE)
    kernel = Kernel(Machine(16 << 20), root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO())
    kernel.allocator.collapse_enabled = collapse
    seen = []

    def observe(t, pid, type_, kind, fields):
        if (type_, kind) == ("proc", "exit"):
            seen.append(chains.dead_pages(kernel))

    kernel.recorder.sink = observe
    kernel.spawn(kernel.fs.open_host(program), ["prog"], [])
    kernel.run()
    return seen


def test_a_page_shadowed_by_the_only_survivor_is_dead_unless_collapsed(build, tmp_path):
    # Parent and child both wrote the bss page after fork; when the child exits, the original
    # page in the bss object is hidden by the parent's shadow: dead, until collapse frees it.
    assert _dead_pages_when_the_child_exits(build, tmp_path, collapse=False)[0] == 1
    assert _dead_pages_when_the_child_exits(build, tmp_path, collapse=True)[0] == 0


def _cascade(tmp_path):
    with open(chains.CASCADE_SOURCE, encoding="utf-8") as f:
        path = tmp_path / "cascade"
        path.write_bytes(assemble(f.read(), "cascade.s"))
    return str(path)


def test_cascades_are_reproducible_and_collapse_keeps_chains_short(tmp_path):
    program = _cascade(tmp_path)
    on = chains.run_cascade(program, 3, True, steps=30, pages=16, max_depth=4)
    again = chains.run_cascade(program, 3, True, steps=30, pages=16, max_depth=4)
    off = chains.run_cascade(program, 3, False, steps=30, pages=16, max_depth=4)
    assert on == again
    # The same tree of processes and the same writes, so the same faults...
    assert on.processes == off.processes > 1
    assert on.faults == off.faults
    # ...walking shorter chains and leaving fewer dead pages when objects collapse.
    assert on.collapses > 0 and off.collapses == off.bypasses == 0
    assert on.mean_depth < off.mean_depth
    assert on.max_depth <= off.max_depth
    assert on.dead_pages_peak < off.dead_pages_peak


def test_the_cli_prints_the_table(tmp_path):
    from tools.cli import main

    out = tmp_path / "chains.csv"
    assert main(["experiment", "chains", "--seeds", "1", "--steps", "10", "--pages", "4", "--csv", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seed,collapse") and len(lines) == 3
    assert main(["experiment", "chains", "--pages", "65"]) == 2
    assert os.path.exists(out)
