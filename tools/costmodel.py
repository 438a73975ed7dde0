"""The cost model of the zero-copy experiment: event counts -> estimated CPU cycles.

vmgames counts what a kernel does (faults, copies, PTE writes, TLB
invalidations, syscalls, instructions); what each costs on real hardware is
not something an emulator can measure, so it is an assumption, stated here
with where it comes from, and overridable from a file (`--costs FILE`, JSON
or TOML, any subset of the keys below).

Where the defaults come from:

- fault_ns = 1000: a minor (zero-fill) fault measured with rdtsc on Linux 6.6,
  Core i7 11th gen: median 3,241 cycles, about 1.0 us
  (https://ddumbying.vercel.app/experiments/pagefault-latency); the host
  this project is measured on takes 2.7 us per zero-fill fault including
  the zeroing (README, Benchmarks).  The page's zeroing or copying is
  counted apart (zero_page_ns, copy_page_ns).
- copy_page_ns = 60: a hot 4 KiB copy.  memcpy of 8 KiB arrays runs at
  about 107 GB/s on Ivy Bridge (glibc and asmlib figures in the Stack
  Overflow question "What's missing/sub-optimal in this memcpy
  implementation?"), 38-60 ns per 4 KiB; a
  sender copies what it has just written, so the bytes are in cache.  A cold
  copy (from DRAM) costs about 1 us: try `copy_page_ns = 1000`.
- zero_page_ns = 50: clearing a page is a copy with no source.
- pte_write_ns = 10: a page-table entry is one 8-byte store, plus the lock
  and the reference-count work around it.
- invlpg_ns = 140: the invlpg cost Linux assumed when it chose between
  invlpg and a full flush (Alex Shi, LKML, May 2012,
  https://lkml.iu.edu/hypermail/linux/kernel/1205.0/00700.html), the
  trade-off behind tlb_single_page_flush_ceiling
  (https://www.kernel.org/doc/html/latest/arch/x86/tlb.html).
- flush_all_ns = 500: a CR3 reload plus refilling the entries it threw away
  (the same message assumes 100 ns per refilled TLB entry).
- shootdown_wait_ns = 3000: what the CPU that changed a PTE spends on one
  shootdown: sending the IPIs and spinning until every target has
  acknowledged; a TLB shootdown takes microseconds (Nadav Amit, "Optimizing
  the TLB Shootdown Algorithm with Page Access Tracking", USENIX ATC 2017).
  Priced once per shootdown the kernel counted, whatever the number of targets
  (they answer in parallel).
- ipi_ns = 1000: what each target CPU loses to one shootdown IPI: entering
  the interrupt, invalidating, returning (about 1 us, ibid.).  Priced per IPI
  counted.  A context switch's CR3 load interrupts nobody: it is priced as a
  local full flush only.
- syscall_ns = 300: a null syscall (getpid) on Skylake with the 2018
  mitigations, about 100 ns before them
  (https://blog.i0.pm/posts/the-cost-of-a-syscall-measured-190303/).
- cycles_per_instruction = 1.0 and cpu_ghz = 3.0: to put user instructions
  and nanoseconds on one scale.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields, replace
from typing import Any

PAGE_SIZE = 4096


class CostFileError(Exception):
    """A --costs file that cannot be used; the message says why."""


@dataclass(frozen=True)
class Costs:
    fault_ns: float = 1000.0
    copy_page_ns: float = 60.0
    zero_page_ns: float = 50.0
    pte_write_ns: float = 10.0
    invlpg_ns: float = 140.0
    flush_all_ns: float = 500.0
    shootdown_wait_ns: float = 3000.0
    ipi_ns: float = 1000.0
    syscall_ns: float = 300.0
    cycles_per_instruction: float = 1.0
    cpu_ghz: float = 3.0


@dataclass(frozen=True)
class Work:
    """What one run did: the counts the cost model prices."""

    faults: int = 0              # non-fatal page faults: each is an exception and a trip through the handler
    pages_copied: int = 0        # whole-page copies (copy-on-write)
    bytes_copied_in: int = 0     # bytes write() copied into the kernel
    pages_zeroed: int = 0
    pte_writes: int = 0
    tlb_pages: int = 0           # single-page invalidations (invlpg)
    tlb_flushes: int = 0         # full flushes (CR3 loads)
    cr3_loads: int = 0           # of those, the loads of a context switch (counted for the report; local)
    shootdowns: int = 0          # PTE changes that had to interrupt other CPUs: the initiator waited for each
    ipis: int = 0                # shootdown IPIs sent, one per target CPU
    syscalls: int = 0
    instructions: int = 0


# The parts a cost is broken into, in the order a plot stacks them.
PARTS = ("faults", "copies", "page tables and TLB", "syscalls", "user instructions")


def breakdown(work: Work, costs: Costs) -> dict[str, float]:
    """Estimated cycles, by part."""
    ghz = costs.cpu_ghz
    copied_pages = work.pages_copied + work.bytes_copied_in / PAGE_SIZE
    return {
        "faults": work.faults * costs.fault_ns * ghz,
        "copies": (copied_pages * costs.copy_page_ns + work.pages_zeroed * costs.zero_page_ns) * ghz,
        "page tables and TLB": (work.pte_writes * costs.pte_write_ns + work.tlb_pages * costs.invlpg_ns
                                + work.tlb_flushes * costs.flush_all_ns
                                + work.shootdowns * costs.shootdown_wait_ns + work.ipis * costs.ipi_ns) * ghz,
        "syscalls": work.syscalls * costs.syscall_ns * ghz,
        "user instructions": work.instructions * costs.cycles_per_instruction,
    }


def cycles(work: Work, costs: Costs) -> float:
    return sum(breakdown(work, costs).values())


def load_costs(path: str) -> Costs:
    """The defaults, with the values a JSON or TOML file overrides."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise CostFileError(f"{path}: {error.strerror}") from None
    values = _parse(path, raw)
    if not isinstance(values, dict):
        raise CostFileError(f"{path}: expected a table of costs (key = number), not {type(values).__name__}")
    known = {f.name for f in fields(Costs)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CostFileError(f"{path}: unknown cost {', '.join(map(repr, unknown))}; "
                            f"the costs are {', '.join(sorted(known))}")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CostFileError(f"{path}: {key} must be a number, not {value!r}")
        if value < 0 or value != value or value == float("inf"):
            raise CostFileError(f"{path}: {key} must be a finite number >= 0, not {value!r}")
    if values.get("cpu_ghz", 1) == 0:
        raise CostFileError(f"{path}: cpu_ghz must be more than 0")
    return replace(Costs(), **{key: float(value) for key, value in values.items()})


def _parse(path: str, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CostFileError(f"{path}: not a text file") from None
    if path.endswith(".toml"):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise CostFileError(f"{path}: not valid TOML: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CostFileError(f"{path}: not valid JSON (line {error.lineno}: {error.msg}); "
                            f"name the file .toml for TOML") from None
