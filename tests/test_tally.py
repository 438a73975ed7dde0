"""Counting without building events (Recorder.tally): an exit counts its PTEs and pages at once when nothing is
traced, and every counter is the one a traced run gives."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from vmgames.kernel.vmmeter import Recorder
from vmgames.tools.boot import boot

ROOT = Path(__file__).resolve().parent.parent


def counters(program: str, args: list[str], traced: bool, **options) -> tuple:
    kernel = boot(options.pop("ram", 16 << 20), root=str(ROOT), stdout=io.BytesIO(), stderr=io.BytesIO(), **options)
    if traced:
        kernel.recorder.sink = lambda *event: None
    kernel.spawn(kernel.fs.open_host(program), [program, *args], [])
    kernel.run()
    recorder = kernel.recorder
    return (dict(recorder.counts), dict(recorder.reasons), recorder.frames_in_use, recorder.frames_peak,
            kernel.machine.retired, kernel.allocator.free_count)


@pytest.mark.parametrize("program, args, options", [
    ("build/touch", ["2000"], {}),
    ("build/cowfork", [], {"cpus": 2}),
    ("build/pressure", ["1500", "20", "3"], {"ram": 4 << 20, "swap": 16 << 20}),
    ("build/zc_fork", ["vmsplice", "16k", "64k"], {}),
])
def test_untraced_runs_count_what_traced_runs_count(program, args, options):
    untraced = counters(str(ROOT / program), args, traced=False, **dict(options))
    traced = counters(str(ROOT / program), args, traced=True, **dict(options))
    assert untraced == traced
    assert untraced[0]  # something was counted


def test_tally_adds_what_events_would_and_refuses_a_traced_run():
    tallied, evented = Recorder(), Recorder()
    tallied.tally("page", "alloc", 3)
    tallied.tally("page", "free", 2)
    tallied.tally("pte", "write", 4, "exit")
    for _ in range(3):
        evented.event("page", "alloc", frame=1)
    for _ in range(2):
        evented.event("page", "free", frame=1)
    for _ in range(4):
        evented.event("pte", "write", address=0, old=1, new=0, reason="exit")
    assert (tallied.counts, tallied.reasons, tallied.frames_in_use, tallied.frames_peak) == \
        (evented.counts, evented.reasons, evented.frames_in_use, evented.frames_peak)
    tallied.sink = lambda *event: None
    with pytest.raises(RuntimeError, match="a trace needs every event"):
        tallied.tally("page", "free", 1)
