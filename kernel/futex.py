"""Futexes: the kernel half of every user-space lock (glibc's and musl's mutexes, condition variables,
pthread_join, pthread_once).

A futex is a 32-bit word in user memory.  FUTEX_WAIT sleeps only if the word
still holds the value the caller saw (checked here, atomically, since the
kernel runs between instructions); FUTEX_WAKE wakes up to N sleepers on the
word, oldest first.  A private futex (FUTEX_PRIVATE_FLAG) is named by its
address space and address; a shared one in a MAP_SHARED mapping by the VM
object and offset under it, so that processes sharing a mapping at
different addresses meet on the same word, as Linux's futex keys do
(kernel/futex/core.c: get_futex_key).  Timeouts run on virtual time
(kernel/timer.py).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING

from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.uaccess import copyin

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 2, 3, 4
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFF_FFFF
INT_MAX = (1 << 31) - 1


class Waiter:
    """One task asleep on a futex word, with the bits it waits for."""

    def __init__(self, proc: Process, bitset: int) -> None:
        self.proc, self.bitset, self.sleep = proc, bitset, proc.sleeps


def key(proc: Process, uaddr: int, private: bool) -> tuple:
    """What names the futex word at `uaddr`, as Linux's get_futex_key: a private futex by its address space
    and address; a shared one in a MAP_SHARED mapping by the object and offset, elsewhere by the address
    space and address again but apart from the private ones (FUT_OFF_MMSHARED), so that a private wait is
    not woken by a shared wake of the same word (a thread's exit wakes its tid word shared)."""
    if private:
        return ("private", proc.vmspace, uaddr)
    entry = proc.vmspace.map.lookup(uaddr)
    if entry is not None and entry.shared:
        return ("shared", entry.object, entry.offset + uaddr - entry.start)
    return ("mm", proc.vmspace, uaddr)


def _queue(kernel: Kernel, name: tuple) -> deque[Waiter]:
    return kernel.futexes.setdefault(name, deque())


def _still_asleep(waiter: Waiter) -> bool:
    """The sleep it was queued for has not ended some other way (a timeout, a signal, its death)."""
    from vmgames.kernel.proc import SLEEPING

    return waiter.proc.state == SLEEPING and waiter.proc.sleeps == waiter.sleep


def _word(proc: Process, uaddr: int) -> int:
    if uaddr & 3:
        raise SyscallError(errno.EINVAL)
    return struct.unpack("<I", copyin(proc, uaddr, 4))[0]


def wait(kernel: Kernel, proc: Process, uaddr: int, value: int, deadline: int | None, bitset: int,
         private: bool) -> int:
    """FUTEX_WAIT(_BITSET): sleep if *uaddr == value, until a wake for one of `bitset`'s bits or `deadline`."""
    if bitset == 0:
        raise SyscallError(errno.EINVAL)
    if _word(proc, uaddr) != value & 0xFFFF_FFFF:
        raise SyscallError(errno.EAGAIN)
    kernel.sleep(proc, ("futex", id(proc)), deadline, -errno.ETIMEDOUT)
    _queue(kernel, key(proc, uaddr, private)).append(Waiter(proc, bitset))
    return 0


def wake(kernel: Kernel, proc: Process, uaddr: int, count: int, bitset: int = FUTEX_BITSET_MATCH_ANY,
         private: bool = False) -> int:
    """FUTEX_WAKE(_BITSET): wake up to `count` sleepers on the word, oldest first; how many woke."""
    if bitset == 0:
        raise SyscallError(errno.EINVAL)
    name = key(proc, uaddr, private)
    queue = kernel.futexes.get(name)
    woken = 0
    if queue:
        kept: deque[Waiter] = deque()
        while queue:
            waiter = queue.popleft()
            if not _still_asleep(waiter):
                continue
            if woken < count and waiter.bitset & bitset:
                kernel.wake(waiter.proc, 0)
                woken += 1
            else:
                kept.append(waiter)
        if kept:
            kernel.futexes[name] = kept
        else:
            del kernel.futexes[name]
    return woken


def requeue(kernel: Kernel, proc: Process, uaddr: int, wake_count: int, move_count: int, uaddr2: int,
            expected: int | None, private: bool) -> int:
    """FUTEX_(CMP_)REQUEUE: wake `wake_count` sleepers on uaddr and move up to `move_count` of the rest to
    uaddr2 (after checking *uaddr == expected for CMP_REQUEUE); the number woken plus moved."""
    if expected is not None and _word(proc, uaddr) != expected & 0xFFFF_FFFF:
        raise SyscallError(errno.EAGAIN)
    woken = wake(kernel, proc, uaddr, wake_count, private=private)
    name = key(proc, uaddr, private)
    queue = kernel.futexes.pop(name, deque())
    target = _queue(kernel, key(proc, uaddr2, private))
    moved = 0
    while queue and moved < move_count:
        waiter = queue.popleft()
        if _still_asleep(waiter):
            target.append(waiter)
            moved += 1
    if queue:
        kernel.futexes[name] = queue
    if not target:
        del kernel.futexes[key(proc, uaddr2, private)]
    return woken + moved
