"""The bundled programs in userland/, assembled by our assembler and run on the machine."""

import os

import pytest
from vmgames.tools.assembler import assemble

from tests.conftest import assert_no_leak

USERLAND = os.path.join(os.path.dirname(__file__), "..", "userland")


@pytest.fixture
def userland(tmp_path):
    def _build(name: str) -> str:
        with open(os.path.join(USERLAND, f"{name}.s"), encoding="utf-8") as f:
            image = assemble(f.read(), f"{name}.s")
        path = tmp_path / name
        path.write_bytes(image)
        return str(path)
    return _build


def test_hello(run, userland):
    result = run(userland("hello"))
    assert (result.stdout, result.status) == (b"Hello, world!\n", 0)


@pytest.mark.parametrize("pages", [1, 100, 1024])
def test_touch_takes_one_zero_fill_fault_per_page(run, userland, pages):
    result = run(userland("touch"), str(pages))
    assert result.stdout == f"touched {pages} pages\n".encode()
    # text and rodata come from the file; the stack, the bss page of digits, and every page touched are zero-fill.
    assert result.faults() == {"file": 2, "zero-fill": pages + 2}
    assert result.recorder.count("page", "copy") == 0
    assert result.recorder.frames_peak >= pages


def test_touch_refuses_a_bad_count(run, userland):
    result = run(userland("touch"), "12x")
    assert result.status != 0
    assert b"decimal" in result.stderr


def test_segv_dies_on_its_read_only_page(run, userland):
    result = run(userland("segv"))
    assert result.stdout == b"segv: page is now read-only, writing to it (expect SIGSEGV)\n"
    assert result.status == 139
    assert "killed by SIGSEGV: write of" in result.proc.death and "(permission denied)" in result.proc.death
    assert_no_leak(result.kernel)
