"""Digests of the traces of the bundled programs and of both experiments' runs.

A restructuring of the kernel must not change what it does: every event,
in order, with every field.  This runs each bundled program (and cells of
the zero-copy experiment and cascades of the chains experiment, collapse on
and off) on a fresh machine with every event traced, and digests each
trace's events (not its header, which names the host's paths; the programs
are named by their path in the guest, whose root is the repository).  The
C workloads are built by the host's gcc, so a different gcc may build other
bytes and need the digests recorded anew.
tests/test_trace_digests.py holds the digests to tests/trace_digests.json;
after a change that is meant to change traces, `make trace-digests` writes
the file anew, and the diff of that file says which runs changed.

    python -m tests.trace_digests          # print what differs from the file
    python -m tests.trace_digests --write  # rewrite the file
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys

from vmgames.tools import trace
from vmgames.tools.boot import boot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGESTS = os.path.join(ROOT, "tests", "trace_digests.json")

# name -> (program in build/, its arguments, collapse on, CPUs)
RUNS: dict[str, tuple[str, list[str], bool, int]] = {
    "hello": ("hello", [], True, 1),
    "touch 64": ("touch", ["64"], True, 1),
    "cowfork": ("cowfork", [], True, 1),
    "cowfork on 2 cpus": ("cowfork", [], True, 2),
    "segv": ("segv", [], True, 1),
    "vmsplice_alias": ("vmsplice_alias", [], True, 1),
    "threads on 4 cpus": ("threads", [], True, 4),
    **{f"chains seed {seed} collapse {'on' if on else 'off'}": ("cascade", [str(seed), "20", "16", "4"], on, 1)
       for seed in (1, 2) for on in (True, False)},
    **{f"zerocopy {workload} {mode}": (f"zc_{workload}", [mode, "16k", "64k"], True, 1)
       for workload in ("static", "pool", "fresh", "fork") for mode in ("write", "cow", "vmsplice")},
}


def digest(program: str, arguments: list[str], collapse: bool, cpus: int) -> str:
    """sha256 of the events of one traced run (everything after the header line)."""
    stream = io.BytesIO()
    kernel = boot(64 << 20, root=ROOT, stdout=io.BytesIO(), stderr=io.BytesIO(), collapse=collapse, cpus=cpus)
    sink = trace.writer(stream, {}, None)
    kernel.recorder.sink = sink
    # By its path in the guest (the repository is the root), so that no event names the checkout's directory.
    kernel.spawn(kernel.fs.lookup(f"/build/{program}"), [program, *arguments], [])
    kernel.run()
    sink.flush()
    events = stream.getvalue().split(b"\n", 1)[1]
    return hashlib.sha256(events).hexdigest()


def current() -> dict[str, str]:
    return {name: digest(*run) for name, run in RUNS.items()}


def main(argv: list[str]) -> int:
    digests = current()
    if "--write" in argv:
        with open(DIGESTS, "w", encoding="utf-8") as f:
            json.dump(digests, f, indent=2)
            f.write("\n")
        print(f"wrote {len(digests)} digests to {DIGESTS}")
        return 0
    with open(DIGESTS, encoding="utf-8") as f:
        expected = json.load(f)
    changed = sorted(name for name in digests.keys() | expected.keys() if digests.get(name) != expected.get(name))
    for name in changed:
        print(f"changed: {name}")
    print(f"{len(digests) - len(changed)} of {len(digests)} traces unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
