"""What a debugger, a run limit or a snapshot may see of the kernel, and where it may step in.

The kernel knows nothing of the tools above it (tools/gdb, tools/breakon.py,
tools/limits.py, the CLI's snapshot): each is an Observer it is handed with
`Kernel.observe`, and the kernel calls every observer at the same few places.
The methods here do nothing; a tool overrides those it needs.  Several may
watch one run (a time limit and a snapshot, say); each is called in the order
they were attached.

The fault and syscall methods are called from inside the running engine, so
an observer can stop there (gdb's stub serves its client from inside them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process
    from vmgames.kernel.vm.fault import FaultResult


class Observer:
    """One tool's view of the kernel: every method a no-op, every setting off."""

    # Call on_pause once the instruction clock reaches this (the scheduler stops the engine exactly there).
    pause_at: int | None = None
    # No slice runs past this many retired instructions.
    instruction_limit: int | None = None
    # check_limits wants to be called often (between slices, and every LIMIT_CHECK_* within a long one).
    checks_limits: bool = False

    # Traps: kernel/trap.py.  `user` is False for a fault the kernel took in copyin/copyout inside a syscall.

    def before_fault(self, kernel: Kernel, proc: Process, va: int, access: int, error_code: int,
                     user: bool) -> None:
        """Before vm_fault handles a fault."""

    def after_fault(self, kernel: Kernel, proc: Process, va: int, result: FaultResult, user: bool) -> None:
        """After vm_fault, with its result (fatal or not)."""

    def before_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        """Before a syscall is dispatched."""

    def after_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        """After it ran; the process may have gone to sleep in it."""

    # Processes: kernel/proc.py.

    def before_exit(self, kernel: Kernel, proc: Process) -> None:
        """A process is about to be torn down: its map and objects are still whole."""

    # Scheduling: kernel/sched.py.

    def may_run(self, proc: Process) -> bool:
        """False keeps a runnable process off the CPU (a debugger holding a thread stopped)."""
        return True

    def before_run(self, kernel: Kernel) -> None:
        """User code is about to run on the CPU (a slice, or the rest of one)."""

    def on_held(self, kernel: Kernel) -> None:
        """Only processes some observer holds are left runnable: let some go, or stop the run."""

    def on_pause(self, kernel: Kernel) -> None:
        """The clock reached pause_at (reset it here to be called again)."""

    def check_limits(self, kernel: Kernel) -> None:
        """Between slices, if checks_limits: end the run (terminate_all) once a limit is reached."""

    # The host's console: kernel/kernel.py.  A read or write there blocks the host thread, not only the process.

    def console_wait(self, kernel: Kernel, stream: BinaryIO) -> None:
        """A console read is about to block: wait for the input (or put the reader to sleep)."""

    def console_write_wait(self, kernel: Kernel, stream: BinaryIO) -> None:
        """A console write may block while nobody reads the host's full pipe."""
