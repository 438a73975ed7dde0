"""What the kernel did, as a table for people and as JSON for programs.

Everything here is read from the one event recorder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

from vmgames.emulator.processor import Processor
from vmgames.kernel import syscall
from vmgames.kernel.vm import fault
from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vm.pagequeue import ACTIVE, CACHE, INACTIVE, WIRED
from vmgames.kernel.vm.swap_pager import SwapPager
from vmgames.kernel.vmmeter import Recorder
from vmgames.tools import vmstat


def collect(recorder: Recorder, instructions: int | None, ram_frames: int,
            processors: list[Processor] | None = None, allocator: PageAllocator | None = None,
            swap: SwapPager | None = None) -> dict[str, Any]:
    """Counters of a whole run, by subject; per CPU too when the machine's `processors` are given, the
    page queues' lengths when the `allocator` is, and swap use when there is `swap`."""
    faults = recorder.by_kind("fault")
    syscalls = recorder.by_kind("syscall")

    def count(type_: str, kind: str | None, reason: str | None) -> int:
        return recorder.count(type_, kind) if reason is None else recorder.count_reason(type_, kind, reason)

    ipis = {name: recorder.count("tlb", kind) for kind, name in vmstat.IPI_KINDS.items()}
    return {
        "instructions": instructions,
        "faults": {"total": sum(faults.values()), **{k: faults.get(k, 0) for k in fault.KINDS}},
        "tlb": {"invalidate_page": recorder.count("tlb", "invalidate-page"),
                "invalidate_all": recorder.count("tlb", "invalidate-all"),
                "shootdowns": recorder.count("tlb", "shootdown"), "ipis_taken": sum(ipis.values())},
        "tlb_by_reason": tlb_by_reason(recorder.reasons),
        "linux_vmstat": vmstat.linux_tlb_counters(count),
        "freebsd_ipis": ipis,
        "cpus": [cpu_figures(recorder, processor, instructions is not None) for processor in processors or ()],
        "pte_writes": recorder.count("pte", "write"),
        "pages_prefaulted": recorder.count_reason("pte", "write", "prefault"),
        "pages_faulted_around": recorder.count_reason("pte", "write", "fault-around"),
        "page_table_pages": recorder.count("pte", "table"),
        "pages": {"zeroed": recorder.count("page", "zero"), "zeroed_while_idle": recorder.count("page", "zero-idle"),
                  "copied": recorder.count("page", "copy"),
                  "moved": recorder.count("page", "move"), "paged_in": recorder.count("page", "pagein"),
                  "dead_freed_by_collapse": recorder.count("page", "dead")},
        "chain_depth": {"max": max(recorder.fault_depths, default=0),
                        **{f"faults_at_depth_{d}": n for d, n in sorted(recorder.fault_depths.items())}},
        "frames": {"in_use": recorder.frames_in_use, "peak": recorder.frames_peak, "total": ram_frames},
        "page_queues": page_queues(allocator) if allocator is not None else {},
        "memory_pressure": memory_pressure(recorder, swap),
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


# The page queues' lengths under the names FreeBSD's struct vmmeter gives them (vmstat -s: "pages active", ...).
QUEUE_COUNTERS = {"v_active_count": ACTIVE, "v_inactive_count": INACTIVE, "v_cache_count": CACHE,
                  "v_wire_count": WIRED}


def memory_pressure(recorder: Recorder, swap: SwapPager | None) -> dict[str, Any]:
    """What the pageout daemon and the swap pager did (kernel/vm/pageout.py), beyond FreeBSD's counters."""
    figures = {"pages_deactivated_to_inactive_or_cache": recorder.count("page", "deactivate")
               + recorder.count("page", "cache"),
               "accessed_bits_cleared": recorder.count_reason("pte", "write", "aging"),
               "ptes_cleared_by_the_daemon": recorder.count_reason("pte", "write", "pageout"),
               "ptes_probed_to_unmap": recorder.amount("pageout", "unmap"),
               "pages_reused_from_cache": recorder.count("page", "reuse"),
               "address_spaces_whose_page_tables_were_thrown_away": recorder.count("pageout", "drop-tables"),
               "swap_blocks_freed": recorder.count("swap", "free") + recorder.count("swap", "dead"),
               "of_them_dead_pages_a_collapse_found": recorder.count("swap", "dead"),
               "processes_killed_out_of_memory": recorder.count("proc", "oom-kill")}
    if swap is not None:
        figures |= {"swap_blocks": swap.blocks, "swap_used": swap.used, "swap_peak": swap.peak,
                    "swap_fragmentation": round(swap.blist.fragmentation(), 3)}
    return figures


def page_queues(allocator: PageAllocator) -> dict[str, int]:
    """How many pages each queue holds now (kernel/vm/pagequeue.py), and how many frames are free."""
    return {**{name: len(allocator.queues[queue]) for name, queue in QUEUE_COUNTERS.items()},
            "v_free_count": allocator.free_count}


def cpu_figures(recorder: Recorder, processor: Processor, clocked: bool) -> dict[str, Any]:
    """What one CPU did: its time, run and idle, and the kernel's work on it."""
    index = processor.index

    def count(type_: str, kinds: Collection[str] | None = None) -> int:
        return sum(n for (_, cpu, t, k), n in recorder.counts.items()
                   if cpu == index and t == type_ and (kinds is None or k in kinds))

    return {"cpu": index,
            "instructions": processor.now - processor.idle_time if clocked else None,
            "idle": processor.idle_time if clocked else None,
            "cr3_loads": processor.cr3_loads,
            "faults": count("fault"), "syscalls": count("syscall"),
            "invalidate_page": count("tlb", ("invalidate-page",)),
            "invalidate_all": count("tlb", ("invalidate-all",)),
            "shootdowns": count("tlb", ("shootdown",)), "ipis_taken": count("tlb", vmstat.IPI_KINDS)}


def tlb_by_reason(reasons: Counter[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """TLB work per reason of ours: local invalidations (with Linux's tlb_flush reason beside them), shootdowns
    sent (TLB_REMOTE_SEND_IPI) and the IPIs the targets took (TLB_REMOTE_SHOOTDOWN)."""
    table: dict[str, dict[str, Any]] = {}
    column = {"invalidate-page": "invalidate_page", "invalidate-all": "invalidate_all", "shootdown": "shootdowns",
              **{kind: "ipis" for kind in vmstat.IPI_KINDS}}
    for (type_, kind, reason), n in sorted(reasons.items()):
        if type_ == "tlb":
            row = table.setdefault(reason, {"linux": vmstat.linux_local_tlb_reason(reason),
                                            "invalidate_page": 0, "invalidate_all": 0, "shootdowns": 0, "ipis": 0})
            row[column[kind]] += n
    return table


def format_table(stats: dict[str, Any]) -> str:
    """A two-column table, one section per subject."""
    rows: list[tuple[str, str]] = []

    def section(title: str, items: dict[str, Any]) -> None:
        rows.append((title, ""))
        for key, value in items.items():
            rows.append(("  " + key.replace("_", " "), str(value)))

    if stats.get("skipped_invalidations"):
        rows.append(("fault injection: the kernel forgot the invalidations of "
                     + ", ".join(stats["skipped_invalidations"]), ""))
    rows.append(("instructions retired", "n/a (fast mode)" if stats["instructions"] is None
                 else f"{stats['instructions']:,}"))
    section("page faults", stats["faults"])
    section("TLB invalidations", stats["tlb"])
    rows.append(("TLB invalidations by reason (Linux tlb_flush reason): page / all", ""))
    for reason, row in stats["tlb_by_reason"].items():
        if row["invalidate_page"] or row["invalidate_all"]:
            rows.append((f"  {reason} ({row['linux']})", f"{row['invalidate_page']} / {row['invalidate_all']}"))
    if stats["tlb"]["shootdowns"]:
        # Linux traces the two ends as TLB_REMOTE_SEND_IPI and TLB_REMOTE_SHOOTDOWN.
        rows.append(("TLB shootdowns by reason: sent / IPIs taken", ""))
        for reason, row in stats["tlb_by_reason"].items():
            if row["shootdowns"]:
                rows.append((f"  {reason}", f"{row['shootdowns']} / {row['ipis']}"))
        rows.append(("shootdown IPIs taken, as FreeBSD counts them", ""))
        rows += [("  " + name, str(n)) for name, n in stats["freebsd_ipis"].items()]
    rows.append(("Linux /proc/vmstat", ""))
    rows += [("  " + name, str(n)) for name, n in stats["linux_vmstat"].items()]

    rows.append(("PTE writes", str(stats["pte_writes"])))
    if stats["pages_prefaulted"]:
        rows.append(("  of which pages pre-faulted at exec and mmap (--prefault)", str(stats["pages_prefaulted"])))
    if stats["pages_faulted_around"]:
        rows.append(("  of which pages mapped around faults (--fault-around)",
                     str(stats["pages_faulted_around"])))
    rows.append(("page-table pages allocated", str(stats["page_table_pages"])))
    section("pages", stats["pages"])
    section("shadow-chain depth at faults", stats["chain_depth"])
    section("frames (4 KiB)", stats["frames"])
    if stats["page_queues"]:
        rows.append(("page queues at the end (FreeBSD's vmmeter names)", ""))
        rows += [("  " + name, str(n)) for name, n in stats["page_queues"].items()]
    if any(stats["memory_pressure"].values()):
        section("memory pressure (the pageout daemon; swap counted in blocks of 4 KiB)", stats["memory_pressure"])
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
    if len(stats["cpus"]) > 1:
        lines += ["", _cpu_table(stats["cpus"])]
    return "\n".join(lines)


CPU_COLUMNS = {"instructions": "instructions", "idle": "idle", "cr3_loads": "CR3 loads", "faults": "faults",
               "syscalls": "syscalls", "shootdowns": "shootdowns sent", "ipis_taken": "IPIs taken"}


def _cpu_table(cpus: list[dict[str, Any]]) -> str:
    """Each CPU's time (instructions run, time idle) and the kernel's work on it, one row per CPU."""
    cells = [["cpu", *CPU_COLUMNS.values()]]
    cells += [[str(cpu["cpu"]), *("n/a" if cpu[key] is None else f"{cpu[key]:,}" for key in CPU_COLUMNS)]
              for cpu in cpus]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)
