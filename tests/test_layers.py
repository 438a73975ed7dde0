"""The layers: emulator/ (the board) below kernel/ below tools/, and only the board drives Unicorn.

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
    """(line, top-level package) of every import in `source`, the module at `module_path` ("tools", "bench.py")."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # from . import x, from ..y import z: relative to the module's package.
                package = list(module_path[:-1])[:len(module_path) - node.level]
                name = ".".join([*package, node.module] if node.module else package)
            else:
                name = node.module
            if name:
                yield node.lineno, name.split(".")[0]


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT)
        for line, package in imported_packages(path.read_text(), relative.parts):
            if package in FORBIDDEN[layer]:
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
    from tools.gdb.stub import GdbStub
def later():
    import kernel.kernel
from .. import tools
from ...tools import cli
from . import fault
"""
    found = sorted(imported_packages(source, ("kernel", "vm", "fault.py")))
    assert found == [(2, "unicorn"), (3, "unicorn"), (4, "unicorn"), (5, "typing"), (7, "tools"), (9, "kernel"),
                     (10, "kernel"), (11, "tools"), (12, "kernel")]
