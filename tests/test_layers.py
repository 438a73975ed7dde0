"""The layers: emulator/ (the board) below kernel/ below tools/, and only the board drives Unicorn.

Installed, the three are `vmgames.emulator`, `vmgames.kernel` and
`vmgames.tools` (pyproject.toml's package-dir), and every module imports them
by those names; a layer is the name after `vmgames.`.  The `vmgames` package
itself (vmgames/__init__.py, the Python API) stands on top of them all.

Imports are read with ast wherever they stand (in functions and in
TYPE_CHECKING blocks too): a lazy import is still an import, and knowledge
must not flow up even as a type.  Tests may import Unicorn to hold the board
against Unicorn itself (tests/test_mmu_reference.py, tests/test_determinism.py):
the rule is about the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each layer may not import: the layers above it, and (but for the board) the engine.
FORBIDDEN = {
    "emulator": {"kernel", "tools"},
    "kernel": {"tools", "unicorn"},
    "tools": {"unicorn"},
}


def imported_packages(source: str, module_path: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(line, layer or top-level package) of every import in `source`, the module at `module_path`
    ("tools", "bench.py"): `vmgames.kernel.x` is layer "kernel"; plain `kernel.x`, which an installed copy
    could not import, is reported as "kernel (not vmgames.kernel)"."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, _layer(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # from . import x, from ..y import z: relative to the module's package.
                package = ["vmgames", *module_path[:-1]][:len(module_path) + 1 - node.level]
                name = ".".join([*package, node.module] if node.module else package)
            else:
                name = node.module
            if name:
                yield node.lineno, _layer(name)


def _layer(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "vmgames":
        return parts[1] if len(parts) > 1 else "vmgames"
    return f"{parts[0]} (not vmgames.{parts[0]})" if parts[0] in FORBIDDEN else parts[0]


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT)
        for line, package in imported_packages(path.read_text(), relative.parts):
            if package in FORBIDDEN[layer] or package == "vmgames" or package.endswith(")"):
                found.append(f"{relative}:{line} imports {package}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_what_it_may_not(layer):
    assert len(list((ROOT / layer).rglob("*.py"))) > 5, f"no modules found under {layer}/"
    assert violations(layer) == []


def test_the_check_sees_every_form_of_import():
    source = """
import unicorn
import unicorn.x86_const as X
from unicorn import UC_HOOK_CODE
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from vmgames.tools.gdb.stub import GdbStub
def later():
    import vmgames.kernel.kernel
from .. import tools
from ...tools import cli
from . import fault
import kernel.vm
import vmgames
"""
    found = sorted(imported_packages(source, ("kernel", "vm", "fault.py")))
    assert found == [(2, "unicorn"), (3, "unicorn"), (4, "unicorn"), (5, "typing"), (7, "tools"), (9, "kernel"),
                     (10, "kernel"), (11, "tools"), (12, "kernel"), (13, "kernel (not vmgames.kernel)"),
                     (14, "vmgames")]


def test_every_module_imports_the_layers_by_their_installed_names():
    """`import kernel.x` works in a checkout and fails where pip installed vmgames: nothing may use it."""
    found = []
    for folder in ("emulator", "kernel", "tools", "vmgames", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            found += [f"{relative}:{line} imports {package}"
                      for line, package in imported_packages(path.read_text(), relative.parts)
                      if package.endswith(")")]
    assert found == []
