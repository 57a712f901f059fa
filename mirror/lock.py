"""One sync at a time per database: a lock that dies with the process that holds it.

PostgreSQL: a session advisory lock on a dedicated connection (released when the connection
closes, however the process ends). SQLite: `flock` on a file beside the database (released by
the kernel when the process dies, `kill -9` included).
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
from mirror.db import APPLICATION_NAME, connect, describe_db_error
from mirror.errors import DatabaseUnavailable, LockHeld

# pg_try_advisory_lock takes a bigint: a fixed key that names this application.
ADVISORY_LOCK_KEY = 0x6175746F656E68  # "autoenh"


def holder_description() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


@contextmanager
def sync_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's sync lock for the duration; raises LockHeld (exit 75) if taken."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
    else:
        with _file_lock(engine):
            yield


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with connect(engine) as connection:
        try:
            connection.execute(text(f"SET application_name = '{APPLICATION_NAME} (lock)'"))
            acquired = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            ).scalar_one()
            connection.commit()
            if not acquired:
                raise LockHeld(_held_message(_postgres_holder(connection)))
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(describe_db_error(engine.url, exc)) from None
        try:
            yield
        finally:
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()
            except SQLAlchemyError:
                connection.invalidate()  # closing the session releases the lock anyway


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
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database: nothing to share
        return
    path = Path(database + ".lock")
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
