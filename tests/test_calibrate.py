"""`vmgames calibrate`: the host's prices measured and written as a cost file the model reads; the bundled 2006
prices; and every way the compiler or the benchmark can fail, said in one line."""

from __future__ import annotations

import math
import os
import re
import subprocess
import textwrap
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from vmgames.tools import costmodel
from vmgames.tools.cli import calibrate, main

from tests.programs import VMGAMES

ROOT = Path(__file__).resolve().parent.parent
PRICES = [f.name for f in fields(costmodel.Costs)]
# What any Linux host measures well above its noise (the mprotect slopes and the shootdown may not).
ROBUST = ["fault_ns", "copy_page_ns", "zero_page_ns", "syscall_ns", "cpu_ghz"]


def vmgames(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VMGAMES, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick calibration, its output and the file it wrote."""
    output = tmp_path_factory.mktemp("calibrate") / "costs.toml"
    return vmgames("calibrate", "--quick", "--output", str(output)), output


def test_a_quick_run_writes_a_cost_file_the_model_reads(quick_run):
    result, output = quick_run
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == f"wrote {output} (vmgames experiment zerocopy --costs {output})"
    costs = costmodel.load_costs(str(output))
    for name in PRICES:
        value = getattr(costs, name)
        assert math.isfinite(value) and value > 0, name
    assert set(tomllib.loads(output.read_text())) == set(PRICES)
    assert costs.cycles_per_instruction == costmodel.Costs().cycles_per_instruction     # never measured
    # The page is copied in the cache in copy_page_ns; from DRAM it costs more, and the file says how much.
    cold = float(re.search(r"copy_page_cold_ns = ([0-9,.]+)", output.read_text())[1].replace(",", ""))
    assert cold > costs.copy_page_ns


def test_the_file_says_where_when_and_what_each_price_is(quick_run):
    _, output = quick_run
    lines = output.read_text().splitlines()
    assert lines[0].startswith("# Prices for vmgames' cost model (tools/costmodel.py), measured on this host")
    assert any(line.startswith("# Host: ") and "CPUs" in line for line in lines)
    assert any("the median of 50 timed samples" in line for line in lines)
    for name in PRICES:
        at = next(index for index, line in enumerate(lines) if line.startswith(f"{name} = "))
        assert lines[at - 1].startswith("# "), f"{name} has no comment saying what it is"
    flush = lines.index(next(line for line in lines if line.startswith("flush_all_ns = ")))
    assert "not measured here" in " ".join(lines[flush - 3:flush])


def test_the_table_shows_every_price_beside_its_default(quick_run):
    result, _ = quick_run
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    for name in PRICES:
        assert name in rows, name
    default = f"{costmodel.Costs().fault_ns:,.0f}"
    assert rows["fault_ns"].split("│")[3].strip() == default
    assert rows["flush_all_ns"].split("│")[2].strip() == "-"        # not measured: the default is written
    for name in ROBUST:
        assert re.fullmatch(r"[0-9][0-9,.]*", rows[name].split("│")[2].strip()), rows[name]
    assert "Also measured" in result.stdout and "copy_page_cold_ns" in result.stdout


def test_cold_puts_the_copy_from_dram_in_copy_page_ns(tmp_path):
    output = tmp_path / "cold.toml"
    result = vmgames("calibrate", "--quick", "--cold", "--output", str(output))
    assert (result.returncode, result.stderr) == (0, "")
    text = output.read_text()
    hot = float(re.search(r"copy_page_hot_ns = ([0-9,.]+)", text)[1].replace(",", ""))
    assert costmodel.load_costs(str(output)).copy_page_ns > hot
    assert "# a 4 KiB memcpy from DRAM to DRAM" in text


def status_of(argv: list[str]) -> int:
    """vmgames' exit status for `argv`, run in this process (argparse's refusals exit)."""
    try:
        return main(argv)
    except SystemExit as leaving:
        return leaving.code


def test_on_one_cpu_the_shootdown_keeps_its_defaults_and_says_why(tmp_path):
    output = tmp_path / "one.toml"
    one_cpu = min(os.sched_getaffinity(0))
    result = subprocess.run([*VMGAMES, "calibrate", "--quick", "--output", str(output)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert (result.returncode, result.stderr) == (0, "")
    costs = costmodel.load_costs(str(output))
    assert (costs.shootdown_wait_ns, costs.ipi_ns) == (costmodel.Costs().shootdown_wait_ns, costmodel.Costs().ipi_ns)
    said = " ".join(line.removeprefix("# ") for line in output.read_text().splitlines())
    assert said.count("not measured here (this process may run on one CPU only, and a shootdown takes two): "
                      "the model's default") == 2


@pytest.mark.parametrize("argv, message", [
    (["--output", "/nonexistent/costs.toml"], "vmgames: --output /nonexistent/costs.toml: No such file or directory"),
    (["--output", "/"], "vmgames: --output /: Is a directory"),
    (["--repeat", "0"], "vmgames: --repeat must be from 1 to 1,000,000"),
    (["--repeat", "2000000"], "vmgames: --repeat must be from 1 to 1,000,000"),
    (["--repeat", "many"], "vmgames: argument --repeat: not a whole number: 'many'; see 'vmgames calibrate --help'"),
    (["--quick", "--repeat", "10"],
     "vmgames: argument --repeat: not allowed with argument --quick; see 'vmgames calibrate --help'"),
])
def test_bad_options_are_one_line_and_status_2(capsys, argv, message):
    assert status_of(["calibrate", *argv]) == 2
    assert capsys.readouterr() == ("", message + "\n")


def test_an_unwritable_output_is_refused_before_anything_is_compiled(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))     # reaching it would be another error
    (tmp_path / "file").write_text("")
    assert main(["calibrate", "--quick", "--output", str(tmp_path / "file" / "costs.toml")]) == 2
    assert capsys.readouterr() == ("", f"vmgames: --output {tmp_path / 'file' / 'costs.toml'}: Not a directory\n")


def test_no_compiler_on_path_is_one_line(tmp_path):
    result = vmgames("calibrate", "--quick", "--output", str(tmp_path / "costs.toml"),
                     env={"PATH": str(tmp_path), "CC": ""})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("vmgames: calibrate needs a C compiler: gcc is not on PATH "
                             "(install gcc, or name another in CC)\n")
    assert not (tmp_path / "costs.toml").exists()


def fake_compiler(tmp_path: Path, body: str) -> str:
    """An executable standing in for gcc: `body` is shell, run with the -o path in $out."""
    script = tmp_path / "fake-cc"
    script.write_text(textwrap.dedent("""\
        #!/bin/sh
        while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
        """) + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def benchmark_that(tmp_path: Path, script: str) -> str:
    """A fake compiler whose 'binary' is the shell `script`."""
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    program.chmod(0o755)
    return fake_compiler(tmp_path, f'cp {program} "$out"\n')


@pytest.mark.parametrize("compiler, message", [
    (lambda tmp: fake_compiler(tmp, """\
        echo "calibrate.c: In function 'main':" >&2
        echo "calibrate.c:1:1: error: injected failure" >&2
        exit 1
        """), "{cc} could not compile calibrate.c: calibrate.c:1:1: error: injected failure"),
    (lambda tmp: fake_compiler(tmp, "exit 4\n"), "{cc} could not compile calibrate.c: exit status 4"),
    (lambda tmp: benchmark_that(tmp, "echo 'calibrate: out of memory' >&2; exit 1\n"),
     "the calibration benchmark failed (exit status 1): calibrate: out of memory"),
    (lambda tmp: benchmark_that(tmp, "kill -KILL $$\n"), "the calibration benchmark was killed by SIGKILL"),
    (lambda tmp: benchmark_that(tmp, "echo 'stages 1'; echo 'figure fault_ns fast'\n"),
     "the calibration benchmark gave fault_ns as 'fast', not a number"),
    (lambda tmp: benchmark_that(tmp, "echo 'Segmentation fault'; sleep 60\n"),
     "the calibration benchmark printed a line it should not have: 'Segmentation fault'"),
])
def test_a_compiler_or_benchmark_that_fails_is_one_line_and_status_1(tmp_path, compiler, message):
    cc = compiler(tmp_path)
    result = vmgames("calibrate", "--quick", "--output", str(tmp_path / "costs.toml"), env={"CC": cc})
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"vmgames: {message.format(cc=cc)}\n")
    assert not (tmp_path / "costs.toml").exists()


def test_what_the_benchmark_could_not_measure_keeps_the_default_and_says_why(tmp_path):
    measurement = calibrate.Measurement(
        figures={"fault_ns": 900.0, "copy_page_ns": 40.0, "copy_page_cold_ns": 600.0, "invlpg_ns": -3.0,
                 "syscall_ns": 0.04},
        unavailable={"shootdown_wait_ns": "this process may run on one CPU only, and a shootdown takes two"})
    prices = {price.key: price for price in calibrate.choose_prices(measurement, cold=False)}
    assert (prices["fault_ns"].value, prices["fault_ns"].measured) == (900.0, True)
    assert (prices["invlpg_ns"].value, prices["invlpg_ns"].measured) == (costmodel.Costs().invlpg_ns, False)
    assert prices["invlpg_ns"].note == ("not measured here (measured -3, not above zero: the noise is larger than "
                                        "the figure): the model's default")
    assert prices["syscall_ns"].measured is False          # 0.04 rounds to 0.0: nothing to price with
    assert prices["shootdown_wait_ns"].note == ("not measured here (this process may run on one CPU only, and a "
                                                "shootdown takes two): the model's default")
    assert prices["pte_write_ns"].note == "not measured here (not measured): the model's default"
    cold = {price.key: price for price in calibrate.choose_prices(measurement, cold=True)}
    assert cold["copy_page_ns"].value == 600.0
    written = tmp_path / "costs.toml"
    written.write_text(calibrate.cost_file(list(prices.values()), measurement, 10, cold=False))
    assert costmodel.load_costs(str(written)) == costmodel.Costs(fault_ns=900.0, copy_page_ns=40.0)


def test_the_2006_prices_load_and_each_says_where_it_comes_from():
    path = ROOT / "costs" / "2006.toml"
    costs = costmodel.load_costs(str(path))
    assert costs.syscall_ns == 160 and costs.fault_ns == 2207 and costs.cpu_ghz == 2.765
    lines = path.read_text().splitlines()
    assert set(tomllib.loads(path.read_text())) == set(PRICES)
    for name in PRICES:
        at = next(index for index, line in enumerate(lines) if line.startswith(f"{name} = "))
        comment = []
        for line in reversed(lines[:at]):
            if not line.startswith("#"):
                break
            comment.insert(0, line)
        assert comment, f"{name} has no source"
        said = " ".join(comment)
        assert re.search(r"lmbench|Drepper|McKenney|Amit|Alex Shi|default", said), f"{name}: {said}"


def test_the_experiment_runs_under_the_2006_prices(tmp_path, capsys):
    status = main(["experiment", "zerocopy", "--workloads", "fresh", "--modes", "write,vmsplice", "--sizes", "4k",
                   "--total", "16k", "--csv", str(tmp_path / "zc.csv"), "--plot", str(tmp_path),
                   "--costs", str(ROOT / "costs" / "2006.toml")])
    out = capsys.readouterr().out
    assert status == 0
    assert ("Conclusion (estimated cycles per MiB under the cost model of tools/costmodel.py with fault_ns 2207, "
            "copy_page_ns 370, zero_page_ns 370, pte_write_ns 37.9, syscall_ns 160, cpu_ghz 2.765 from --costs;") in out
