"""Several tools can watch one run: each observer sees every trap, in the order attached, until it leaves."""

import io

from vmgames.kernel.observer import Observer
from vmgames.tools.boot import boot

from tests.programs import EXIT_0, say, touch


class Log(Observer):
    """Writes what it sees into a shared log, under its own name."""

    def __init__(self, name: str, log: list, leave_after_syscalls: int | None = None) -> None:
        self.name, self.log, self.leave_after = name, log, leave_after_syscalls

    def before_fault(self, kernel, proc, va, access, error_code, user):
        self.log.append((self.name, "fault", va & ~0xFFF))

    def before_syscall(self, kernel, proc, number):
        self.log.append((self.name, "syscall", number))
        if self.leave_after is not None:
            self.leave_after -= 1
            if self.leave_after == 0:
                kernel.unobserve(self)

    def before_exit(self, kernel, proc):
        self.log.append((self.name, "exit", proc.pid))


def _boot_and_spawn(build, source):
    kernel = boot(16 << 20, root="/", stdout=io.BytesIO(), stderr=io.BytesIO())
    path = build(source)
    return kernel, kernel.spawn(kernel.fs.open_host(path), [path], [])


def test_two_observers_see_every_fault_and_syscall_in_the_order_attached(build):
    kernel, _ = _boot_and_spawn(build, say("hi\n"))
    log = []
    kernel.observe(Log("a", log))
    kernel.observe(Log("b", log))
    kernel.run()
    assert [what for who, *what in log if who == "a"] == [what for who, *what in log if who == "b"]
    assert [who for who, *_ in log] == ["a", "b"] * (len(log) // 2)
    assert [(kind, detail) for who, kind, detail in log if who == "a" and kind != "fault"] == [
        ("syscall", 1), ("syscall", 60), ("exit", 1)]


def test_an_observer_that_leaves_inside_a_call_sees_nothing_more_and_the_others_go_on(build):
    kernel, _ = _boot_and_spawn(build, say("hi\n"))
    log = []
    kernel.observe(Log("leaver", log, leave_after_syscalls=1))
    kernel.observe(Log("stayer", log))
    kernel.run()
    assert [(who, kind) for who, kind, _ in log if kind != "fault"] == [
        ("leaver", "syscall"), ("stayer", "syscall"), ("stayer", "syscall"), ("stayer", "exit")]
    assert kernel.observers == (kernel.observers[0],) and kernel.observers[0].name == "stayer"


class Pauser(Observer):
    def __init__(self, at: int, every: int, seen: list) -> None:
        self.pause_at, self.every, self.seen = at, every, seen

    def on_pause(self, kernel):
        self.seen.append(kernel.machine.now)
        self.pause_at = kernel.machine.now + self.every


def test_each_observer_is_paused_at_its_own_exact_times(build):
    kernel, _ = _boot_and_spawn(build, touch(512))
    first, second = [], []
    kernel.observe(Pauser(100, 100, first))
    kernel.observe(Pauser(150, 250, second))
    kernel.run()
    assert first[:4] == [100, 200, 300, 400]
    assert second[:3] == [150, 400, 650]


class Holder(Observer):
    """Keeps one pid off the CPU until only held processes are left, then lets it go."""

    def __init__(self, pid: int, log: list) -> None:
        self.held, self.log = pid, log

    def may_run(self, proc):
        return proc.pid != self.held

    def on_held(self, kernel):
        self.log.append(("released", self.held))
        self.held = None


def test_a_held_process_waits_until_its_holder_lets_it_go(build):
    kernel, init = _boot_and_spawn(build, ".text\n_start:\n" + EXIT_0)
    log = []
    kernel.observe(Holder(init.pid, log))
    kernel.observe(Log("watch", log))
    kernel.run()
    assert log == [("released", 1), ("watch", "fault", 0x401000), ("watch", "syscall", 60), ("watch", "exit", 1)]
    assert init.exit_code == 0
