"""vmgames run: boot a machine, run a program on it, and say how it ended and what the kernel did."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING

from vmgames.kernel.kernel import Kernel
from vmgames.tools import api, trace
from vmgames.tools import stats as run_stats
from vmgames.tools.boot import boot
from vmgames.tools.cli.asm import assemble, read_source
from vmgames.tools.cli.output import say, say_error, unwritable_file
from vmgames.tools.cli.parser import DEFAULT_SNAPSHOT
from vmgames.tools.cli.snapshot import SnapshotAt, snapshot_files
from vmgames.tools.limits import RunLimits

if TYPE_CHECKING:
    from vmgames.tools.gdb.monitor import EventTap


def command_run(args: argparse.Namespace, closed_fds: frozenset[int] = frozenset()) -> int:
    problem = api.options_problem(**vars(args))
    if not problem and args.gdb is not None and (args.max_instructions is not None or args.timeout is not None):
        problem = "--gdb cannot be used with --max-instructions or --timeout (gdb stops the run as it likes)"
    if problem:
        say_error(problem)
        return 2
    if args.wire_buffer < 2 * 4096:
        say_error("--wire-buffer must be at least 8K (two pages)")
        return 2
    problem = unwritable_file(args.stats_json) if args.stats_json is not None else None
    if problem:
        say_error(f"--stats-json {args.stats_json}: {problem}")
        return 2
    if args.snapshot_at is not None and args.snapshot_at != "exit":
        if not args.snapshot_at.isdigit():
            say_error(f"--snapshot-at takes a number of instructions or 'exit', not {args.snapshot_at!r}")
            return 2
        if args.fast:
            say_error("--snapshot-at N needs the instruction clock: it cannot be used with --fast")
            return 2
    if args.snapshot is not None and args.snapshot_at is None:
        say_error("--snapshot FILE needs --snapshot-at N|exit (when to take it)")
        return 2
    if args.snapshot_at is not None:
        args.snapshot = args.snapshot or DEFAULT_SNAPSHOT
        # Checked now, not when the snapshot is due, halfway through the run.
        for path in snapshot_files(args.snapshot):
            problem = unwritable_file(path)
            if problem:
                beside = "" if path == args.snapshot else f" (and {path} beside it)"
                say_error(f"--snapshot {args.snapshot}{beside}: {problem}")
                return 2
    if args.gdb is not None:
        if args.fast:
            say_error("--gdb needs the instruction clock: it cannot be used with --fast")
            return 2
        if args.snapshot_at is not None:
            say_error("--gdb and --snapshot-at cannot be used together")
            return 2
        if args.break_on is not None:
            say_error("--gdb and --break-on cannot be used together (use 'monitor break' in gdb)")
            return 2
        host, _, port = args.gdb.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            say_error(f"--gdb takes [HOST:]PORT, not {args.gdb!r}")
            return 2
    break_on = None
    if args.break_on is not None:
        from vmgames.tools import breakon

        break_on = breakon.parse(args.break_on)
        if isinstance(break_on, str):
            say_error(break_on)
            return 2
    trace_types = None
    if args.trace_events:
        trace_types = {t.strip() for t in args.trace_events.split(",") if t.strip()}
        unknown = sorted(trace_types - set(trace.EVENT_TYPES))
        if unknown or not trace_types:
            say_error(f"--trace-events: unknown event type {', '.join(unknown) or '(none given)'}; "
                   f"choose from {', '.join(trace.EVENT_TYPES)}")
            return 2
        if not args.trace:
            say_error("--trace-events needs --trace FILE")
            return 2
    with tempfile.TemporaryDirectory(prefix="vmgames-") as scratch, contextlib.ExitStack() as cleanup:
        program = args.program
        if program.endswith(".s"):
            try:
                source = read_source(args.program)
            except OSError as error:
                say_error(f"{args.program}: {os.strerror(error.errno)}")     # as a program that is not there
                return api.shell_status(error.errno)
            except UnicodeDecodeError:
                say_error(f"{args.program}: not a text file")
                return 1
            program = os.path.join(scratch, os.path.basename(program)[:-2])
            status = assemble(source, args.program, program)
            if status:
                return status
        try:
            kernel = boot(args.ram, deterministic=not args.fast, seed=args.seed, root=args.root,
                          quantum=args.quantum, cpus=args.cpus, interleave=args.interleave,
                          max_procs=args.max_procs, wire_rate=args.wire_rate, wire_buffer=args.wire_buffer,
                          uid=args.uid, gid=args.gid, prezero=args.prezero, prefault=args.prefault,
                          swap=args.swap, page_used=args.page_used, rmap=args.rmap)
            machine = kernel.machine
            kernel.shootdown.skipped = set(args.skip_invalidation)
        except api.BOOT_ERRORS as error:
            say_error(api.boot_problem(error, args.ram, args.swap))
            return 2
        if args.trace:
            try:
                trace_file = open(args.trace, "wb")
            except OSError as error:
                say_error(f"{args.trace}: {error.strerror}")
                return 2
            options = {"fast": args.fast, "quantum": args.quantum, "cpus": args.cpus, "interleave": args.interleave,
                       "prezero": args.prezero, "prefault": args.prefault, "swap": args.swap,
                       "page_used": args.page_used, "rmap": args.rmap,
                       "root": args.root, "env": args.env,
                       "seed": args.seed, "uid": args.uid, "gid": args.gid,
                       "trace_events": sorted(trace_types) if trace_types else None,
                       "wire_rate": args.wire_rate, "wire_buffer": args.wire_buffer, "snapshot_at": args.snapshot_at,
                       "gdb": args.gdb is not None, "break_on": args.break_on,
                       "skip_invalidation": sorted(set(args.skip_invalidation)), "max_procs": args.max_procs,
                       "max_instructions": args.max_instructions, "timeout": args.timeout, "cwd": os.getcwd()}
            trace_sink = trace.writer(
                trace_file, trace.header(args.program, [args.program] + args.args, options, args.ram), trace_types)
            cleanup.callback(_finish_trace, trace_sink, trace_file)   # however the run ends
            kernel.recorder.sink = trace_sink
        snapshot = None
        if args.snapshot_at is not None:
            snapshot = SnapshotAt(args.snapshot_at, args.snapshot, tracing=bool(args.trace))
            kernel.observe(snapshot)
        if args.trace:
            from vmgames.tools import procstat

            kernel.observe(procstat.MapsAtExit())   # after any snapshot: the report shows the last map
        if args.gdb is not None:
            from vmgames.tools.gdb.stub import tap_events

            gdb_tap = tap_events(kernel)   # from exec on, so that 'monitor faults' lists what 'monitor stats' counts
        tlb_check = None
        if args.check_tlb:
            from vmgames.tools.tlbcheck import TLBCheck

            tlb_check = TLBCheck(kernel)      # after the trace's sink, which it passes every event on to
            kernel.observe(tlb_check)
        try:
            init = api.spawn(kernel, program, [args.program] + args.args, args.env)
        except api.CannotRun as error:
            say_error(f"{args.program}: {error.strerror}")
            return error.status
        for fd in closed_fds:
            init.close_fd(fd)     # the host gave us none: neither has the guest
        if break_on is not None:
            kernel.observe(breakon.BreakOn(*break_on))
        limits = RunLimits(args.max_instructions, args.timeout)
        if args.gdb is not None:
            status = _run_under_gdb(kernel, init, args.gdb, gdb_tap)
            if status is not None:
                return status
        else:
            # Ctrl-C ends the run as a limit does; in pdb (--break-on) it is pdb's.
            with limits.enforced(kernel, take_sigint=break_on is None):
                kernel.run()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        ending = limits.ending
        if tlb_check is not None and tlb_check.problems:
            from vmgames.tools.tlbcheck import STATUS

            for problem in tlb_check.problems:
                say_error(f"--check-tlb: {problem}")
            status = STATUS
        elif ending is not None:
            say_error(ending.message)
            status = ending.status
        else:
            if init.death:
                say_error(init.death)
            status = init.shell_status
        if snapshot is not None and snapshot.pause_at is not None:
            due, ended = int(args.snapshot_at), machine.now
            say_error(f"the run ended at t = {ended:,}, "
                   f"{f'before {due:,}' if ended < due else f'as instruction {due:,} ran'}: no snapshot")
        counters = api.counters(kernel, status, ending, args.skip_invalidation)
        if args.stats:
            say(run_stats.format_table(counters))
        if args.stats_json:
            try:
                with open(args.stats_json, "w", encoding="utf-8") as f:
                    json.dump(counters, f, indent=2)
                    f.write("\n")
            except OSError as error:
                say_error(f"--stats-json {args.stats_json}: {error.strerror}")
        return status


def _run_under_gdb(kernel: Kernel, init, address: str, tap: EventTap) -> int | None:
    """Wait for gdb, run the program under it; an exit status if the run cannot go on normally."""
    from vmgames.tools.gdb.protocol import Connection
    from vmgames.tools.gdb.stub import GdbStub, KilledFromGdb, listen

    try:
        server = listen(address)
    except (OSError, OverflowError) as error:
        say_error(f"--gdb {address}: {getattr(error, 'strerror', None) or error}")
        return 2
    with server:
        host, port = server.getsockname()[:2]
        say_error(f"waiting for gdb on {host}:{port} (in gdb: target remote {host}:{port})")
        sock, _ = server.accept()
    stub = GdbStub(kernel, Connection(sock), tap)
    try:
        kernel.run()
    except KilledFromGdb:
        say_error(f"{init.name}[{init.pid}]: killed from gdb")
        return 128 + 9
    stub.finish(init)
    return None


def _finish_trace(sink, stream) -> None:
    """Write the trace's last lines and close it; a write that failed (a full disk) is said, not raised."""
    try:
        try:
            sink.flush()
        finally:
            stream.close()
    except OSError as error:
        say_error(f"--trace {stream.name}: {error.strerror}: the trace stops short of the run")
