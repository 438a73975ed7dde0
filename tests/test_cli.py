"""The command line: where the options end, what is refused, bounded runs, the host's streams failing."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vmgames.tools import trace_schema
from vmgames.tools.cli import main, parse_args

from tests.programs import EXIT_0, EXIT_WITH_NEGATED_RAX, EXIT_WITH_RDI, FORK, VMGAMES, WAIT4_RDI

ROOT = Path(__file__).resolve().parent.parent
YES = str(ROOT / "build" / "yes")
TIMEOUT = 60     # seconds any one vmgames may take here before the test fails

LOOP = """
.text
_start:
    jmp _start
"""

# Forks for ever: the process table fills up, and every fork after that fails with EAGAIN.
FORK_BOMB = f"""
.text
_start:
{FORK}
    jmp _start
"""

# execve(argv[0], argv, envp) for ever.
EXEC_SELF = f"""
.text
_start:
    mov rax, [rsp]
    mov rdi, [rsp + 8]
    lea rsi, [rsp + 8]
    lea rdx, [rsp + 8 * rax + 16]
    mov eax, 59
    syscall
{EXIT_WITH_NEGATED_RAX}"""

# The parent sleeps in wait4 while its child loops: the limit comes while a process is blocked.
WAIT_FOR_A_LOOPING_CHILD = f"""
.text
_start:
{FORK}
    test rax, rax
    jz child
    mov rdi, -1
{WAIT4_RDI}
{EXIT_0}
child:
    jmp child
"""


ANNOUNCE = """
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + ready]
    mov edx, 6
    syscall
"""


def read_stdin(announce: bool = False) -> str:
    """Reads up to 16 bytes of fd 0 and exits with the count, or with the errno if the read failed;
    first says "ready" on stdout if `announce`."""
    return f"""
.text
_start:
{ANNOUNCE if announce else ""}
    xor eax, eax
    xor edi, edi
    lea rsi, [rip + buffer]
    mov edx, 16
    syscall
    test rax, rax
    jns done
    neg rax
done:
    mov rdi, rax
{EXIT_WITH_RDI}
.section .rodata
ready: .ascii "ready\\n"
.bss
buffer: .space 16
"""


# Says "ready" on stdout, then loops for ever.
LOOP_WHEN_READY = f"""
.text
_start:
{ANNOUNCE}
spin:
    jmp spin
.section .rodata
ready: .ascii "ready\\n"
"""


def vmgames(*args: str, **options) -> subprocess.CompletedProcess:
    options.setdefault("stdout", subprocess.PIPE)
    options.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([*VMGAMES, *args], cwd=ROOT, timeout=TIMEOUT, **options)


def in_shell(command: str) -> subprocess.CompletedProcess:
    """`command`, where $VMGAMES is this vmgames, run by bash (for redirections Popen cannot make)."""
    return subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, timeout=TIMEOUT,
                          env={**os.environ, "VMGAMES": f"{sys.executable} -m tools.cli"})


def assert_clean(stderr: bytes | str) -> None:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and "Exception ignored" not in text, text


# Where the options end.

@pytest.mark.parametrize("argv, program, arguments, stats", [
    (["--stats", "prog", "--stats", "-x"], "prog", ["--stats", "-x"], True),
    (["prog", "--stats"], "prog", ["--stats"], False),
    (["prog", "--", "-v"], "prog", ["-v"], False),                 # the older form: the -- is dropped
    (["prog", "--", "--", "x"], "prog", ["--", "x"], False),       # only the one right after the program
    (["prog", "a", "--", "b"], "prog", ["a", "--", "b"], False),
    (["--stats", "--", "prog", "--", "-v"], "prog", ["-v"], True),
    (["--", "-prog", "-v"], "-prog", ["-v"], False),
    (["--env", "A=1", "--ram=16M", "sh", "-c", "echo a"], "sh", ["-c", "echo a"], False),
    (["--trace", "t.jsonl", "prog", "-h"], "prog", ["-h"], False),
])
def test_options_end_at_the_program(argv, program, arguments, stats):
    args = parse_args(["run", *argv])
    assert (args.program, args.args, args.stats) == (program, arguments, stats)


def test_a_program_argument_that_looks_like_ours_is_the_program_s():
    yes = subprocess.Popen([*VMGAMES, "run", YES, "--stats", "-c", "echo a"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert yes.stdout.readline() == b"--stats -c echo a\n"
    yes.stdout.close()
    assert yes.wait(TIMEOUT) == 128 + signal.SIGPIPE
    stderr = yes.stderr.read().decode()
    assert stderr == "vmgames: yes[1]: killed by SIGPIPE: write to a host pipe with no reader\n"   # no table


@pytest.mark.parametrize("argv, message", [
    (["run"], "vmgames: which program? (usage: vmgames run [OPTIONS] [--] PROG [ARGS...]); "
              "see 'vmgames run --help'\n"),
    (["run", "--stat", YES], "vmgames: unrecognized arguments: --stat; see 'vmgames run --help'\n"),
    (["run", "--ram"], "vmgames: argument --ram: expected one argument; see 'vmgames run --help'\n"),
    (["bogus"], None),
])
def test_a_bad_command_line_is_one_line_and_status_2(argv, message):
    result = vmgames(*argv, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("vmgames: ")
    if message:
        assert result.stderr == message


def test_help_explains_the_form_the_limits_and_the_statuses():
    result = vmgames("run", "--help", text=True)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for said in ("usage: vmgames run [OPTIONS] [--] PROG [ARGS...]", "one right after PROG is dropped",
                 "--max-instructions N", "--timeout SECONDS", "--max-procs N", "124", "130", "141", "128+N",
                 "--fast keeps no instruction clock"):
        assert said in text, said


def test_version_is_the_installed_distribution_s():
    result = vmgames("--version", text=True)
    assert (result.returncode, result.stdout) == (0, f"vmgames {importlib.metadata.version('vmgames')}\n")


@pytest.mark.parametrize("option, message", [
    (["--root", "/nonexistent/dir"], "--root /nonexistent/dir: No such file or directory"),
    (["--root", "README.md"], "--root README.md: Not a directory"),
    (["--env", "NOEQUALS"], "--env takes NAME=VALUE, not 'NOEQUALS'"),
    (["--env", "=value"], "--env takes NAME=VALUE, not '=value'"),
    (["--ram", "99999999999999G"], "argument --ram: '99999999999999G' is too large"),
    (["--ram=-1G"], "argument --ram: not a size: '-1G' (try 256M or 1G)"),
    (["--ram", "1.5G"], "argument --ram: not a size: '1.5G' (try 256M or 1G)"),
    (["--ram", "0x100000"], "argument --ram: not a size: '0x100000' (try 256M or 1G)"),
    (["--ram", "1_000M"], "argument --ram: not a size: '1_000M' (try 256M or 1G)"),
    (["--ram", "\u0661\u0662M"], "argument --ram: not a size: '\u0661\u0662M' (try 256M or 1G)"),
    (["--ram", "12345"], "--ram must be at least 1M and a multiple of 4K, not 12345"),
    (["--ram", "1048577"], "--ram must be at least 1M and a multiple of 4K, not 1048577"),
    (["--wire-buffer", "9999999999999999999999"], "argument --wire-buffer: '9999999999999999999999' is too large"),
    (["--wire-buffer", "4k"], "--wire-buffer must be at least 8K (two pages)"),
    (["--quantum", "-5"], "argument --quantum: not a whole number: '-5'"),
    (["--quantum", "0"], "--quantum must be positive"),
    (["--max-instructions", "1e6"], "argument --max-instructions: not a whole number: '1e6'"),
    (["--prezero", "lots"], "argument --prezero: not a whole number: 'lots'"),
    (["--max-procs", "0"], "--max-procs must be positive"),
    (["--max-procs", "5000000"], "--max-procs must be at most 4,194,304 (Linux's PID_MAX_LIMIT)"),
    (["--timeout", "0"], "argument --timeout: not a duration: '0' (try 10, 2.5 or 1m; more than 0)"),
    (["--timeout", "nan"], "argument --timeout: not a duration: 'nan' (try 10, 2.5 or 1m; more than 0)"),
    (["--timeout", "1y"], "argument --timeout: not a duration: '1y' (try 10, 2.5 or 1m; more than 0)"),
    (["--fast", "--max-instructions", "5"],
     "--max-instructions needs the instruction clock: it cannot be used with --fast (use --timeout)"),
    (["--gdb", "0", "--timeout", "5"],
     "--gdb cannot be used with --max-instructions or --timeout (gdb stops the run as it likes)"),
])
def test_bad_options_are_refused_in_one_line(option, message):
    result = vmgames("run", *option, "build/hello", text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(f"vmgames: {message}")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_more_ram_than_the_host_has_is_refused():
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    too_much = (host // 4096 + 1) * 4096
    result = vmgames("run", "--ram", str(too_much), "build/hello", text=True)
    assert result.returncode == 2
    assert re.fullmatch(r"vmgames: --ram [\d.]+G is more than this host's memory \([\d.]+G\)\n", result.stderr)


def test_ram_the_host_will_not_map_is_refused():
    """An address-space limit makes the RAM buffer's mmap fail: one line, not a MemoryError."""
    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = vmgames("run", "--ram", "1G", "build/hello", text=True, preexec_fn=limit_address_space)
    assert result.returncode == 2
    assert result.stderr == "vmgames: --ram 1.0G: the host cannot give that much memory (Cannot allocate memory)\n"


# Bounded runs.

def _run_json(tmp_path, *argv: str) -> tuple[int, dict, list[dict]]:
    """main(["run", --stats-json, --trace, *argv]): the status, the stats and the trace's events."""
    stats, trace = tmp_path / "stats.json", tmp_path / "trace.jsonl"
    status = main(["run", "--stats-json", str(stats), "--trace", str(trace), *argv])
    header, *events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert trace_schema.validate_header(header) == []
    assert [e for e in events if trace_schema.validate_event(e)] == []
    return status, json.loads(stats.read_text()), events


def _assert_every_process_exited(events: list[dict], signal_number: int) -> list[int]:
    """Every process the trace saw has exactly one exit, killed by `signal_number`, and nothing after it."""
    pids = sorted(({e["pid"] for e in events} | {e["child"] for e in events if "child" in e}) - {0})   # 0: the kernel
    exits = {}
    for index, event in enumerate(events):
        if event["type"] == "proc" and event["kind"] == "exit":
            assert event["pid"] not in exits
            exits[event["pid"]] = (index, event["signal"])
    assert sorted(exits) == pids
    assert {sig for _, sig in exits.values()} == {signal_number}
    for pid, (index, _) in exits.items():
        assert not [e for e in events[index + 1:] if e["pid"] == pid and e["type"] in ("syscall", "fault")]
    return pids


def test_max_instructions_stops_an_endless_loop_exactly(build, tmp_path, capsys):
    status, stats, events = _run_json(tmp_path, "--max-instructions", "1000", "--stats", build(LOOP))
    assert status == 124
    assert stats["exit_status"] == 124 and stats["ended_by"] == "max-instructions"
    assert stats["instructions"] == 1000
    err = capsys.readouterr().err
    assert re.search(r"^vmgames: --max-instructions 1,000 reached after \d+\.\d s of host time, "
                     r"at t = 1,000 \(1,000 instructions retired\): 1 process killed$", err, re.M)
    assert "instructions retired" in err and "killed by" not in err     # the table, and one line only
    _assert_every_process_exited(events, signal.SIGKILL)
    assert events[-1]["t"] == 1000


def test_the_same_limit_gives_the_same_trace(build, tmp_path):
    program = build(FORK_BOMB)
    traces = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.jsonl"
        assert main(["run", "--max-instructions", "20000", "--max-procs", "5", "--trace", str(path), program]) == 124
        traces.append(path.read_bytes())
    assert traces[0] == traces[1]


def test_a_fork_bomb_fills_max_procs_and_the_limit_kills_them_all(build, tmp_path, capsys):
    status, stats, events = _run_json(tmp_path, "--max-procs", "8", "--max-instructions", "100000", build(FORK_BOMB))
    assert status == 124
    assert stats["processes"]["fork"] == 7
    assert stats["syscalls"]["fork"] > 7          # the rest failed with EAGAIN
    assert sorted(_assert_every_process_exited(events, signal.SIGKILL)) == list(range(1, 9))
    assert capsys.readouterr().err.rstrip().endswith(": 8 processes killed")


def test_max_procs_bounds_the_process_table(build, tmp_path):
    status, stats, _ = _run_json(tmp_path, "--max-procs", "3", "--max-instructions", "50000", build(FORK_BOMB))
    assert status == 124 and stats["processes"]["fork"] == 2


def test_a_program_that_execs_itself_for_ever_is_stopped(build, tmp_path, monkeypatch, capsys):
    build(EXEC_SELF, "again")
    monkeypatch.chdir(tmp_path)
    status, stats, events = _run_json(tmp_path, "--max-instructions", "5000", "--stats", "again")
    assert status == 124 and stats["syscalls"]["execve"] > 100
    _assert_every_process_exited(events, signal.SIGKILL)


def test_a_limit_kills_a_process_asleep_in_wait4(build, tmp_path, capsys):
    status, _, events = _run_json(tmp_path, "--max-instructions", "200000", build(WAIT_FOR_A_LOOPING_CHILD))
    assert status == 124
    assert _assert_every_process_exited(events, signal.SIGKILL) == [1, 2]
    parent_calls = [e for e in events if e["pid"] == 1 and e["type"] == "syscall"]
    assert parent_calls[-1]["kind"] == "wait4" and parent_calls[-1]["blocked"] is True
    assert capsys.readouterr().err.rstrip().endswith(": 2 processes killed")


def test_timeout_stops_a_process_blocked_reading_a_stdin_that_never_comes(build, tmp_path):
    trace = tmp_path / "t.jsonl"
    # Its stdin is a pipe nobody writes to, or closes.
    vm = subprocess.Popen([*VMGAMES, "run", "--timeout", "0.5", "--stats", "--trace",
                           str(trace), build(read_stdin())], cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert vm.wait(TIMEOUT) == 124
    finally:
        vm.kill()
        vm.stdin.close()
    stderr = vm.stderr.read().decode()
    assert re.search(r"^vmgames: --timeout 0.5s reached after 0\.\d s of host time, at t = \d+ "
                     r"\(\d+ instructions retired\): 1 process killed$", stderr, re.M)
    assert "instructions retired" in stderr.split("killed", 1)[1]     # then the table
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    _assert_every_process_exited(events, signal.SIGKILL)
    last_call = [e for e in events if e["type"] == "syscall"][-1]
    assert (last_call["kind"], last_call["blocked"]) == ("read", True)      # killed asleep in its read


def test_timeout_stops_a_writer_to_a_host_pipe_nobody_reads():
    vm = subprocess.Popen([*VMGAMES, "run", "--timeout", "1", YES], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert vm.wait(TIMEOUT) == 124       # its stdout never read
    finally:
        vm.kill()
    stderr = vm.stderr.read().decode()
    assert re.fullmatch(r"vmgames: --timeout 1s reached after 1\.\d s of host time, at t = [\d,]+ "
                        r"\([\d,]+ instructions retired\): 1 process killed\n", stderr), stderr


def test_only_the_timeout_ends_a_run_blocked_on_the_host(build, tmp_path):
    """No instruction retires while the host blocks: --max-instructions never comes (README, Bounded runs)."""
    reader = subprocess.Popen([*VMGAMES, "run", "--max-instructions", "1000", "--timeout",
                               "1", "--stats-json", str(tmp_path / "reader.json"), build(read_stdin())], cwd=ROOT,
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = in_shell(f'$VMGAMES run --max-instructions 100000000 --timeout 1 --stats-json {tmp_path}/writer.json '
                      'build/yes | sleep 4')
    try:
        assert reader.wait(TIMEOUT) == 124
    finally:
        reader.kill()
        reader.stdin.close()
    assert reader.stderr.read().decode().startswith("vmgames: --timeout 1s reached after 1.")
    assert writer.stderr.decode().startswith("vmgames: --timeout 1s reached after 1.")
    for name, most in (("reader", 1000), ("writer", 100_000_000)):
        stats = json.loads((tmp_path / f"{name}.json").read_text())
        assert stats["ended_by"] == "timeout" and stats["instructions"] < most / 10, name


def test_timeout_in_fast_mode_stops_an_endless_loop(build):
    result = vmgames("run", "--fast", "--timeout", "0.3", build(LOOP), text=True)
    assert result.returncode == 124
    assert re.fullmatch(r"vmgames: --timeout 0.3s reached after 0\.\d s of host time "
                        r"\(--fast keeps no instruction clock\): 1 process killed\n", result.stderr)


@pytest.mark.parametrize("source, fast", [(LOOP_WHEN_READY, False), (LOOP_WHEN_READY, True),
                                          (read_stdin(announce=True), False)])
def test_ctrl_c_ends_the_run_with_status_130_and_the_stats(build, tmp_path, source, fast):
    trace = tmp_path / "t.jsonl"
    vm = subprocess.Popen([*VMGAMES, "run", "--stats", *(["--fast"] if fast else []),
                           "--trace", str(trace), build(source)], cwd=ROOT, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert vm.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        vm.send_signal(signal.SIGINT)
        assert vm.wait(TIMEOUT) == 130
    finally:
        vm.kill()
    stderr = vm.stderr.read().decode()
    assert_clean(stderr)
    assert re.search(r"^vmgames: interrupted \(SIGINT\) after \d+\.\d s of host time.*: 1 process killed$",
                     stderr, re.M)
    assert "instructions retired" in stderr.split("killed", 1)[1]
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    _assert_every_process_exited(events, signal.SIGINT)


# The host's streams failing.

def test_a_reader_that_goes_is_sigpipe_for_the_writer_and_status_141():
    result = in_shell('$VMGAMES run --stats build/yes | head -1; echo "status ${PIPESTATUS[0]}"')
    assert result.stdout == b"y\nstatus 141\n"
    assert result.stderr.startswith(b"vmgames: yes[1]: killed by SIGPIPE: write to a host pipe with no reader\n")
    assert b"instructions retired" in result.stderr          # --stats still printed
    assert_clean(result.stderr)


def test_the_host_pipe_behaves_as_linux_s():
    """The same `yes | head -1`, natively: yes is a static Linux program."""
    result = in_shell('build/yes | head -1; echo "status ${PIPESTATUS[0]}"')
    assert result.stdout == b"y\nstatus 141\n"


@pytest.mark.parametrize("redirection, status", [("> /dev/full", 28), (">&-", 9)])
def test_a_full_device_is_enospc_and_a_closed_stdout_ebadf(redirection, status):
    native = in_shell(f"build/yes {redirection}")
    result = in_shell(f"$VMGAMES run build/yes {redirection}")
    assert native.returncode == result.returncode == status      # yes exits with the write's errno
    assert result.stderr == b""


@pytest.mark.parametrize("redirection, status", [("<&-", 9), ("< /dev/null", 0)])
def test_a_closed_stdin_is_ebadf(build, redirection, status):
    result = in_shell(f"$VMGAMES run {build(read_stdin())} {redirection}")
    assert (result.returncode, result.stderr) == (status, b"")


def test_files_vmgames_opens_never_take_a_closed_standard_fd(build, tmp_path):
    """With fd 1 closed, the trace is the first file opened: the guest's stdout must not land in it."""
    trace = tmp_path / "t.jsonl"
    result = in_shell(f"$VMGAMES run --trace {trace} build/hello >&-")
    assert (result.returncode, result.stderr) == (0, b"")
    lines = trace.read_text().splitlines()
    assert all(line.startswith("{") for line in lines) and "Hello" not in trace.read_text()
    events = [json.loads(line) for line in lines[1:]]
    assert [e["result"] for e in events if (e["type"], e["kind"]) == ("syscall", "write")] == [-9]


@pytest.mark.parametrize("redirection", ["2>&-", "2> /dev/full"])
def test_our_messages_on_a_closed_or_full_stderr_are_lost_quietly(redirection):
    result = in_shell(f"$VMGAMES run --stats build/segv {redirection}; echo \"status $?\"")
    assert result.stdout.endswith(b"status 139\n")
    result = in_shell(f"$VMGAMES run --env NOEQUALS build/hello {redirection}; echo \"status $?\"")
    assert result.stdout == b"status 2\n"


def test_our_messages_on_a_stderr_whose_reader_has_gone_are_lost_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = vmgames("run", "--stats", "build/hello", stderr=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stdout) == (0, b"Hello, world!\n")    # not 120, Python's flush failing



def test_stdout_and_stderr_both_into_a_pipe_whose_reader_has_gone():
    """The writer dies of SIGPIPE; our own line and --stats go to the same dead pipe: lost, status still 141."""
    result = in_shell('$VMGAMES run --stats build/yes 2>&1 | head -1; echo "status ${PIPESTATUS[0]}"')
    assert (result.stdout, result.stderr) == (b"y\nstatus 141\n", b"")


def test_asm_output_on_a_full_device_is_one_line(capsys):
    assert main(["asm", str(ROOT / "userland" / "hello.s"), "-o", "/dev/full"]) == 1
    assert capsys.readouterr().err == "vmgames: /dev/full: No space left on device\n"


# A program that cannot be run: one line and a shell's status (127 not there, 126 there but not runnable).

def test_a_program_without_an_execute_bit_is_refused_as_a_shell_refuses_it(tmp_path):
    program = tmp_path / "hello"
    program.write_bytes((ROOT / "build" / "hello").read_bytes())
    program.chmod(0o644)
    shell = subprocess.run(["bash", "-c", str(program)], capture_output=True, text=True)
    result = vmgames("run", "--stats", str(program), text=True)
    assert (result.returncode, result.stdout) == (shell.returncode, "") == (126, "")
    assert result.stderr == f"vmgames: {program}: Permission denied\n"     # and no --stats: nothing ran
    program.chmod(0o744)                                                    # any execute bit will do
    assert vmgames("run", str(program), text=True).stdout == "Hello, world!\n"


def test_a_source_needs_no_execute_bit_and_a_missing_one_is_a_missing_program(tmp_path):
    source = tmp_path / "hello.s"
    source.write_text((ROOT / "userland" / "hello.s").read_text())
    source.chmod(0o444)
    assert vmgames("run", str(source), text=True).stdout == "Hello, world!\n"
    for missing in ("nonexist.s", "./nonexist"):
        result = vmgames("run", "--stats", missing, text=True)
        assert (result.returncode, result.stdout) == (127, "")
        assert result.stderr == f"vmgames: {missing}: No such file or directory\n"


@pytest.mark.parametrize("path, message", [
    ("build/hello/x", "Not a directory"), ("build/hello/x.s", "Not a directory"), ("tests", "Is a directory"),
])
def test_what_is_there_but_cannot_run_is_126_with_the_shell_s_reason(tmp_path, path, message):
    directory = tmp_path / "dir.s"
    directory.mkdir()
    for name in (path, str(directory)):
        shell = subprocess.run(["bash", "-c", name if "/" in name else f"./{name}"], cwd=ROOT, capture_output=True,
                               text=True)
        result = vmgames("run", name, text=True)
        assert result.returncode == shell.returncode == 126
        reason = message if name == path else "Is a directory"
        assert result.stderr == f"vmgames: {name}: {reason}\n" and f": {reason}\n" in shell.stderr
