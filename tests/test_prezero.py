"""Pre-zeroing (--prezero): while every CPU idles, free pages are zeroed into a pool that zero-fill faults take
first, as FreeBSD's idle zeroing did (v_ozfod beside v_zfod)."""

import json

import pytest
from vmgames.tools.cli import main

from tests.programs import EXIT_WITH_RDI

# Sleep a millisecond (every CPU idles: a million instructions of virtual time), then read and write the first
# byte of each of 64 fresh bss pages; exit with the sum of what was read (0: every page came zeroed).
SLEEP_THEN_TOUCH = f"""
.text
_start:
    lea rdi, [rip + a_millisecond]
    xor esi, esi
    mov eax, 35
    syscall
    lea rbx, [rip + area]
    mov ecx, 64
    xor edi, edi
again:
    movzx eax, byte ptr [rbx]
    add edi, eax
    mov byte ptr [rbx], 7
    add rbx, 4096
    dec ecx
    jnz again
{EXIT_WITH_RDI}
.section .rodata
a_millisecond: .quad 0, 1000000
.bss
.align 4096
area: .zero 64 * 4096
"""


def _stats(program, tmp_path, *options):
    path = tmp_path / "stats.json"
    assert main(["run", "--stats-json", str(path), *options, program]) == 0
    return json.loads(path.read_text())


@pytest.mark.parametrize(("cap", "prezeroed"), [(16, 16), (1000, 64)])
def test_zero_fill_faults_take_the_pages_an_idle_machine_zeroed(cap, prezeroed, build, tmp_path):
    program = build(SLEEP_THEN_TOUCH)
    off = _stats(program, tmp_path)
    stats = _stats(program, tmp_path, "--prezero", str(cap))
    assert off["pages"]["zeroed_while_idle"] == off["freebsd_vmstat"]["ozfod"] == 0
    # A millisecond of idling zeroes a page per microsecond, up to the cap: 16 pages, or as many as the
    # 1,000 microseconds allow; the 64 pages' faults take them first, the rest of the run is the same.
    assert stats["pages"]["zeroed_while_idle"] == min(cap, 1000)
    assert stats["freebsd_vmstat"]["ozfod"] == prezeroed
    assert stats["faults"] == off["faults"] and stats["freebsd_vmstat"]["zfod"] == off["faults"]["zero-fill"]
    # Each fault that took a pre-zeroed page zeroed none (the exit status 0 says every page read zero).
    assert stats["pages"]["zeroed"] == off["pages"]["zeroed"] - prezeroed


def test_a_pool_larger_than_the_free_memory_stops_at_the_free_frames(build, tmp_path):
    stats = _stats(build(SLEEP_THEN_TOUCH), tmp_path, "--ram", "1M", "--prezero", "100000")
    assert 0 < stats["pages"]["zeroed_while_idle"] < 256
    assert stats["freebsd_vmstat"]["ozfod"] == 64
