"""The C programs an experiment runs, built with gcc as people build them (static glibc, -pthread)."""

from __future__ import annotations

import os
import shutil
import subprocess

USERLAND_LIBC = os.path.join(os.path.dirname(__file__), "..", "..", "userland", "libc")
LIBC_FLAGS = ["-static", "-O2", "-pthread", "-Wall"]


class ExperimentError(Exception):
    """The experiment cannot run here (no gcc, a program that does not build); the message says why."""


def build_libc_program(name: str, directory: str) -> str:
    """Compile userland/libc/NAME.c into `directory`; the executable's path."""
    if shutil.which("gcc") is None:
        raise ExperimentError(f"gcc is needed to build userland/libc/{name}.c")
    source = os.path.join(USERLAND_LIBC, f"{name}.c")
    program = os.path.join(directory, name)
    built = subprocess.run(["gcc", *LIBC_FLAGS, "-o", program, source], capture_output=True, text=True)
    if built.returncode:
        raise ExperimentError(f"gcc could not build {source}:\n{built.stderr.strip()}")
    return program
