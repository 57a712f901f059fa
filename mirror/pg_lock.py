"""The PostgreSQL sync lock: a transaction advisory lock, in a transaction kept open for the run
on a connection of its own.

Released when that transaction ends, or its connection closes, however the process ends. A
transaction rather than a session holds it, as a pooler in transaction mode (pgbouncer, the
"transaction" port of hosted services) keeps a client on one server session only for the length
of a transaction: a session lock stayed behind on a pooled session after the run, and the next
sync routed to that session took it again beside a running one. The session can also end under
a live run (a server restart, `pg_terminate_backend`): `ensure_held` checks before every commit
and takes the lock again, or stops the run if another sync has it.

Advisory locks belong to a database, a mirror to the schema its tables are in (the first of
`search_path`): two mirrors in two schemas of one database (two accounts on a hosted plan with
one database) each have a key of their own, so their cron jobs do not exclude each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from mirror.db import APPLICATION_NAME, describe_db_error
from mirror.errors import DatabaseUnavailable, LockHeld
from mirror.lock import HeldLock, held_message

# pg_try_advisory_lock takes a bigint: a fixed key that names this application, for a mirror
# in the `public` schema (the key of every earlier version), one derived from it for another.
ADVISORY_LOCK_KEY = 0x6175746F656E68  # "autoenh"


def lock_key(schema: str | None) -> int:
    """The advisory lock's key for a mirror whose tables are in `schema`."""
    if schema in (None, "public"):
        return ADVISORY_LOCK_KEY
    digest = hashlib.blake2b(f"{ADVISORY_LOCK_KEY}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # a positive bigint


class _AdvisoryLock(HeldLock):
    """A transaction advisory lock, its transaction open on a connection of its own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._key = ADVISORY_LOCK_KEY

    def acquire(self) -> None:
        """Take the lock in a new transaction, left open; raises LockHeld if another session
        has it. The transaction touches no table, so it holds back neither migrations nor
        vacuum."""
        connection = self._engine.connect()
        try:
            connection.execute(text(f"SET application_name = '{APPLICATION_NAME} (lock)'"))
            # A server's timeout for idle transactions would end the lock's: not for this one.
            connection.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            self._key = lock_key(schema)
            # The key inline, an int: the portal of a bound parameter keeps its snapshot until
            # the next statement, and held back vacuum's horizon meanwhile.
            acquired = connection.execute(
                text(f"SELECT pg_try_advisory_xact_lock({self._key:d})")
            ).scalar_one()
            if not acquired:
                holder = _postgres_holder(connection, self._key)
                own_key = self._key != ADVISORY_LOCK_KEY
                mirror = f"the mirror in schema {schema}" if own_key else "this database"
                raise LockHeld(held_message(holder, mirror))
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def ensure_held(self) -> str | None:
        connection = self._connection
        if connection is not None:
            try:
                # The lock lives as long as its transaction: one that still answers holds it.
                connection.execute(text("SELECT 1")).scalar_one()
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
            connection.rollback()  # ends the transaction, and with it the lock
        except SQLAlchemyError:
            connection.invalidate()  # closing the session releases the lock anyway
        finally:
            connection.close()


@contextmanager
def advisory_lock(engine: Engine) -> Iterator[HeldLock]:
    held = _AdvisoryLock(engine)
    try:
        held.acquire()
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailable(describe_db_error(engine.url, exc)) from None
    try:
        yield held
    finally:
        held.release()


def _postgres_holder(connection: Connection, key: int) -> str:
    row = connection.execute(
        text(
            "SELECT a.pid, a.client_addr, a.backend_start, a.application_name "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
        ),
        {"key": key},
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
