"""The chain-depth experiment and its dead-page measure."""

import io
import os
from collections import Counter

from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot
from vmgames.tools.experiments import chains

from tests.programs import FORK_AND_WRITE


def _dead_pages_when_the_child_exits(build, tmp_path, collapse: bool) -> list[int]:
    program = build(FORK_AND_WRITE)
    kernel = boot(16 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO(), collapse=collapse)
    seen = []

    def observe(t, cpu, pid, type_, kind, fields):
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
    from vmgames.tools.cli import main

    out = tmp_path / "chains.csv"
    assert main(["experiment", "chains", "--seeds", "1", "--steps", "10", "--pages", "4", "--csv", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seed,collapse") and len(lines) == 3
    assert main(["experiment", "chains", "--pages", "65"]) == 2
    assert os.path.exists(out)


def _run(collapse: bool, depths: dict[int, int], dead: int = 0) -> chains.ChainRun:
    return chains.ChainRun(seed=1, collapse=collapse, faults=sum(depths.values()), depths=Counter(depths),
                           dead_pages_peak=dead)


def test_the_conclusion_says_whether_chains_stayed_within_4_from_the_figures():
    within = [_run(True, {1: 50, 3: 40, 4: 10}, dead=0), _run(False, {2: 30, 6: 60, 9: 10}, dead=12)]
    assert chains.conclusion(within) == [
        "Conclusion:",
        '  with collapse and bypass on, chains stayed within 4, as the paper says ("not much deeper than 4"): '
        "deepest 4, mean 2.10, p95 4, 0.0% of 100 faults deeper than 4",
        "  with them off: deepest 9, mean 5.10, p95 9, 70.0% of 100 faults deeper than 4",
        "  collapse changed the mean depth by -59% and the peak of dead pages from 12.0 to 0.0 (mean over runs)"]
    deeper = [_run(True, {2: 90, 7: 10}, dead=1), _run(True, {5: 100}, dead=3), _run(False, {8: 100}, dead=4)]
    assert chains.conclusion(deeper)[1:] == [
        "  with collapse and bypass on, chains went deeper than 4, where the paper says they \"tend to not get much "
        "deeper than 4\": deepest 7, mean 3.75, p95 5, 55.0% of 200 faults deeper than 4",
        "  with them off: deepest 8, mean 8.00, p95 8, 100.0% of 100 faults deeper than 4",
        "  collapse changed the mean depth by -53% and the peak of dead pages from 4.0 to 2.0 (mean over runs)"]


def test_the_cli_ends_with_the_conclusion_of_its_own_table(capsys):
    from vmgames.tools.cli import main

    assert main(["experiment", "chains", "--seeds", "1", "--steps", "10", "--pages", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    table = {line.rsplit(None, 2)[0].strip(): line.rsplit(None, 2)[1:] for line in out if line.startswith("max depth")
             or line.startswith("mean depth")}
    deepest_on = int(table["max depth"][0])
    conclusion = out[out.index("Conclusion:") + 1]
    assert ("stayed within 4" in conclusion) == (deepest_on <= 4)
    assert f"deepest {deepest_on}, mean {float(table['mean depth'][0]):.2f}," in conclusion
