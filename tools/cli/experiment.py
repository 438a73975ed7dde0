"""vmgames experiment: the experiments, their options checked before minutes of running."""

from __future__ import annotations

import argparse
import os

from vmgames.tools.cli.output import say_error, unwritable_file
from vmgames.tools.cli.parser import parse_size
from vmgames.tools.experiments import zerocopy
from vmgames.tools.experiments.cells import ClusterError, ResumeError, jobs_problem
from vmgames.tools.experiments.programs import ExperimentError


def command_experiment(args: argparse.Namespace) -> int:
    problem = jobs_problem(args.jobs)
    if problem:
        say_error(problem)
        return 2
    command = {"zerocopy": command_zerocopy, "pressure": command_pressure, "prefault": command_prefault,
               "rmap": command_rmap, "chains": command_chains}[args.experiment]
    if args.experiment in ("pressure", "prefault", "rmap"):
        problem = _outputs_problem(args.csv, args.plot)
        if problem:
            say_error(problem)
            return 2
    if args.resume and args.csv is None:
        say_error("--resume needs --csv FILE: the finished cells are in FILE.cells")
        return 2
    try:
        return command(args)
    except (ExperimentError, ClusterError, ResumeError) as error:
        say_error(str(error))
        return 1
    except OSError as error:        # an output that could not be written after all (a full disk, /dev/full)
        # A write that fails as the file is closed names no file: the CSV's is the one closed last.
        say_error(f"{error.filename or args.csv}: {error.strerror or error}")
        return 1


def command_chains(args: argparse.Namespace) -> int:
    from vmgames.tools.experiments import chains

    for name in ("seeds", "steps", "max_depth"):
        if getattr(args, name) < 1:
            say_error(f"--{name.replace('_', '-')} must be at least 1")
            return 2
    if not 1 <= args.pages <= 64:
        say_error("--pages must be between 1 and 64")
        return 2
    problem = unwritable_file(args.csv) if args.csv is not None else None
    if problem:
        say_error(f"--csv {args.csv}: {problem}")
        return 2
    return chains.main(args.seeds, args.steps, args.pages, args.max_depth, args.csv, args.jobs, args.dask,
                       args.resume)


def _choices(option: str, given: list[str], known: list[str] | tuple[str, ...]) -> list[str]:
    """Items of a list option (spaces or commas), checked against `known`; keeps order, drops repeats."""
    items = list(dict.fromkeys(item for text in given for item in text.split(",") if item))
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise ValueError(f"{option}: unknown {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return items


def _cpu_count(text: str) -> int:
    """One CPU count of --cpus: a whole number (checked against the machine's limit by the caller)."""
    if not text.strip().isdigit():
        raise ValueError(f"--cpus: {text!r} is not a number of CPUs (a list like 1,2,4)")
    return int(text)


def _outputs_problem(csv_path: str, plot_dir: str) -> str | None:
    """Why the CSV or the plot directory cannot be written, checked before minutes of running; None if they can."""
    problem = unwritable_file(csv_path)
    if problem:
        return f"--csv {csv_path}: {problem}"
    if os.path.exists(plot_dir) and not os.path.isdir(plot_dir):
        return f"--plot {plot_dir}: not a directory"
    return None


def command_pressure(args: argparse.Namespace) -> int:
    from vmgames.kernel.vm.pageout import PAGE_USED
    from vmgames.tools.experiments import pressure

    try:
        policies = _choices("--policies", [args.policies], PAGE_USED)
        factors = [float(text) for text in args.sizes.split(",") if text]
    except ValueError as error:
        say_error(str(error) if "--policies" in str(error) else f"--sizes: {args.sizes!r} is not a list of numbers "
                  "(multiples of RAM, like 1.25,1.5,2)")
        return 2
    if not factors or any(not 0.1 <= f <= 16 for f in factors):
        say_error("--sizes: each working set is 0.1 to 16 times RAM")
        return 2
    if not 1 <= args.hot <= 100 or not 1 <= args.rounds <= 1000:
        say_error("--hot is 1 to 100 (percent) and --rounds 1 to 1000")
        return 2
    if not 1 << 20 <= args.ram <= 256 << 20 or not 1 << 20 <= args.swap <= 4 << 30:
        say_error("--ram is 1M to 256M and --swap 1M to 4G for this experiment")
        return 2
    return pressure.main(args.ram, args.swap, factors, policies, args.hot, args.rounds, args.csv, args.plot,
                         args.jobs, args.dask, args.resume)


def command_prefault(args: argparse.Namespace) -> int:
    from vmgames.tools.experiments import prefault

    if not 2 <= args.runs <= 100:
        say_error("--runs is 2 to 100: the first run reads the program in, the later ones show what is saved")
        return 2
    if args.program == []:
        say_error("--program: the program to run again and again, and its arguments, come after it")
        return 2
    program = args.program or prefault.default_program()
    if program and not (os.path.isfile(program[0]) and os.access(program[0], os.X_OK)):
        say_error(f"--program {program[0]}: not an executable file")
        return 2
    return prefault.main(args.runs, [os.path.abspath(program[0]), *program[1:]] if program else [], args.csv,
                         args.plot, args.jobs, args.dask, args.resume)


def command_rmap(args: argparse.Namespace) -> int:
    from vmgames.tools.experiments import rmap

    texts = [text for text in args.sharers.split(",") if text.strip()]
    if not texts or not all(text.strip().isdigit() and 1 <= int(text) <= 128 for text in texts):
        say_error(f"--sharers: {args.sharers!r} is not a list of numbers from 1 to 128 (like 1,4,16,32)")
        return 2
    return rmap.main(sorted({int(text) for text in texts}), args.csv, args.plot, args.jobs, args.dask, args.resume)


def command_zerocopy(args: argparse.Namespace) -> int:
    from vmgames.tools import costmodel

    try:
        workloads = _choices("--workloads", args.workloads, list(zerocopy.WORKLOADS))
        modes = _choices("--modes", args.modes, zerocopy.MODES)
        sizes = sorted({parse_size(text) for text in args.sizes for text in text.split(",") if text})
        total = parse_size(args.total)
        cpus = sorted({_cpu_count(text) for words in args.cpus for text in words.split(",")})
    except (ValueError, argparse.ArgumentTypeError) as error:
        say_error(str(error))
        return 2
    if not cpus or any(not 1 <= n <= zerocopy.MAX_CPUS for n in cpus):
        say_error(f"--cpus: each must be from 1 to {zerocopy.MAX_CPUS}")
        return 2
    if not sizes or any(not 1 <= size <= zerocopy.MAX_SEND for size in sizes):
        say_error(f"--sizes: each size must be from 1 byte to {zerocopy.size_text(zerocopy.MAX_SEND)}")
        return 2
    if not 1 <= total <= zerocopy.MAX_TOTAL:
        say_error(f"--total must be from 1 byte to {zerocopy.size_text(zerocopy.MAX_TOTAL)}")
        return 2
    misfits = [zerocopy.size_text(size) for size in sizes if total % size]
    if misfits:
        say_error(f"--total {args.total} is not a multiple of {', '.join(misfits)}: every cell sends whole buffers")
        return 2
    if args.wire_rate < 1:
        say_error("--wire-rate must be at least 1")
        return 2
    # Outputs are checked before minutes of running, not after.
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.csv))):
        say_error(f"--csv {args.csv}: no such directory")
        return 2
    if os.path.exists(args.plot) and not os.path.isdir(args.plot):
        say_error(f"--plot {args.plot}: not a directory")
        return 2
    costs = costmodel.Costs()
    if args.costs:
        try:
            costs = costmodel.load_costs(args.costs)
        except costmodel.CostFileError as error:
            say_error(str(error))
            return 2
    return zerocopy.main(workloads, modes, sizes, total, args.wire_rate, costs, args.csv, args.plot, args.sink,
                         cpus, args.jobs, args.dask, args.resume)
