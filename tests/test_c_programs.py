"""Programs built by gcc -static -nostdlib behave on vmgames as on the host's Linux kernel."""

import io
import os
import shutil
import subprocess

import pytest

from emulator.machine import Machine
from kernel.kernel import Kernel

USERLAND_C = os.path.join(os.path.dirname(__file__), "..", "userland", "c")


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the C tests (.ci/run installs it)")
    out = tmp_path_factory.mktemp("c") / "segments"
    subprocess.run(["gcc", "-static", "-nostdlib", "-O2", "-ffreestanding", "-fno-stack-protector",
                    "-fno-pie", "-no-pie", "-masm=intel", "-o", str(out), os.path.join(USERLAND_C, "segments.c")],
                   check=True)
    return str(out)


def test_gcc_static_nostdlib_binary_matches_the_host(segments):
    argv = [segments, "one", "two"]
    host = subprocess.run(argv, capture_output=True)
    out = io.BytesIO()
    kernel = Kernel(Machine(16 << 20), root=os.path.dirname(segments), stdout=out, stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.open_host(segments), argv, [])
    kernel.run()
    assert out.getvalue() == host.stdout
    assert proc.shell_status == host.returncode
    assert host.returncode == (5 + ord("b") + 3) & 0xFF
