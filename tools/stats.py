"""What the kernel did, as a table for people and as JSON for programs.

Everything here is read from the one event recorder.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kernel import syscall
from kernel.vm import fault
from kernel.vmmeter import Recorder
from tools import vmstat


def collect(recorder: Recorder, instructions: int | None, ram_frames: int) -> dict[str, Any]:
    """Counters of a whole run, by subject."""
    faults = recorder.by_kind("fault")
    syscalls = recorder.by_kind("syscall")

    def count(type_: str, kind: str | None, reason: str | None) -> int:
        return recorder.count(type_, kind) if reason is None else recorder.count_reason(type_, kind, reason)

    return {
        "instructions": instructions,
        "faults": {"total": sum(faults.values()), **{k: faults.get(k, 0) for k in fault.KINDS}},
        "tlb": {"invalidate_page": recorder.count("tlb", "invalidate-page"),
                "invalidate_all": recorder.count("tlb", "invalidate-all")},
        "tlb_by_reason": tlb_by_reason(recorder.reasons),
        "pte_writes": recorder.count("pte", "write"),
        "page_table_pages": recorder.count("pte", "table"),
        "pages": {"zeroed": recorder.count("page", "zero"), "copied": recorder.count("page", "copy"),
                  "moved": recorder.count("page", "move"), "paged_in": recorder.count("page", "pagein"),
                  "dead_freed_by_collapse": recorder.count("page", "dead")},
        "chain_depth": {"max": max(recorder.fault_depths, default=0),
                        **{f"faults_at_depth_{d}": n for d, n in sorted(recorder.fault_depths.items())}},
        "frames": {"in_use": recorder.frames_in_use, "peak": recorder.frames_peak, "total": ram_frames},
        "objects": recorder.by_kind("object"),
        "syscalls": {"total": sum(syscalls.values()), **syscalls},
        "processes": recorder.by_kind("proc"),
        "signals": {"sent": recorder.count("proc", "signal"), "handled": recorder.count("proc", "handler"),
                    "faults_handled": recorder.count("proc", "fault-handler")},
        "sends": {"bytes_copied": recorder.amount("sink", "copy"), "pages_held_cow": recorder.count("sink", "hold"),
                  "pages_lent": recorder.count("sink", "lend"), "pages_released": recorder.count("sink", "release"),
                  "bytes_delivered": recorder.amount("sink", "deliver"),
                  "bytes_corrupt": recorder.amount("sink", "corrupt"),
                  "completions": recorder.count("sink", "complete")},
        "freebsd_vmstat": vmstat.freebsd(count),
    }


def tlb_by_reason(reasons: Counter[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """TLB invalidations per reason of ours, with Linux's tlb_flush reason beside it."""
    table: dict[str, dict[str, Any]] = {}
    for (type_, kind, reason), n in sorted(reasons.items()):
        if type_ == "tlb":
            row = table.setdefault(reason, {"linux": vmstat.linux_tlb_reason(reason),
                                            "invalidate_page": 0, "invalidate_all": 0})
            row[kind.replace("-", "_")] += n
    return table


def format_table(stats: dict[str, Any]) -> str:
    """A two-column table, one section per subject."""
    rows: list[tuple[str, str]] = []

    def section(title: str, items: dict[str, Any]) -> None:
        rows.append((title, ""))
        for key, value in items.items():
            rows.append(("  " + key.replace("_", " "), str(value)))

    rows.append(("instructions retired", "n/a (fast mode)" if stats["instructions"] is None
                 else f"{stats['instructions']:,}"))
    section("page faults", stats["faults"])
    section("TLB invalidations", stats["tlb"])
    rows.append(("TLB invalidations by reason (Linux tlb_flush reason): page / all", ""))
    for reason, row in stats["tlb_by_reason"].items():
        rows.append((f"  {reason} ({row['linux']})", f"{row['invalidate_page']} / {row['invalidate_all']}"))
    rows.append(("PTE writes", str(stats["pte_writes"])))
    rows.append(("page-table pages allocated", str(stats["page_table_pages"])))
    section("pages", stats["pages"])
    section("shadow-chain depth at faults", stats["chain_depth"])
    section("frames (4 KiB)", stats["frames"])
    section("VM objects", stats["objects"])
    rows.append(("syscalls", ""))
    for name, n in stats["syscalls"].items():
        # Linux's names as they are (exit_group, not "exit group"), marked when vmgames does not implement them.
        rows.append(("  " + (name if name == "total" else syscall.describe(name)), str(n)))
    if any(stats["sends"].values()):
        section("sends (wires and pipes)", stats["sends"])
    if any(stats["signals"].values()):
        section("signals (faults handled: delivered to a handler instead of killing)", stats["signals"])
    rows.append(("FreeBSD vmstat -s", ""))
    for stat in vmstat.FREEBSD:
        rows.append((f"  {stat.text} ({stat.name})", str(stats["freebsd_vmstat"][stat.name])))
    width = max(len(name) for name, _ in rows) + 2
    lines = ["vmgames statistics", "-" * (width + 12)]
    lines += [f"{name:<{width}}{value:>12}" if value else name for name, value in rows]
    return "\n".join(lines)
