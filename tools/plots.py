"""`vmgames report --plots DIR`: pictures of a trace, as PNG and SVG.

- faults over virtual time, stacked by kind;
- a heat map of faults per page: one row per 2 MiB region that took faults,
  512 cells per row, so text, data, heap, mmap and stack each show up where
  they live (at most report.MAX_HEAT_ROWS rows: a run that faulted in more
  regions gets rows of 4, 8, ... MiB, cells of 2, 4, ... pages);
- the shadow-chain depth (mean and maximum) over virtual time.
"""

from __future__ import annotations

import os

from vmgames.emulator.ram import PAGE_SIZE
from vmgames.tools.report import Summary

FAULT_COLOURS = {"zero-fill": "#4c72b0", "file": "#55a868", "swap-in": "#da8bc3", "resident": "#8c8c8c",
                 "cow-copy": "#c44e52", "cow-move": "#dd8452", "protection": "#8172b3", "fatal": "#000000"}


def write_plots(summary: Summary, directory: str) -> list[str]:
    """Draw the three plots; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written: list[str] = []

    def save(figure, name: str) -> None:
        for extension in ("png", "svg"):
            path = os.path.join(directory, f"{name}.{extension}")
            figure.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
        plt.close(figure)

    program = summary.header["program"]

    figure, axes = plt.subplots(figsize=(9, 4))
    timeline = summary.timeline
    starts = [index * timeline.width for index in sorted(timeline.buckets)]
    bottom = [0] * len(starts)
    for kind, colour in FAULT_COLOURS.items():
        heights = [timeline.buckets[index][kind] for index in sorted(timeline.buckets)]
        if any(heights):
            axes.bar(starts, heights, width=timeline.width, bottom=bottom, color=colour, label=kind, align="edge")
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_xlabel("virtual time (instructions retired)")
    axes.set_ylabel(f"faults per {timeline.width:,} instructions")
    axes.set_title(f"Page faults over time by kind: {program}")
    if starts:
        axes.legend()
    save(figure, "faults_over_time")

    heat = summary.heat
    starts = sorted(heat.rows)
    # Cells that took no fault stay blank (NaN); a log scale keeps one busy page from hiding the rest.
    grid = [[count or float("nan") for count in heat.rows[start]] for start in starts]
    busiest = max((max(cells) for cells in heat.rows.values()), default=1)
    figure, axes = plt.subplots(figsize=(9, max(2.0, 0.3 * len(starts) + 1.2)))
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    pages = heat.cell // PAGE_SIZE
    # The x axis counts pages within the row, however many a cell holds; row n is centred on y = n.
    image = axes.imshow(grid or [[float("nan")]], aspect="auto", cmap=colours, interpolation="nearest",
                        norm=matplotlib.colors.LogNorm(vmin=1, vmax=busiest),
                        extent=(0, heat.span // PAGE_SIZE, max(len(starts), 1) - 0.5, -0.5))
    axes.set_yticks(range(len(starts)), [f"{start * heat.span:#x}" for start in starts],
                    fontsize=8 if len(starts) > 16 else None)
    axes.set_ylabel(f"address (rows of {_size_text(heat.span)} that took faults)")
    axes.set_xlabel(f"page within the {_size_text(heat.span)} row"
                    + ("" if pages == 1 else f" (cells of {pages} pages)"))
    axes.set_title(f"Faults per page across the address space: {program}")
    figure.colorbar(image, ax=axes, label="faults" if pages == 1 else f"faults per cell of {pages} pages")
    save(figure, "fault_heatmap")

    figure, axes = plt.subplots(figsize=(9, 3.5))
    rows = summary.depth.rows()
    axes.step([r[0] for r in rows], [r[3] for r in rows], where="post", label="mean depth")
    axes.step([r[0] for r in rows], [r[4] for r in rows], where="post", label="max depth")
    axes.set_xlabel("virtual time (instructions retired)")
    axes.set_ylabel("objects in the chain")
    axes.set_title(f"Shadow-chain depth seen by faults: {program}")
    if rows:
        axes.legend()
    save(figure, "chain_depth")
    return written


def _size_text(size: int) -> str:
    """2097152 -> '2 MiB'; a row's span is a power of two of at least 2 MiB."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if size >= 1 << shift:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"
