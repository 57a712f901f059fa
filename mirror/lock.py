"""One sync at a time per database: a lock that dies with the process that holds it.

PostgreSQL: a transaction advisory lock on a dedicated connection (`pg_lock.py`). SQLite: `flock`
on a file beside the database's real path (symlinks resolved), released by the kernel when
the process dies; it needs no SQLAlchemy, so a sync can hold it before importing that.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mirror.config import current_user, file_owner
from mirror.errors import DatabaseUnavailable, LockHeld

if TYPE_CHECKING:  # SQLAlchemy is imported only by what needs it (see `sqlite_file_lock`)
    from sqlalchemy import Engine


def holder_description() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


class HeldLock:
    """The sync lock as held by this run."""

    def ensure_held(self) -> str | None:
        """Make sure the lock is still this run's before it commits again.

        Returns a warning when it had to be taken again; raises LockHeld when another sync
        took it meanwhile, DatabaseUnavailable when the database cannot be reached.
        """
        return None


@contextmanager
def sync_lock(engine: Engine) -> Iterator[HeldLock]:
    """Hold the database's sync lock for the duration; raises LockHeld (exit 75) if taken."""
    if engine.dialect.name == "postgresql":
        from mirror.pg_lock import advisory_lock

        with advisory_lock(engine) as held:
            yield held
        return
    from mirror.config import masked
    from mirror.db import sqlite_path

    database = sqlite_path(engine.url)
    if database is None:
        yield HeldLock()  # a private in-memory database: nothing to share (the CLI refuses it)
        return
    # The file was checked when the engine was made: no lock file beside a non-database.
    with sqlite_file_lock(database, masked(engine.url)):
        yield HeldLock()


@contextmanager
def sqlite_file_lock(database: Path, shown: str) -> Iterator[None]:
    """`flock` on a file beside the SQLite database `database` (`shown` names it in errors),
    keyed on the file itself: through a symlink a second sync finds the same lock. Needs no
    SQLAlchemy, so a sync can take it before that is even imported."""
    real = Path(os.path.realpath(database))
    path = real.with_name(real.name + ".lock")
    try:
        handle: IO[str] = path.open("a+", encoding="utf-8")
    except OSError as exc:
        if path.exists():  # left by another user's run (a `sudo` one): say whose it is
            raise DatabaseUnavailable(
                f"cannot use the database {shown}: cannot open its lock file {path}: "
                f"{exc.strerror} (it {file_owner(path)}; this user is {current_user()}): when "
                "no sync runs, remove it or give it to this user"
            ) from None
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: cannot create its lock file {path}: {exc.strerror}"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(held_message(_file_holder(handle))) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(holder_description()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read())
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started_at']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def held_message(holder: str, mirror: str = "this database") -> str:
    return (
        f"another sync is running against {mirror}: {holder}; "
        "nothing was done, try again when it has finished"
    )
