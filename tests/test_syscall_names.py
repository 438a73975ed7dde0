"""Syscalls are named from Linux's x86-64 table everywhere: --stats, traces, report, --break-on."""

import os
import re
import subprocess

import pytest
from vmgames.kernel.linux_syscalls import LINUX_SYSCALLS
from vmgames.kernel.syscall import TABLE, describe, syscall_name
from vmgames.tools import stats
from vmgames.tools.cli import main

from tests.programs import VMGAMES

ROOT = os.path.join(os.path.dirname(__file__), "..")
HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

UNIMPLEMENTED = """
.text
_start:
    mov eax, 253
    syscall
    mov rax, 0x1f4
    syscall
    mov rax, 0xdeadbeef00000027
    syscall
    xor edi, edi
    mov eax, 231
    syscall
"""


def test_the_table_is_the_hosts_where_the_header_is_installed():
    if not os.path.exists(HEADER):
        pytest.skip(f"{HEADER} is not installed (linux-libc-dev)")
    with open(HEADER, encoding="utf-8") as f:
        host = {int(n): name for name, n in re.findall(r"#define __NR_(\w+) (\d+)", f.read())}
    assert host and all(LINUX_SYSCALLS[n] == name for n, name in host.items())
    assert all(LINUX_SYSCALLS[n] == entry.name for n, entry in TABLE.items() if n in LINUX_SYSCALLS)


def test_names_of_numbers_known_unknown_and_with_junk_above():
    assert syscall_name(253) == "inotify_init"
    assert syscall_name(0xDEADBEEF_0000_0027) == "getpid"     # the low 32 bits, as Linux reads rax
    assert syscall_name(500) == "syscall_0x1f4"               # never assigned: strace's name
    assert syscall_name(1000) == "zc_reap"                    # vmgames' own
    assert describe("inotify_init") == "inotify_init (not implemented)" and describe("exit_group") == "exit_group"


def test_stats_and_report_name_each_call_as_linux_does(run, tmp_path, capsys):
    result = run(UNIMPLEMENTED)
    assert result.recorder.by_kind("syscall") == {"inotify_init": 1, "syscall_0x1f4": 1, "getpid": 1,
                                                  "exit_group": 1}
    table = stats.format_table(stats.collect(result.recorder, 0, 100))
    for line in ("inotify_init (not implemented)", "syscall_0x1f4 (not implemented)", "  exit_group ", "  getpid "):
        assert line in table
    assert "exit group" not in table
    program = tmp_path / "prog"
    trace_path = tmp_path / "t.jsonl"
    assert main(["run", "--trace", str(trace_path), str(program)]) == 0
    capsys.readouterr()
    assert main(["report", str(trace_path)]) == 0
    report = capsys.readouterr().out
    assert "inotify_init (not implemented)" in report and "syscall_0x1f4 (not implemented)" in report


def test_break_on_takes_any_linux_name_and_refuses_others():
    ok = subprocess.run([*VMGAMES, "run", "--break-on", "syscall:newfstatat",
                         "build/hello"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout == "Hello, world!\n"
    bad = subprocess.run([*VMGAMES, "run", "--break-on", "syscall:fstatt", "build/hello"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.startswith("vmgames: unknown syscall 'fstatt': not in Linux's x86-64 table (vmgames implements")


@pytest.mark.parametrize("name, shown", [("inotify_init", "inotify_init"), ("253", "inotify_init"),
                                         ("syscall_0xfd", "inotify_init"), ("syscall_0x1f4", "syscall_0x1f4"),
                                         ("500", "syscall_0x1f4"), ("39", "getpid")])
def test_break_on_takes_every_name_vmgames_shows_and_numbers(build, name, shown):
    program = build(UNIMPLEMENTED)
    result = subprocess.run([*VMGAMES, "run", "--break-on", f"syscall:{name}", program],
                            input="c\n", capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONBREAKPOINT": ""})
    assert result.stdout.startswith(f"vmgames: process 1 calls {shown}; in scope: proc, number, name. ")
    assert result.stdout.count(" calls ") == 1 and result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["syscall_500", "syscall_0xzz", "-1", "0x106", "4294967296", ""])
def test_break_on_refuses_what_names_no_syscall(name):
    bad = subprocess.run([*VMGAMES, "run", "--break-on", f"syscall:{name}", "build/hello"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith(f"vmgames: unknown syscall {name!r}: not in Linux's x86-64 table")
    assert bad.stderr.count("\n") == 1
