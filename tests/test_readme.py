"""Every vmgames command in the README's code blocks parses with the real parser, and the cheap ones run as
written from the repository root (in a copy of it, so that their outputs land there)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from vmgames.tools.cli import parse_args

ROOT = Path(__file__).resolve().parent.parent
SHELL_OPERATORS = ("|", ">", ">>", "<", "&&", "||", ";", "2>", "2>&1")
# Minutes of work, a wait for a debugger, or a hundred megabytes of trace: parsed, not run.
NOT_RUN = ("vmgames experiment", "--gdb", "--break-on", "170000")


def readme_commands() -> list[tuple[str, int]]:
    """Each vmgames command of the README's code blocks, in order, with the exit status the README gives it
    (a `$ echo $?` line after it, or "status N" in its comment), else 0.

    In a block with `$ ` prompts the commands are the prompted lines; a block without is all commands if
    every line is a vmgames command, else it is output (the benchmarks' figures).
    """
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for language, block in re.findall(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M):
        if language:
            continue      # ```toml, ```python: not shell
        lines = block.splitlines()
        prompted = any(line.startswith("$ ") for line in lines)
        if not prompted and not all(line.startswith("vmgames ") for line in lines if line.strip()):
            continue
        for index, line in enumerate(lines):
            if prompted and not line.startswith("$ "):
                continue
            line = line.removeprefix("$ ")
            if not line.startswith("vmgames "):
                continue
            said = re.search(r"#.*\bstatus (\d+)", line)
            status = int(said[1]) if said else 0
            following = [later for later in lines[index + 1:] if later.startswith("$ ")][:1]
            if following == ["$ echo $?"]:
                status = int(lines[lines.index("$ echo $?", index) + 1])
            commands.append((line, status))
    return commands


def vmgames_words(command: str) -> list[str]:
    """The command's words for vmgames, up to any shell redirection or pipe; its # comment dropped."""
    words = shlex.split(command, comments=True)[1:]
    for index, word in enumerate(words):
        if word in SHELL_OPERATORS or word.startswith(("2>", ">")):
            return words[:index]
    return words


COMMANDS = readme_commands()
# Commands quoted in the prose (`vmgames run --gdb 1234 PROG`): parsed too, with their placeholders.  A
# command's bare name (`vmgames report`) is not a command line.
QUOTED = [" ".join(span.split()) for span in re.findall(r"`(vmgames [^`]+)`",
                                                         (ROOT / "README.md").read_text(encoding="utf-8"))
          if len(span.split()) >= 3]


def test_the_readme_has_commands_to_check():
    assert len(COMMANDS) >= 15 and len(QUOTED) >= 10
    assert ("vmgames run build/segv", 139) in COMMANDS


@pytest.mark.parametrize("command", QUOTED)
def test_every_command_quoted_in_the_prose_parses(command, capsys):
    try:
        parse_args(vmgames_words(command))
    except SystemExit as leaving:
        assert leaving.code == 0, capsys.readouterr().err


@pytest.mark.parametrize("command", [command for command, _ in COMMANDS])
def test_every_readme_command_parses(command, capsys):
    try:
        args = parse_args(vmgames_words(command))
    except SystemExit as leaving:     # --help and --version say their piece and leave with 0
        assert leaving.code == 0, capsys.readouterr().err
        return
    if args.command == "run" and not args.program.endswith(".s"):
        # The program is one the repository builds (make userland), or one an earlier command writes.
        built = (ROOT / args.program).exists() or any(f"-o {args.program}" in earlier for earlier, _ in COMMANDS)
        assert built, f"{args.program}: no such program"


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory):
    """What the README's commands read (the built programs, the sources, docs), in a directory of its own."""
    copy = tmp_path_factory.mktemp("repository")
    for name in ("build", "userland", "docs", "sweeps"):
        shutil.copytree(ROOT / name, copy / name)
    return copy


def test_the_cheap_readme_commands_run_as_written(repository_copy):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for command, status in COMMANDS:     # in order: an earlier one writes what a later one reads
        if any(marker in command for marker in NOT_RUN):
            continue
        result = subprocess.run(["bash", "-c", command], cwd=repository_copy, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == status, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, command
        ran += 1
    assert ran >= 10
