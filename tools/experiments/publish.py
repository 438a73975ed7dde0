"""How the memory experiments end: the table and the conclusion printed, the CSV and the plot written and named."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def save_figure(figure: Any, directory: str, name: str) -> list[str]:
    """Write a matplotlib figure as NAME.png and NAME.svg in `directory`, and close it; the files written."""
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []
    for extension in ("png", "svg"):
        path = os.path.join(directory, f"{name}.{extension}")
        figure.savefig(path)
        written.append(path)
    plt.close(figure)
    return written


def columns(names: list[str], rows: list[tuple[str, list[str]]], least: int = 10) -> str:
    """A table with a column per run (headed by `names`) and a line per figure: its name, then each run's."""
    width = max(len(name) for name, _ in rows)
    cell = max(least, *(len(name) for name in names))
    lines = [" " * width + "  " + "  ".join(name.rjust(cell) for name in names)]
    lines += [name.ljust(width) + "  " + "  ".join(value.rjust(cell) for value in values) for name, values in rows]
    return "\n".join(lines)


def publish(header: str, table: str, conclusion: list[str], write_csv: Callable[[str], None], csv_path: str,
            write_plot: Callable[[], list[str]]) -> None:
    print(header)
    print(table)
    print("\n".join(conclusion))
    write_csv(csv_path)
    print(f"per-run figures written to {csv_path}")
    for path in write_plot():
        print(f"plot written to {path}")
