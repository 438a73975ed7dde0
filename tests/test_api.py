"""The Python API (tools/api.py, `import vmgames`): the command line's runs, options and refusals, as Python values."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vmgames
from tests.programs import VMGAMES

ROOT = Path(__file__).resolve().parent.parent
TOUCH = str(ROOT / "build" / "touch")


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), re.DOTALL)


def test_the_worked_example_runs_as_written(tmp_path, monkeypatch):
    (tmp_path / "build").symlink_to(ROOT / "build")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(_examples()[1], {})
    swapped_in = ast.literal_eval(printed.getvalue().strip())
    assert list(swapped_in) == [6, 8, 10, 12, 16]
    counts = list(swapped_in.values())
    assert counts[0] > counts[1] > 0 and counts[2:] == [0, 0, 0]     # fewer as RAM grows; none once it fits
    assert (tmp_path / "ram-sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_first_example_gives_what_its_comments_say(monkeypatch):
    monkeypatch.chdir(ROOT)
    names: dict = {}
    exec(_examples()[0], names)
    result = names["result"]
    assert (result.status, result.stdout, result.counters["faults"]["zero-fill"]) == (0, b"touched 1024 pages\n", 1026)


def test_the_counters_are_those_of_stats_json(tmp_path):
    stats = tmp_path / "stats.json"
    cli = subprocess.run([*VMGAMES, "run", "--ram", "8M", "--swap", "16M", "--cpus", "2", "--stats-json", str(stats),
                          TOUCH, "3000"], capture_output=True, cwd=ROOT, timeout=120)
    result = vmgames.run(TOUCH, ["3000"], ram="8M", swap=16 << 20, cpus=2)
    assert cli.returncode == result.status == 0
    assert cli.stdout == result.stdout == b"touched 3000 pages\n"
    assert json.loads(stats.read_text()) == result.counters
    assert result.counters["freebsd_vmstat"]["swappgsout"] > 0


def test_a_trace_is_kept_and_its_events_are_the_counted_ones(tmp_path):
    result = vmgames.run(TOUCH, ["50"], trace=True)
    faults = list(result.events(["fault"]))
    assert len(faults) == result.counters["faults"]["total"] == 54
    assert {event["type"] for event in result.events()} >= {"fault", "pte", "page", "syscall", "proc"}
    written = tmp_path / "touch.trace"
    again = vmgames.run(TOUCH, ["50"], trace=str(written))
    assert again.trace_path == str(written)
    assert written.read_bytes() == Path(result.trace_path).read_bytes()    # deterministic, byte for byte
    with pytest.raises(ValueError, match="trace=True"):
        next(vmgames.run(TOUCH, ["1"]).events())


def test_signals_and_limits_are_results_not_errors():
    segv = vmgames.run(str(ROOT / "build" / "segv"))
    assert segv.status == 128 + 11 and segv.death.startswith("segv[1]: killed by SIGSEGV: write of 0x403000")
    limited = vmgames.run(TOUCH, ["100000"], max_instructions=10_000)
    assert (limited.status, limited.ended_by) == (124, "max-instructions")
    assert limited.counters["ended_by"] == "max-instructions"


@pytest.mark.parametrize("options, cli_words", [
    ({"ram": "1K"}, ["--ram", "1K"]),
    ({"cpus": 0}, ["--cpus", "0"]),
    ({"swap": 100}, ["--swap", "100"]),
    ({"root": "/no/such/dir"}, ["--root", "/no/such/dir"]),
    ({"env": ["NOEQUALS"]}, ["--env", "NOEQUALS"]),
    ({"max_instructions": 5, "fast": True}, ["--max-instructions", "5", "--fast"]),
])
def test_options_are_refused_in_the_command_lines_words(options, cli_words):
    cli = subprocess.run([*VMGAMES, "run", *cli_words, TOUCH], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert cli.returncode == 2
    with pytest.raises(vmgames.OptionError) as refused:
        vmgames.run(TOUCH, **options)
    assert cli.stderr == f"vmgames: {refused.value}\n"


def test_stdin_and_env_of_the_wrong_kind_are_refused():
    with pytest.raises(vmgames.OptionError, match="stdin is the bytes the program reads, not str"):
        vmgames.run(TOUCH, stdin="text")
    with pytest.raises(vmgames.OptionError, match="env is a list of NAME=VALUE strings"):
        vmgames.run(TOUCH, env="HOME=/")
    echoed = vmgames.run(str(ROOT / "build" / "touch"), ["3"], stdin=bytearray(b"ignored"), env=["A=1"])
    assert echoed.status == 0


def test_a_size_must_be_a_size_and_an_option_must_exist():
    with pytest.raises(vmgames.OptionError, match=r"--ram: not a size: 'lots' \(try 256M or 1G\)"):
        vmgames.run(TOUCH, ram="lots")
    with pytest.raises(vmgames.OptionError, match="no such option: rams .*the options are .*ram,"):
        vmgames.run(TOUCH, rams="8M")
    assert vmgames.parse_size("64KiB") == vmgames.parse_size(65536) == 65536


def test_a_program_that_cannot_be_started_has_a_shells_status(tmp_path):
    with pytest.raises(vmgames.CannotRun) as missing:
        vmgames.run(str(tmp_path / "absent"))
    assert missing.value.status == 127 and str(missing.value).endswith("absent: No such file or directory")
    text = tmp_path / "text"
    text.write_text("not a program\n")
    text.chmod(0o755)
    with pytest.raises(vmgames.CannotRun) as refused:
        vmgames.run(str(text))
    assert refused.value.status == 126 and "cannot execute" in str(refused.value)


def test_the_installed_distribution_claims_only_the_name_vmgames(tmp_path):
    """pip puts `vmgames` in site-packages, not `kernel`, `tools` and `emulator` beside other packages."""
    probe = ("import importlib.util as u, vmgames.kernel.vm.fault as f, vmgames.tools.cli as c; "
             "print([u.find_spec(n) is None for n in ('kernel', 'tools', 'emulator')], c.main.__module__)")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=60)
    assert found.stdout == "[True, True, True] vmgames.tools.cli.main\n", found.stderr


def test_the_readmes_example_runs_as_written(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    monkeypatch.chdir(ROOT)
    names: dict = {}
    exec(example, names)
    assert names["result"].status == 0
    assert sum(1 for _ in names["result"].events(["tlb"])) == names["result"].counters["tlb"]["invalidate_page"] + \
        names["result"].counters["tlb"]["invalidate_all"] + names["result"].counters["tlb"]["shootdowns"]


@pytest.mark.parametrize("call, message", [
    (lambda: vmgames.run(TOUCH, "12"), "args is a list of strings"),
    (lambda: vmgames.run(TOUCH, [10]), "args is a list of strings"),
    (lambda: vmgames.run(b"build/touch"), "program is a path, a string, not bytes"),
    (lambda: vmgames.run(TOUCH, trace=1), "trace is True, False or the path of a trace file, not 1"),
    (lambda: vmgames.run(TOUCH, skip_invalidation="cow"), "skip_invalidation is a list of reasons"),
    (lambda: vmgames.run(TOUCH, seed=-1), "--seed is a whole number that fits in 64 bits, not -1"),
    (lambda: vmgames.run(TOUCH, seed=1 << 64), "--seed is a whole number that fits in 64 bits"),
])
def test_arguments_of_the_wrong_kind_are_option_errors_not_tracebacks(call, message):
    with pytest.raises(vmgames.OptionError, match=re.escape(message)):
        call()


def test_a_path_object_is_a_program_and_event_types_are_checked():
    result = vmgames.run(Path(TOUCH), ["2"], trace=True)
    assert result.stdout == b"touched 2 pages\n"
    with pytest.raises(ValueError, match="types is a list of event types"):
        list(result.events("fault"))
    with pytest.raises(ValueError, match="types is a list of event types"):
        list(result.events(["faults"]))
