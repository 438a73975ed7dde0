"""The callout queue: work due at an exact virtual time.

A device that must act at a given instruction count (a wire's peer taking
its next segment) registers here; the scheduler stops the CPU at the
earliest deadline (`next_deadline`), lets idle time pass up to it when no
process can run, and calls `run_due` on every kernel entry, so the device
sees time as the program does.  FreeBSD's callout(9) and Linux's timers
play this part; the scheduler knows nothing of what the devices are.
"""

from __future__ import annotations

from typing import Protocol

from vmgames.emulator.machine import Machine


class Timed(Protocol):
    """A device with work due at a virtual time."""

    def deadline(self) -> int | None:
        """When its next work is due, or None when it has none."""

    def advance(self, now: int) -> None:
        """Do the work due by `now`."""

    def finished(self) -> bool:
        """Nothing can ever be due again (closed and drained): it leaves the queue."""


class CalloutQueue:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.devices: list[Timed] = []

    def register(self, device: Timed) -> None:
        self.devices.append(device)

    def run_due(self) -> None:
        """Let every device do what is due by now; forget those that are finished."""
        now = self.machine.now
        for device in self.devices:
            device.advance(now)
        self.devices = [d for d in self.devices if not d.finished()]

    def next_deadline(self) -> int | None:
        return min((d for d in (device.deadline() for device in self.devices) if d is not None), default=None)
