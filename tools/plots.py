"""`vmgames report --plots DIR`: pictures of a trace, as PNG and SVG.

- faults over virtual time, stacked by kind;
- a heat map of faults per page: one row per 2 MiB region that took faults,
  512 cells per row, so text, data, heap, mmap and stack each show up where
  they live;
- the shadow-chain depth (mean and maximum) over virtual time.
"""

from __future__ import annotations

import os

from tools.report import Summary

FAULT_COLOURS = {"zero-fill": "#4c72b0", "file": "#55a868", "resident": "#8c8c8c", "cow-copy": "#c44e52",
                 "cow-move": "#dd8452", "protection": "#8172b3", "fatal": "#000000"}
REGION = 2 << 20
PAGES_PER_REGION = REGION // 4096


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

    regions = sorted({page // REGION for page in summary.pages})
    # Pages that never faulted stay blank (NaN); a log scale keeps one busy page from hiding the rest.
    grid = [[float("nan")] * PAGES_PER_REGION for _ in regions]
    row_of = {region: row for row, region in enumerate(regions)}
    for page, count in summary.pages.items():
        grid[row_of[page // REGION]][(page % REGION) // 4096] = count
    figure, axes = plt.subplots(figsize=(9, max(2.0, 0.4 * len(regions) + 1)))
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    image = axes.imshow(grid or [[float("nan")]], aspect="auto", cmap=colours, interpolation="nearest",
                        norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(summary.pages.values(), default=1) or 1))
    axes.set_yticks(range(len(regions)), [f"{region * REGION:#x}" for region in regions])
    axes.set_xlabel("page within the 2 MiB region")
    axes.set_title(f"Faults per page across the address space: {program}")
    figure.colorbar(image, ax=axes, label="faults")
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
