"""`python -m mirror` and the console script: the signals that stop a run are noted from the
first step, before the imports, so a signal during start-up still exits 130 (not 143, and not
wherever it would land as KeyboardInterrupt: `mirror.interrupts`); a closed stdout or stderr is
given /dev/null, and stdout escapes what its encoding cannot write; and the cyclic garbage
collector is tuned for a process that makes many short-lived objects."""

from __future__ import annotations

import gc
import io
import os
import sys

from mirror import interrupts

# A sync makes and drops dicts by the million, almost none in a cycle (reference counting
# frees them), yet the default young generation is walked every 700 of them, and survivors
# again in the older ones: 0.6 s of a 17 s `sync --all` (bench/orders.py), in pauses of up to
# 70 ms that hold up the listing. A young generation of 10,000 lets most die before any walk
# (with the imports beside a run kept out too, `sync._uncollected`: 0.01-0.03 s, measured).
GC_THRESHOLDS = (10_000, 10, 10)


def main() -> None:
    interrupts.defer()
    _closed_streams_to_devnull()
    _unencodable_output_escaped()
    gc.set_threshold(*GC_THRESHOLDS)
    from mirror.cli import main as cli_main

    try:
        cli_main()
    finally:
        interrupts.ignore()  # what is left is the interpreter's teardown
        # The interpreter's shutdown collections would walk every object the imports made
        # (0.2 s of every cron run, measured); frozen, they are skipped. Nothing else changes.
        gc.freeze()


def _closed_streams_to_devnull() -> None:
    """A process started with stdout or stderr closed (`>&-`, some supervisors) has None for
    sys.stdout or sys.stderr, and a sync stopped at its first message to them, having done
    nothing (exit 1); each closed descriptor would also be taken by the next file opened, and
    what is written to it would land there. Each gets /dev/null instead, as daemons do.
    (Not stdin: `--from-file -` says it is closed, rather than reading nothing from it.)"""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        if getattr(sys, name) is None:  # a stream for the rest of the process, never closed
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115


def _unencodable_output_escaped() -> None:
    """Under a locale that is not UTF-8 (ISO-8859-1, or PYTHONIOENCODING=ascii), an image
    name with a character the encoding lacks ended a `report` in a traceback. On stdout, as
    on stderr already, such a character is written as an escape (\\U0001f373). (CSV and
    JSON, for programs, are UTF-8 and ASCII whatever the locale.)"""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


if __name__ == "__main__":
    main()
