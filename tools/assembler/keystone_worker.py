"""Run Keystone in a forked child so that its crashes cannot take the tool down.

Keystone 0.9.2 segfaults on some inputs (a buffer with section switches, for
one) and hangs on others.  Every Keystone call of one ``assemble`` happens in a
single child process; the child records in shared memory which instruction it
is working on, so when it dies the parent can name the guilty line.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import signal
from dataclasses import dataclass

import keystone

from .errors import AssemblyError, shown

_TIMEOUT_BASE_SECONDS = 10.0
_TIMEOUT_PER_INSTRUCTION_SECONDS = 0.01


@dataclass(frozen=True)
class KeystoneJob:
    """One text for Keystone to encode, with the source line it came from."""
    line: int
    text: str


@dataclass(frozen=True)
class KeystoneResult:
    encoding: bytes | None  # None when Keystone refused the text
    error: str = ""


def encode_all(jobs: list[KeystoneJob], address: int, filename: str,
               timeout: float | None = None) -> list[KeystoneResult]:
    """Encode each job separately at `address`; a crash or hang becomes an AssemblyError for its line.

    Keystone hangs on some text (a lone backslash, for one), so the worker gets `timeout` seconds
    (by default a few seconds plus a little per instruction).
    """
    if not jobs:
        return []
    context = multiprocessing.get_context("fork")
    progress = context.Value("q", -1, lock=False)
    reader, writer = context.Pipe(duplex=False)
    worker = context.Process(target=_encode_in_child, args=([job.text for job in jobs], address, writer, progress),
                             daemon=True)
    worker.start()
    writer.close()
    if timeout is None:
        timeout = _TIMEOUT_BASE_SECONDS + _TIMEOUT_PER_INSTRUCTION_SECONDS * len(jobs)
    try:
        if not reader.poll(timeout):
            worker.kill()
            worker.join()
            raise _failure(jobs, progress.value, filename, f"Keystone did not finish within {timeout:g} s")
        try:
            raw = reader.recv()
        except EOFError:
            worker.join()
            crash = f"Keystone crashed ({_describe_exit(worker.exitcode)})"
            raise _failure(jobs, progress.value, filename, crash) from None
    finally:
        reader.close()
    worker.join()
    return [KeystoneResult(encoding) if isinstance(encoding, bytes) else KeystoneResult(None, encoding)
            for encoding in raw]


def _encode_in_child(texts: list[str], address: int, writer, progress) -> None:
    # A crash here is expected and reported by the parent; a fault handler
    # inherited from the parent (pytest enables one) would only add a stack dump.
    faulthandler.disable()
    engine = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
    results: list[bytes | str] = []
    for position, text in enumerate(texts):
        progress.value = position
        try:
            encoding, _ = engine.asm(text, address)
            results.append(bytes(encoding) if encoding else "Keystone produced no bytes")
        except keystone.KsError as error:
            results.append(str(error))
    writer.send(results)
    writer.close()


def _failure(jobs: list[KeystoneJob], position: int, filename: str, what: str) -> AssemblyError:
    if 0 <= position < len(jobs):
        job = jobs[position]
        return AssemblyError(filename, job.line, f"{what} while encoding {shown(job.text)}")
    return AssemblyError(filename, None, f"{what} before encoding any instruction")


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"
