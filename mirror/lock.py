"""One sync at a time per database: a lock that dies with the process that holds it.

PostgreSQL: a session advisory lock on a dedicated connection (released when the connection
closes, however the process ends). That session can also end under a live run (a server
restart, `pg_terminate_backend`): `HeldLock.ensure_held` checks before every commit and takes
the lock again, or stops the run if another sync has it. SQLite: `flock` on a file beside the
database's real path (symlinks resolved), released by the kernel when the process dies.
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
from typing import IO, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from mirror.config import masked
from mirror.db import (
    APPLICATION_NAME,
    describe_db_error,
    sqlite_path,
)
from mirror.errors import DatabaseUnavailable, LockHeld

# pg_try_advisory_lock takes a bigint: a fixed key that names this application.
ADVISORY_LOCK_KEY = 0x6175746F656E68  # "autoenh"


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
        with _advisory_lock(engine) as held:
            yield held
    else:
        with _file_lock(engine):
            yield HeldLock()


class _AdvisoryLock(HeldLock):
    """A session advisory lock on a connection of its own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def acquire(self) -> None:
        """Take the lock on a new session; raises LockHeld if another session has it."""
        connection = self._engine.connect()
        try:
            connection.execute(text(f"SET application_name = '{APPLICATION_NAME} (lock)'"))
            acquired = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            ).scalar_one()
            connection.commit()
            if not acquired:
                raise LockHeld(_held_message(_postgres_holder(connection)))
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def ensure_held(self) -> str | None:
        connection = self._connection
        if connection is not None:
            try:
                # The lock lives as long as its session: a session that still answers holds it.
                connection.execute(text("SELECT 1")).scalar_one()
                connection.commit()
                return None
            except SQLAlchemyError:
                connection.invalidate()
                connection.close()
                self._connection = None
        try:
            self.acquire()
        except LockHeld as exc:
            raise LockHeld(
                f"this run lost its sync lock (its database session ended: a server restart "
                f"or a terminated session) and another sync took it; stopped before writing "
                f"more, what was committed is kept. {exc}"
            ) from None
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(describe_db_error(self._engine.url, exc)) from None
        return "the sync lock's database session ended (server restart?); lock taken again"

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        except SQLAlchemyError:
            connection.invalidate()  # closing the session releases the lock anyway
        finally:
            connection.close()


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[HeldLock]:
    held = _AdvisoryLock(engine)
    try:
        held.acquire()
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailable(describe_db_error(engine.url, exc)) from None
    try:
        yield held
    finally:
        held.release()


def _postgres_holder(connection: Connection) -> str:
    row = connection.execute(
        text(
            "SELECT a.pid, a.client_addr, a.backend_start, a.application_name "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
        ),
        {"key": ADVISORY_LOCK_KEY},
    ).first()
    connection.commit()
    if row is None:
        session = "a session that has just ended"
    else:
        client = row.client_addr or "a local socket"
        started = row.backend_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        session = (
            f"{row.application_name or 'a session'} from {client} "
            f"(server pid {row.pid}, connected {started})"
        )
    run = _running_run(connection)
    return f"{run}, {session}" if run else session


def _running_run(connection: Connection) -> str | None:
    """The newest run still marked running, as the holder's own words (pid, host, start)."""
    try:
        row = connection.execute(
            text(
                "SELECT id, pid, host, started_at FROM sync_runs "
                "WHERE status = 'running' ORDER BY id DESC LIMIT 1"
            )
        ).first()
        connection.commit()
    except SQLAlchemyError:
        connection.rollback()  # no sync_runs table yet: the holder is still migrating
        return None
    if row is None:
        return None
    return f"run {row.id} (pid {row.pid} on {row.host}, started {row.started_at})"


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = sqlite_path(engine.url)
    if database is None:
        yield  # a private in-memory database: nothing to share (the CLI refuses those)
        return
    # The file was checked when the engine was made: no lock file beside a non-database.
    # Keyed on the file itself: through a symlink a second sync finds the same lock.
    real = Path(os.path.realpath(database))
    path = real.with_name(real.name + ".lock")
    try:
        handle: IO[str] = path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot use the database {masked(engine.url)}: "
            f"cannot create its lock file {path}: {exc.strerror}"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(_held_message(_file_holder(handle))) from None
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


def _held_message(holder: str) -> str:
    return (
        f"another sync is running against this database: {holder}; "
        "nothing was done, try again when it has finished"
    )
