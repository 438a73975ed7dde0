"""The C programs the experiments run, built with gcc: freestanding ones (the zero-copy workloads) and, as
people build them, static glibc ones with -pthread (userland/libc)."""

from __future__ import annotations

import os
import shutil
import subprocess

USERLAND_LIBC = os.path.join(os.path.dirname(__file__), "..", "..", "userland", "libc")
LIBC_FLAGS = ["-static", "-O2", "-pthread", "-Wall"]
# No libc: gcc must not turn loops into calls to memset or memcpy (tests/test_c_programs.py builds the same way).
FREESTANDING_FLAGS = ["-static", "-nostdlib", "-O2", "-ffreestanding", "-fno-builtin",
                      "-fno-tree-loop-distribute-patterns", "-fno-stack-protector", "-fno-pie", "-no-pie",
                      "-masm=intel", "-Wall"]


class ExperimentError(Exception):
    """The experiment cannot run here (no gcc, a program that does not build); the message says why."""


def build(source: str, program: str, flags: list[str]) -> str:
    """Compile the C file `source` into the executable `program` with gcc and `flags`; its path."""
    if shutil.which("gcc") is None:
        raise ExperimentError(f"gcc is needed to build {os.path.relpath(source)}")
    built = subprocess.run(["gcc", *flags, "-o", program, source], capture_output=True, text=True)
    if built.returncode:
        raise ExperimentError(f"gcc could not build {source}:\n{built.stderr.strip()}")
    return program


def build_libc_program(name: str, directory: str) -> str:
    """Compile userland/libc/NAME.c into `directory`; the executable's path."""
    return build(os.path.join(USERLAND_LIBC, f"{name}.c"), os.path.join(directory, name), LIBC_FLAGS)
