"""The process's limit on open files, for a run's connections.

A run holds one connection per request in flight (`--concurrency`, up to 1024) beside its
database, lock, spool and the interpreter's own files. Linux's usual soft limit is 1024 (with a
far higher hard one), so `--concurrency 1024` failed to connect with "Too many open files",
reported as an unreachable API. The soft limit is raised towards the hard one when the run
needs it, as Go's runtime does for every program.
"""

from __future__ import annotations

import resource
from contextlib import suppress

SPARE_FILES = 64  # the database and its lock, the spool, the interpreter's own files


def allow_open_files_for(concurrency: int) -> None:
    """Raise the soft RLIMIT_NOFILE to what `concurrency` connections need, within the hard
    limit. Where the hard limit is lower too, nothing changes, and connections that cannot be
    made say "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = concurrency + SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
