"""Nothing the guest reads comes from the host: rdtsc, rdtscp, cpuid, rdrand and rdseed.

The TSC is virtual time (emulator/determinism.py), CPUID a fixed table
(emulator/cpuid.py), rdrand and rdseed a generator seeded by --seed; so the
same program gives the same bytes, output and trace, run after run.
"""

import json
import os
import shutil
import subprocess

import pytest
import unicorn
from unicorn import x86_const as X
from vmgames.emulator import cpuid
from vmgames.emulator.determinism import SplitMix64

from tests.programs import EXIT_WITH_RDI, VMGAMES
from tests.test_c_programs import CFLAGS, USERLAND_C

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def timestamps(tmp_path_factory):
    """userland/c/timestamps.c, compiled."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the C tests (.ci/run installs it)")
    path = str(tmp_path_factory.mktemp("c") / "timestamps")
    subprocess.run(["gcc", *CFLAGS, "-o", path, os.path.join(USERLAND_C, "timestamps.c")], check=True)
    return path


def vmgames(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VMGAMES, *args], capture_output=True, cwd=ROOT, timeout=120)


def test_a_program_reading_the_tsc_cpuid_and_rdrand_gives_the_same_output_and_trace_twice(timestamps, tmp_path):
    first = vmgames("run", "--trace", str(tmp_path / "first.jsonl"), timestamps)
    second = vmgames("run", "--trace", str(tmp_path / "second.jsonl"), timestamps)
    assert first.returncode == second.returncode == 0 and first.stderr == b""
    assert first.stdout == second.stdout
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()
    lines = first.stdout.decode().splitlines()
    # Two readings, then rdtscp's with TSC_AUX 0: a few instructions apart (how many is up to gcc).
    readings = [int(line.split()[1]) for line in lines[:3]]
    assert 0 < readings[0] < readings[1] < readings[2] < readings[0] + 20 and lines[2].split()[2:] == ["aux", "0"]
    assert lines[3:] == [
        "tsc across 1000 loops: 2004",          # 3 + 2 * 1000 instructions between, and the second rdtsc
        "cpuid 0: max leaf 13, GenuineIntel",
        # SplitMix64's published sequence for seed 0, one value per instruction, narrowed to the destination.
        "rdrand64 0xe220a8397b1dcdaf cf 1",
        "rdrand32 0x00000000a1b965f4 cf 1",
        "rdrand16 0xffffffffffff454f cf 1",
        "rdseed64 0xf88bb8a8724c81ec cf 1",
        "rdseed16 0xffffffffffff749b cf 1",
    ]


def test_the_seed_chooses_the_random_values_and_nothing_else(timestamps):
    default = vmgames("run", timestamps)
    same = vmgames("run", "--seed", "0", timestamps)
    other = vmgames("run", "--seed", "7", timestamps)
    assert default.stdout == same.stdout
    random_lines = [line for line in other.stdout.decode().splitlines() if line.startswith("rd") and "cf" in line]
    default_lines = default.stdout.decode().splitlines()
    assert len(random_lines) == 5 and not set(random_lines) & set(default_lines)
    assert random_lines[0] == f"rdrand64 {SplitMix64(7).next():#018x} cf 1"
    # The TSC and CPUID do not depend on the seed.
    assert other.stdout.decode().splitlines()[:5] == default_lines[:5]


def test_the_seed_is_recorded_in_the_trace_header(build, tmp_path):
    program = build(".text\n_start:\n    xor edi, edi\n" + EXIT_WITH_RDI)
    assert vmgames("run", "--seed", "18446744073709551615", "--trace", str(tmp_path / "t.jsonl"),
                   program).returncode == 0
    header = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert header["options"]["seed"] == 2**64 - 1


@pytest.mark.parametrize("seed, message", [("-1", "not a whole number: '-1'"),
                                           ("18446744073709551616", "out of range"),
                                           ("x", "not a whole number: 'x'")])
def test_a_bad_seed_is_refused_in_one_line(seed, message):
    result = vmgames("run", f"--seed={seed}", "build/hello")
    assert result.returncode == 2
    assert message in result.stderr.decode() and len(result.stderr.splitlines()) == 1


def test_the_tsc_is_the_number_of_instructions_retired(run):
    # The first instruction is number 1, and rdtsc counts itself.
    assert run(".text\n_start:\n    rdtsc\n    mov edi, eax\n" + EXIT_WITH_RDI).status == 1
    assert run(".text\n_start:\n" + "    nop\n" * 20 + "    rdtsc\n    mov edi, eax\n" + EXIT_WITH_RDI).status == 21
    # rdtscp: the same clock, the high half in EDX, and TSC_AUX (CPU 0) in ECX whatever it held.
    result = run(".text\n_start:\n    mov rcx, -1\n    mov rdx, -1\n    rdtscp\n    mov edi, eax\n"
                 "    or rdi, rdx\n    shl rcx, 8\n    or rdi, rcx\n" + EXIT_WITH_RDI)
    assert result.status == 3


def test_each_hooked_or_emulated_instruction_retires_exactly_once(run):
    reading = ["rdtsc", "rdtscp", "xor eax, eax", "cpuid", "rdrand rax", "rdseed bx", "rdrand r9d"]
    program = ".text\n_start:\n{}\n    xor edi, edi\n" + EXIT_WITH_RDI
    with_them = run(program.format("\n".join(f"    {i}" for i in reading)))
    with_nops = run(program.format("\n".join("    nop" for _ in reading)))
    assert with_them.status == with_nops.status == 0
    assert with_them.kernel.machine.retired == with_nops.kernel.machine.retired == len(reading) + 3


def test_the_tsc_keeps_counting_while_the_cpu_idles(run):
    # Writing 1 MiB to the slow wire makes the only process wait, and the CPU idle, for most of it.
    result = run("""
.text
_start:
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    mov eax, 2
    lea rdi, [rip + wire]
    mov esi, 1
    syscall
    mov rbx, rax
    mov r13d, 16
again:
    mov eax, 1
    mov rdi, rbx
    lea rsi, [rip + buffer]
    mov edx, 65536
    syscall
    dec r13d
    jnz again
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r12
    mov [rip + buffer], rax
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + buffer]
    mov edx, 8
    syscall
    xor edi, edi
""" + EXIT_WITH_RDI + """
.section .rodata
wire: .asciz "/dev/wire"
.bss
buffer: .zero 65536
""")
    assert result.status == 0
    elapsed = int.from_bytes(result.stdout, "little")
    machine = result.kernel.machine
    # More time passed between the readings than the whole run retired instructions: the rest was idle.
    assert machine.retired < 10_000 < 100_000 < elapsed <= machine.now == machine.retired + machine.idle_time


def test_rdrand_sets_cf_and_clears_the_other_arithmetic_flags(run):
    # xor sets ZF and PF, stc CF; rdrand leaves CF alone of the six.
    program = (".text\n_start:\n    xor eax, eax\n    stc\n    {}\n    pushfq\n    pop rdi\n    and edi, 0x8d5\n"
               + EXIT_WITH_RDI)
    assert run(program.format("rdrand rax")).status == 1
    assert run(program.format("rdseed r15w")).status == 1


def test_rdrand_and_rdseed_write_the_register_encoded_at_its_width(run):
    result = run("""
.text
_start:
    mov eax, 5
    mov r9, -1
    mov r15, -1
    rdrand r9d
    rdseed r15w
    mov [rip + out], r9
    mov [rip + out + 8], r15
    mov [rip + out + 16], rax
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + out]
    mov edx, 24
    syscall
    xor edi, edi
""" + EXIT_WITH_RDI + ".bss\nout: .zero 24\n")
    generator = SplitMix64(0)
    first, second = generator.next(), generator.next()
    r9, r15, rax = (int.from_bytes(result.stdout[i:i + 8], "little") for i in (0, 8, 16))
    assert r9 == first & 0xFFFF_FFFF                    # a 32-bit write clears the upper half
    assert r15 == 0xFFFF_FFFF_FFFF_0000 | second & 0xFFFF   # a 16-bit write keeps it
    assert rax == 5


@pytest.mark.parametrize("encoding, what", [("0x48, 0x0f, 0xc7, 0x30", "memory operand"),
                                            ("0xf0, 0x48, 0x0f, 0xc7, 0xf0", "lock prefix"),
                                            ("0xf3, 0x0f, 0xc7, 0xf8", "rdpid, which the CPU lacks")])
def test_forms_the_hardware_refuses_stay_invalid(run, encoding, what):
    result = run(f".text\n_start:\n    xor eax, eax\n    .byte {encoding}\n    xor edi, edi\n" + EXIT_WITH_RDI)
    assert result.status == 128 + 4, what
    assert result.kernel.machine.retired == 1      # the refused instruction did not retire


def _host_has(*flags: str) -> bool:
    with open("/proc/cpuinfo") as cpuinfo:
        return set(flags) <= set(cpuinfo.read().split())


@pytest.mark.skipif(not _host_has("rdrand", "rdseed", "rdtscp"), reason="the host's CPU has nothing to compare with")
def test_operand_sizes_flags_and_cpuid_bits_behave_as_on_the_host(run, timestamps):
    host = subprocess.run([timestamps, "semantics"], capture_output=True, timeout=60)
    result = run(timestamps, "semantics")
    assert result.stdout == host.stdout
    assert result.status == host.returncode == 0
    assert result.stdout.count(b": yes") == 11


def test_cpuid_answers_from_the_fixed_table(run):
    # Leaf 1: RDRAND advertised; the upper halves of all four registers are cleared.
    program = (".text\n_start:\n    mov rbx, -1\n    mov rdx, -1\n    mov rax, 0x100000001\n    cpuid\n"
               "    shr ecx, 30\n    and ecx, 1\n    shr rbx, 32\n    shr rdx, 32\n    or rbx, rdx\n"
               "    mov edi, ecx\n    or rdi, rbx\n" + EXIT_WITH_RDI)
    assert run(program).status == 1
    # Leaf 7 subleaf 0: RDSEED advertised (EBX bit 18).
    assert run(".text\n_start:\n    mov eax, 7\n    xor ecx, ecx\n    cpuid\n    shr ebx, 18\n    and ebx, 1\n"
               "    mov edi, ebx\n" + EXIT_WITH_RDI).status == 1


def _model_cpuid(engine: unicorn.Uc, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    engine.reg_write(X.UC_X86_REG_RAX, leaf)
    engine.reg_write(X.UC_X86_REG_RCX, subleaf)
    engine.emu_start(0x1000, 0x1002)
    return tuple(engine.reg_read(r) for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))


def test_the_cpuid_table_is_the_models_with_only_the_emulated_features_added():
    engine = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    engine.ctl_set_cpu_model(cpuid.UNICORN_MODEL)
    engine.mem_map(0x1000, 0x1000)
    engine.mem_write(0x1000, b"\x0f\xa2")
    # Leaves 1 and 0x80000007 ignore the subleaf; leaf 7's features are in subleaf 0.
    added = {(0x1, 0): (0, 0, cpuid.LEAF1_ECX_RDRAND, 0), (0x7, 0): (0, cpuid.LEAF7_EBX_RDSEED, 0, 0),
             (0x8000_0007, 0): (0, 0, 0, cpuid.LEAF_80000007_EDX_INVARIANT_TSC)}
    leaves = [*range(0x12), 0x4000_0000, 0x4000_0001, 0x4000_0002, *range(0x8000_0000, 0x8000_000A),
              0xC000_0000, 0xFFFF_FFFF]
    for leaf in leaves:
        for subleaf in range(4):
            model = _model_cpuid(engine, leaf, subleaf)
            extra = added.get((leaf, 0 if leaf in (0x1, 0x8000_0007) else subleaf), (0, 0, 0, 0))
            assert cpuid.cpuid(leaf, subleaf) == tuple(m | e for m, e in zip(model, extra, strict=True)), \
                (hex(leaf), subleaf)
    # The added bits are really new: the model advertises none of them.
    for (leaf, subleaf), extra in added.items():
        assert not any(m & e for m, e in zip(_model_cpuid(engine, leaf, subleaf), extra, strict=True))


def test_the_model_raises_invalid_opcode_for_rdrand_and_rdseed():
    """Why the model is SandyBridge: these must reach the machine's #UD hook, not Unicorn's host-seeded helper."""
    engine = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    engine.ctl_set_cpu_model(cpuid.UNICORN_MODEL)
    engine.mem_map(0x1000, 0x1000)
    for code in (b"\x48\x0f\xc7\xf0", b"\x48\x0f\xc7\xf8"):
        engine.mem_write(0x1000, code)
        with pytest.raises(unicorn.UcError) as error:
            engine.emu_start(0x1000, 0x1000 + len(code))
        assert error.value.errno == unicorn.UC_ERR_INSN_INVALID


def test_fast_mode_answers_too_with_a_tsc_that_never_stands_still(run, timestamps):
    result = run(timestamps, deterministic=False)
    assert result.status == 0
    lines = result.stdout.decode().splitlines()
    readings = [int(lines[0].split()[1]), int(lines[1].split()[1]), int(lines[2].split()[1])]
    # No clock: only idle time (none here) and one tick per reading.
    assert readings == [0, 1, 2]
    assert lines[3] == "tsc across 1000 loops: 1"
    assert lines[4:6] == ["cpuid 0: max leaf 13, GenuineIntel", "rdrand64 0xe220a8397b1dcdaf cf 1"]


def test_splitmix64_is_the_published_sequence():
    generator = SplitMix64(0)
    assert [generator.next() for _ in range(4)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                                    0x06C45D188009454F, 0xF88BB8A8724C81EC]
