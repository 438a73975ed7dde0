"""Static glibc and musl programs get from vmgames' file, time and identity calls what Linux gives them.

Each probe of userland/c/libc_*.c is built with gcc -static and musl-gcc
-static into a tree of files, directories, links and a FIFO, and run there
natively and on vmgames (`--root` the tree, the host's uid and gid), with
stdin from /dev/null and stdout a pipe on both.  Every line and the exit
status must be the same, except the lines starting with "@", which depend
on the host (absolute paths, its limits, random bytes): those are held to
what vmgames alone must print.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess

import pytest
from vmgames.kernel import procfs
from vmgames.kernel.observer import Observer
from vmgames.tools.boot import boot

from tests.programs import EXIT_0, VMGAMES, mmap, syscall_on_path_then_exit

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
USERLAND_C = os.path.join(REPOSITORY, "userland", "c")
PROBES = ["stat", "dirs", "fcntl", "poll", "identity", "proc"]
COMPILERS = {"glibc": "gcc", "musl": "musl-gcc"}
CFLAGS = ["-static", "-O2", "-Wall"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The directory the probes run in, and the guest's root: every probe built for both libcs, and files."""
    root = tmp_path_factory.mktemp("tree")
    for compiler in COMPILERS.values():
        if shutil.which(compiler) is None:
            pytest.fail(f"{compiler} is needed for the libc probes (.ci/run installs gcc and musl-tools)")
    for name in PROBES:
        for libc, compiler in COMPILERS.items():
            subprocess.run([compiler, *CFLAGS, "-o", str(root / f"{name}.{libc}"),
                            os.path.join(USERLAND_C, f"libc_{name}.c")], check=True)
    (root / "hello.txt").write_text("hello, world\n")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a").write_text("a\n")
    (root / "dir" / "b").write_text("bb\n")
    (root / "dir" / "b").chmod(0o600)
    (root / "dir" / "sub" / "deep").write_text("deep\n")
    (root / "link").symlink_to("hello.txt")
    (root / "dirlink").symlink_to("dir")
    (root / "dangling").symlink_to("missing")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "abslink").symlink_to("/hello.txt")
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o755)
    os.mkfifo(root / "fifo", 0o644)
    (root / "old.txt").write_text("from before 1970\n")
    os.utime(root / "old.txt", ns=(-1_500_000_000, -1_500_000_000))
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is needed for the busybox tests (.ci/run installs busybox-static)")
    shutil.copy(busybox, root / "busybox")
    return root


def run_vmgames(tree, program: str, *args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """./program run on vmgames in the tree, the tree its root, as the host's uid and gid."""
    return subprocess.run([*VMGAMES, "run", "--root", ".", "--uid", str(os.getuid()),
                           "--gid", str(os.getgid()), *options, f"./{program}", *args],
                          cwd=tree, stdin=subprocess.DEVNULL, capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPOSITORY})


def run_both(tree, program: str, *args: str, options: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """Run ./program in the tree on the host and on vmgames; returns vmgames' "@" lines and status once
    every other line and the status are the host's."""
    host = subprocess.run([f"./{program}", *args], cwd=tree, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=60)
    ours = run_vmgames(tree, program, *args, options=options)
    assert b"Traceback" not in ours.stderr, ours.stderr.decode()
    host_lines, our_lines = host.stdout.decode().splitlines(), ours.stdout.decode().splitlines()
    assert [line for line in our_lines if not line.startswith("@")] == \
           [line for line in host_lines if not line.startswith("@")]
    assert ours.returncode == host.returncode, ours.stderr.decode()
    return [line for line in our_lines if line.startswith("@")], ours.returncode


@pytest.mark.parametrize("libc", COMPILERS)
def test_the_stat_family_describes_the_hosts_files_as_linux_does(tree, libc):
    guest_only, status = run_both(tree, f"stat.{libc}")
    assert status == 0
    # Absolute paths and absolute links are the guest's root, the tree.
    assert guest_only == ["@ stat /hello.txt: found", "@ stat abslink (-> /hello.txt): found"]


@pytest.mark.parametrize("libc", COMPILERS)
def test_directories_and_the_working_directory_as_on_linux(tree, libc):
    guest_only, status = run_both(tree, f"dirs.{libc}")
    assert status == 0
    assert guest_only == [
        "@ getdents64 order: . .. a b sub",             # sorted, '.' and '..' first: the same on every host
        '@ chdir /, .., ../..: yes, getcwd "/"',       # the guest's root is the tree, and its '..' is itself
        "@ / and /.. are one directory: yes",
        "@ the working directory at the start: /"]


@pytest.mark.parametrize("libc", COMPILERS)
def test_fcntl_lseek_pread_readv_and_ioctl_as_on_linux(tree, libc):
    guest_only, status = run_both(tree, f"fcntl.{libc}")
    assert status == 0 and guest_only == []


@pytest.mark.parametrize("libc", COMPILERS)
def test_poll_and_ppoll_wait_and_wake_as_on_linux(tree, libc):
    """Readiness of pipes, files and the console; waits woken by a child's write or exit; timeouts."""
    guest_only, status = run_both(tree, f"poll.{libc}")
    assert status == 0 and guest_only == []


@pytest.mark.parametrize("libc", COMPILERS)
def test_identity_limits_random_bytes_and_the_clock_as_on_linux(tree, libc):
    guest_only, status = run_both(tree, f"identity.{libc}")
    assert status == 0
    random_bytes = [line for line in guest_only if line.startswith("@ bytes:")]
    assert len(random_bytes) == 1
    assert [line for line in guest_only if line not in random_bytes] == [
        "@ getgroups(0): 0",
        "@ umask at the start: 022",
        # Linux's defaults for a fresh process; RLIMIT_NPROC and RLIMIT_SIGPENDING from the RAM (256M) as Linux.
        "@ RLIMIT_CPU unlimited unlimited",
        "@ RLIMIT_FSIZE unlimited unlimited",
        "@ RLIMIT_DATA unlimited unlimited",
        "@ RLIMIT_STACK 8388608 unlimited",
        "@ RLIMIT_CORE 0 unlimited",
        "@ RLIMIT_RSS unlimited unlimited",
        "@ RLIMIT_NPROC 1023 1023",
        "@ RLIMIT_NOFILE 1024 4096",
        "@ RLIMIT_MEMLOCK 8388608 8388608",
        "@ RLIMIT_AS unlimited unlimited",
        "@ RLIMIT_LOCKS unlimited unlimited",
        "@ RLIMIT_SIGPENDING 1023 1023",
        "@ RLIMIT_MSGQUEUE 819200 819200",
        "@ RLIMIT_NICE 0 0",
        "@ RLIMIT_RTPRIO 0 0",
        "@ RLIMIT_RTTIME unlimited unlimited",
        "@ sysinfo: uptime 1, totalram 268431360, procs 1, loads 0 0 0, swap 0",
        "@ CPUs: 0x1",
        "@ sched_getaffinity(0, 128): 8 (the size of the kernel's cpumask)",
        "@ timezone: 0 0",
        "@ time: 1145577600"]      # 2006-04-21, and less than a second of virtual time has passed


def test_getrandom_follows_the_seed_in_a_stream_of_its_own(tree):
    """The same --seed gives the same bytes; another seed others; rdrand's values are not disturbed."""
    def random_line(*options: str) -> str:
        guest_only, _ = run_both(tree, "identity.musl", options=options)
        return next(line for line in guest_only if line.startswith("@ bytes:"))

    first, again, other = random_line(), random_line(), random_line("--seed", "7")
    assert first == again != other
    # The stream for seed 0 is SplitMix64 seeded with 0 ^ "getrandm"; each exec takes two words for AT_RANDOM
    # (the probe's own, then its exec'd child's), and getrandom gets the next.
    from vmgames.emulator.determinism import SplitMix64
    from vmgames.kernel.kernel import GETRANDOM_STREAM
    expected = SplitMix64(GETRANDOM_STREAM)
    words = [expected.next() for _ in range(6)][4:]
    assert first == "@ bytes: " + " ".join(f"{b:02x}" for b in b"".join(w.to_bytes(8, "little") for w in words))


@pytest.mark.parametrize("libc", COMPILERS)
def test_readlink_proc_self_and_access_as_on_linux(tree, libc):
    """readlink of links and of /proc/self/exe, /proc/self/maps' format, executing /proc/self/exe, access."""
    guest_only, status = run_both(tree, f"proc.{libc}")
    assert status == 0
    assert guest_only == [
        f'@ readlink("/proc/self/exe"): /proc.{libc}',       # the program's path in the guest
        '@ access("hello.txt", W_OK): -30',                  # EROFS: the guest's filesystem is read-only
        '@ access("dir", W_OK): -30',
        '@ access("link", R_OK | W_OK): -30',
        '@ faccessat2("dangling", W_OK, AT_SYMLINK_NOFOLLOW): -30']


GROW_THE_HEAP_TWICE_AND_MAP = """
.text
_start:
    xor edi, edi
    mov eax, 12
    syscall
    mov rbx, rax
    lea rdi, [rbx + 4096]
    mov eax, 12
    syscall
    lea rdi, [rbx + 3 * 4096]
    mov eax, 12
    syscall
""" + mmap(2 * 4096, 3) + EXIT_0


class MapsAtExit(Observer):
    def __init__(self) -> None:
        self.text = ""

    def before_exit(self, kernel, proc) -> None:
        self.text = procfs.maps(kernel, proc)


def test_proc_self_maps_is_linuxs_format_made_from_the_map(build, tmp_path):
    """One line per region in show_map_vma's format: a file's lines name it from column 73, [heap] is one
    line however many steps brk grew it in, an anonymous mapping's line ends in the space after its inode."""
    program = build(GROW_THE_HEAP_TWICE_AND_MAP, "grow")
    kernel = boot(16 << 20, root=str(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.lookup("/grow"), ["grow"], [])
    at_exit = MapsAtExit()
    kernel.observe(at_exit)
    info = os.stat(program)
    file = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x} {info.st_ino}"
    text = next(e for e in proc.vmspace.map.entries if e.name == "text")
    heap = proc.vmspace.heap_start
    kernel.run()
    mmap_start = 0x7FFF_F000_0000 - 2 * 4096
    assert at_exit.text == (
        f"{text.start:08x}-{text.end:08x} r-xp 00001000 {file}".ljust(72) + " /grow\n"
        + f"{heap:08x}-{heap + 3 * 4096:08x} rw-p 00000000 00:00 0".ljust(72) + " [heap]\n"
        + f"{mmap_start:08x}-{mmap_start + 2 * 4096:08x} rw-p 00000000 00:00 0 \n"
        + "7fffff7ff000-7ffffffff000 rw-p 00000000 00:00 0".ljust(72) + " [stack]\n")


# Busybox applets, and its shell, print on vmgames what they print on Linux.
BUSYBOX_AS_ON_LINUX = [
    ["ls", "-lAn", "--full-time"],          # -A: the host's ".." of the tree is not the guest's
    ["ls", "-lani", "--full-time", "dir", "dirlink/"],
    ["ls", "-d", "*/"],
    ["stat", "-c", "%n %s %a %F %h %i %u %g %Y %Z %b %B", "hello.txt", "dir", "link", "fifo", "script.sh"],
    ["stat", "-L", "-c", "%n %F", "link", "dirlink"],
    ["wc", "hello.txt", "dir/a"],
    ["md5sum", "hello.txt", "dir/a", "dir/b"],
    ["cat", "link", "dir/sub/deep"],
    ["head", "-n", "1", "hello.txt", "dir/a"],
    ["od", "-c", "dir/a"],
    ["cmp", "hello.txt", "link"],
    ["grep", "-r", "deep", "dir"],
    ["test", "-x", "hello.txt"],
    ["test", "-L", "dangling"],
    ["sh", "-c", "for f in dir/* dir/sub/*; do echo $f; done; cd dirlink && echo *; read x < ../hello.txt; echo $x"],
    ["sh", "-c", "test -r dir/b && test -d dirlink && test ! -e dangling && echo all true"],
    # The shell forking (glibc's clone), piping and re-executing itself through /proc/self/exe.
    ["sh", "-c", "cat dir/a dir/b hello.txt | sort -r | wc -l"],
    ["sh", "-c", "ls dir | sort -r | head -n 2; echo status $?"],
    ["sh", "-c", "x=$(cat hello.txt | wc -c); echo got $x; echo nested $(echo $(echo deep))"],
    ["sh", "-c", "f() { echo in f $1; return 3; }; f one; echo f said $?; (cd dir && ls); ls -d d*"],
    ["sh", "-c", "echo gone > /dev/null; head -c 3 /dev/zero | od -An -c; stat -c '%n %t %T %F' /dev/null /dev/zero"],
    ["sh", "-c", "false | true; echo $?; true | false; echo $?; ls missing 2>/dev/null; echo ls said $?"],
    ["sh", "-c", "for i in 1 2 3; do echo $i & wait; done; sleep 0 & wait $!; echo waited $?"],
    ["sh", "-c", "echo b a c | tr ' ' '\\n' | sort | xargs echo sorted:"],
    ["sh", "-c", "exec 3< hello.txt; read line <&3; echo read $line; exec 3<&-; find dir -type f | sort"],
    ["sh", "-c", "(exit 7); echo sub $?; sh -c 'exit 5'; echo child $?; kill -9 $$"],
]


@pytest.mark.parametrize("command", BUSYBOX_AS_ON_LINUX, ids=lambda command: " ".join(command)[:40])
def test_busybox_applets_print_what_they_print_on_linux(tree, command):
    host = subprocess.run(["./busybox", *command], cwd=tree, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=60)
    ours = run_vmgames(tree, "busybox", *command)
    host_status = 128 - host.returncode if host.returncode < 0 else host.returncode    # as a shell reports it
    assert (ours.stdout.decode(), ours.returncode) == (host.stdout.decode(), host_status)
    # vmgames adds one line of its own when a signal kills the program (the shell's kill -9 $$).
    said = [line for line in ours.stderr.decode().splitlines() if not line.startswith("vmgames: ")]
    assert said == host.stderr.decode().splitlines()


@pytest.mark.parametrize(("command", "output"), [
    (["find", "."], None),                                     # directories list sorted
    (["readlink", "-f", "dirlink/sub/../a"], "/dir/a\n"),       # paths are the guest's
    (["sh", "-c", "cd dir/sub; pwd; cd ../..; pwd; cd ..; pwd"], "/dir/sub\n/\n/\n"),
    (["nproc"], "1\n"),
    (["realpath", "/proc/self/exe"], "/busybox\n"),
])
def test_busybox_sees_the_guests_paths(tree, command, output):
    ours = run_vmgames(tree, "busybox", *command)
    assert ours.returncode == 0, ours.stderr
    if output is None:
        lines = ours.stdout.decode().splitlines()
        assert lines[0] == "." and lines == sorted(lines) and "./dir/sub/deep" in lines
    else:
        assert ours.stdout.decode() == output


def _run_with_stdin(program: str, root, stdin) -> tuple[int, bytes]:
    """Run `program` on a fresh machine whose stdin is the host file `stdin`; (shell status, stdout)."""
    out = io.BytesIO()
    kernel = boot(16 << 20, root=str(root), stdin=stdin, stdout=out, stderr=io.BytesIO())
    proc = kernel.spawn(kernel.fs.open_host(program), ["prog"], [])
    kernel.run()
    return proc.shell_status, out.getvalue()


def _ioctl_of_stdin(request: int, size: int) -> str:
    """ioctl(0, request, buffer); the buffer's `size` bytes to stdout; exit status -result."""
    return f"""
.text
_start:
    xor edi, edi
    mov esi, {request:#x}
    lea rdx, [rip + answer]
    mov eax, 16
    syscall
    mov r12, rax
    mov edi, 1
    lea rsi, [rip + answer]
    mov edx, {size}
    mov eax, 1
    syscall
    mov rdi, r12
    neg rdi
    mov eax, 60
    syscall
.bss
answer: .zero 64
"""


def test_a_console_on_a_terminal_answers_tcgets_and_tiocgwinsz_as_the_hosts(build, tmp_path):
    import fcntl
    import pty
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("<4H", 37, 91, 0, 0))
    with os.fdopen(terminal, "rb", buffering=0) as stdin:
        status, window = _run_with_stdin(build(_ioctl_of_stdin(termios.TIOCGWINSZ, 8), "winsize"), tmp_path, stdin)
        assert (status, struct.unpack("<4H", window)) == (0, (37, 91, 0, 0))
        status, modes = _run_with_stdin(build(_ioctl_of_stdin(termios.TCGETS, 36), "tcgets"), tmp_path, stdin)
        assert (status, modes) == (0, fcntl.ioctl(terminal, termios.TCGETS, bytes(36)))
        # Nothing that would change the host's terminal gets through: TCSETS is ENOTTY.
        status, _ = _run_with_stdin(build(_ioctl_of_stdin(termios.TCSETS, 36), "tcsets"), tmp_path, stdin)
        assert status == 25
    os.close(controller)
    (tmp_path / "plain").write_text("not a terminal\n")
    with open(tmp_path / "plain", "rb") as stdin:
        status, _ = _run_with_stdin(build(_ioctl_of_stdin(termios.TCGETS, 36), "tcgets"), tmp_path, stdin)
        assert status == 25                                             # ENOTTY


POLL_STDIN_THEN_EXIT_WITH_REVENTS = """
.text
_start:
    lea rdi, [rip + entry]
    mov esi, 1
    mov edx, -1
    mov eax, 7
    syscall
    movzx edi, word ptr [rip + entry + 6]
    mov eax, 60
    syscall
.data
entry: .long 0
       .short 1
       .short 0
"""


def test_poll_of_the_console_waits_for_the_hosts_input(build, tmp_path):
    """With nothing else to wait for, poll(-1) of stdin waits on the host, as a read does."""
    import threading

    program = build(POLL_STDIN_THEN_EXIT_WITH_REVENTS, "poll")
    read_end, write_end = os.pipe()
    writer = threading.Timer(0.3, os.write, (write_end, b"late\n"))
    writer.start()
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        status, _ = _run_with_stdin(program, tmp_path, stdin)
    writer.join()
    os.close(write_end)
    assert status == 0x1                                                # POLLIN
    read_end, write_end = os.pipe()
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        assert _run_with_stdin(program, tmp_path, stdin)[0] == 0x10      # POLLHUP: no writer is left


LSEEK_STDIN_TO_ITS_END = """
.text
_start:
    xor edi, edi
    xor esi, esi
    mov edx, 2
    mov eax, 8
    syscall
    mov rdi, rax
    mov eax, 60
    syscall
"""


def test_a_console_redirected_from_a_file_seeks_in_it(build, tmp_path):
    program = build(LSEEK_STDIN_TO_ITS_END, "seek")
    (tmp_path / "input").write_bytes(b"x" * 42)
    with open(tmp_path / "input", "rb") as stdin:
        assert _run_with_stdin(program, tmp_path, stdin)[0] == 42
    read_end, write_end = os.pipe()
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        assert _run_with_stdin(program, tmp_path, stdin)[0] == (-29) & 0xFF       # ESPIPE


def test_uid_and_gid_make_every_process_that_user(tree):
    """--uid and --gid: the ids, the owner of a pipe, and access checks by the owner's, group's or others' bits."""
    identity = run_vmgames(tree, "identity.glibc", options=("--uid", "4242", "--gid", "4343"))
    assert identity.stdout.decode().splitlines()[0] == "uid 4242 euid 4242 gid 4343 egid 4343"
    proc = run_vmgames(tree, "proc.glibc", options=("--uid", "4242", "--gid", "4343"))
    lines = proc.stdout.decode().splitlines()
    owner = os.getuid()
    assert 'access("dir/b", R_OK): -EACCES' in lines            # 0600, another user's
    assert 'access("hello.txt", R_OK): 0' in lines              # 0644: others may read
    assert 'access("script.sh", X_OK): 0' in lines              # 0755: others may run it
    assert 'access("fifo", W_OK): -EACCES' in lines             # 0644: only its owner may write
    assert owner != 4242
    stat = run_vmgames(tree, "stat.glibc", options=("--uid", "4242", "--gid", "4343"))
    assert stat.stdout.decode().count("owner is the caller: yes") == 2    # both ends of a pipe


@pytest.mark.parametrize("value", ["-1", "abc", "4294967295", "1e3"])
def test_a_bad_uid_or_gid_is_refused_in_one_line(value):
    for option in ("--uid", "--gid"):
        result = subprocess.run([*VMGAMES, "run", option, value, "build/hello"],
                                capture_output=True, text=True, cwd=REPOSITORY)
        assert result.returncode == 2
        assert result.stderr.startswith(f"vmgames: argument {option}: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(("path", "status"), [("/proc/1/maps", -3 & 0xFF), ("/proc/self/maps", -3 & 0xFF),
                                              ("/proc/01/maps", 2), (r"/proc/\302\262/maps", 2), ("/proc/2/maps", 2),
                                              ("/proc/self/cwd", 2), ("/proc/1/exe/..", 20)])
def test_proc_has_each_live_process_by_its_decimal_pid_and_nothing_else(run, path, status):
    """open() of /proc paths: the process's maps (fd 3); a pid spelled otherwise (a leading zero, a superscript
    two in UTF-8), or no such process, ENOENT."""
    assert run(syscall_on_path_then_exit(2, path)).status == status
