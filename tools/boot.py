"""boot(): a machine and a kernel on it, from the options `vmgames run` takes.

The one place that puts the board and the kernel together, so that the
command line, the benchmarks, the experiments and the tests all start the
same machine the same way.  Options are named as the command line names
them (`--ram`, `--cpus`, `--seed`, `--root`, `--quantum`, `--interleave`, `--max-procs`,
`--wire-rate`, `--wire-buffer`, `--uid`, `--gid`, `--swap`, `--page-used`, `--rmap`).
"""

from __future__ import annotations

from typing import BinaryIO

from vmgames.emulator.determinism import DEFAULT_SEED
from vmgames.emulator.machine import DEFAULT_RAM_SIZE, Machine
from vmgames.kernel.kernel import DEFAULT_MAX_PROCESSES, Kernel
from vmgames.kernel.sched import DEFAULT_INTERLEAVE, DEFAULT_QUANTUM
from vmgames.kernel.vm.pageout import ACCESSED_BIT, PAGE_USED, PV, RMAPS
from vmgames.kernel.vm.prefault import MODES as PREFAULT_MODES
from vmgames.kernel.vm.swap_pager import SwapPager
from vmgames.kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE


def boot(ram: int = DEFAULT_RAM_SIZE, *, deterministic: bool = True, seed: int = DEFAULT_SEED, root: str = ".",
         stdin: BinaryIO | None = None, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
         quantum: int = DEFAULT_QUANTUM, cpus: int = 1, interleave: int = DEFAULT_INTERLEAVE,
         max_procs: int = DEFAULT_MAX_PROCESSES, wire_rate: int = DEFAULT_WIRE_RATE,
         wire_buffer: int = DEFAULT_WIRE_CAPACITY, collapse: bool = True, uid: int = 0, gid: int = 0,
         prezero: int = 0, prefault: str | None = None, swap: int = 0, page_used: str = ACCESSED_BIT,
         rmap: str = PV) -> Kernel:
    """A kernel on a fresh machine with `ram` bytes, no process yet (kernel.spawn starts the first).

    deterministic=False is --fast (no instruction clock); collapse=False turns
    off shadow-chain collapse and bypass, to measure what they save; `prezero`
    is the pool of pages an idle machine keeps zeroed (0: none); `prefault`
    makes exec map a file's resident pages at once; `swap` is the bytes of
    swap (0: none; a whole number of pages is used); `page_used` is how the
    pageout daemon learns a page was used, "accessed-bit", "unmap" (the
    paper's emulation for hardware without one) or "fifo" (it does not);
    `rmap` how it finds a page's mappings, "pv" or "scan".  The
    standard streams default to the host's own; every process runs as
    `uid` and `gid` (root by default).
    """
    machine = Machine(ram, deterministic=deterministic, seed=seed, cpus=cpus)
    kernel = Kernel(machine, root=root, stdin=stdin, stdout=stdout, stderr=stderr, quantum=quantum,
                    interleave=interleave, max_processes=max_procs, wire_rate=wire_rate, wire_capacity=wire_buffer,
                    uid=uid, gid=gid)
    kernel.vm.collapse_enabled = collapse
    kernel.allocator.prezero_cap = prezero
    if prefault not in (None, *PREFAULT_MODES):
        raise ValueError(f"prefault is None or one of {', '.join(PREFAULT_MODES)}, not {prefault!r}")
    kernel.prefault = prefault
    if page_used not in PAGE_USED or rmap not in RMAPS:
        raise ValueError(f"page_used is one of {', '.join(PAGE_USED)} and rmap one of {', '.join(RMAPS)}, not "
                         f"{page_used!r} and {rmap!r}")
    kernel.pageout.page_used = page_used
    kernel.pageout.rmap = rmap
    if swap >= 4096:
        kernel.vm.swap_pager = SwapPager(swap, machine, kernel.recorder)
    return kernel
