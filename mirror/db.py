"""Engines, Alembic migrations driven from code, and the schema-version guard."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from mirror.config import POOLER_PARAMETER, Redactor, check_sqlite_path, masked
from mirror.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    FatalError,
    InputError,
    NoMirror,
    TransientDatabaseError,
)
from mirror.schema import (
    SCHEMA_HEAD,
    SCHEMA_REVISIONS,
    outdated_revision,
    someone_elses_tables,
    unknown_revision,
)
from mirror.sqlite_rebuild import views_and_triggers_set_aside

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic itself is imported only when a migration runs: it is a fifth of the start-up time
# of every sync, which normally finds the schema current.
#

DEFAULT_LOCK_TIMEOUT = 30.0  # seconds to wait for another process's or session's lock
LOCK_TIMEOUT_VARIABLE = "MIRROR_LOCK_TIMEOUT"
# Its first name, when only SQLite's lock was waited for; still read.
_OLD_LOCK_TIMEOUT_VARIABLE = "MIRROR_SQLITE_BUSY_TIMEOUT"


def lock_timeout() -> float:
    """MIRROR_LOCK_TIMEOUT (or MIRROR_SQLITE_BUSY_TIMEOUT, its first name), in seconds, else
    the default: how long a statement waits for a lock that another process (SQLite) or
    session (PostgreSQL) holds before the run stops with exit 75. Waiting without end, a
    cron job hung behind a transaction somebody left open, and every later run exited 75."""
    for name in (LOCK_TIMEOUT_VARIABLE, _OLD_LOCK_TIMEOUT_VARIABLE):
        raw = os.environ.get(name, "")
        if raw.strip():
            break
    else:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name} must be seconds, not {raw!r}") from None
    if not 0 <= value <= 86_400:
        raise InputError(f"{name} must be 0 to 86400 seconds, not {raw!r}")
    return value


APPLICATION_NAME = "autoenhance-mirror"  # what pg_stat_activity shows for our sessions


def migrations_path() -> Path:
    """The migrations shipped inside the wheel, else those of the source checkout."""
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def create_db_engine(url: URL, *, writing: bool = False) -> Engine:
    """An engine for `url`; SQLite gets a busy timeout so readers never fail a sync.

    Raises InputError for a URL the driver rejects (say a SQLite URL with a host), and
    DatabaseUnavailable for a SQLite file that cannot be one, or (`writing`: for a command
    that writes) that this user may not write (`check_sqlite_file`).
    """
    # Checked here, before this process has any connection to the file: opening and closing
    # another descriptor of a SQLite database later would drop the POSIX locks that SQLite
    # holds on it (sqlite.org/howtocorrupt.html, 2.2).
    check_sqlite_file(url, writing=writing)
    try:
        return _create_engine(url)
    except ArgumentError as exc:
        redact = Redactor.for_run(api_key=None, database_url=url)
        first_line = str(exc).splitlines()[0]
        raise InputError(f"--database-url {redact(first_line)}") from None


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        timeout = lock_timeout()
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {
        "connect_timeout": 10,
        "application_name": APPLICATION_NAME,
        # Python's text on the wire is UTF-8 whatever PGCLIENTENCODING says: with LATIN1 there
        # the driver could not encode an image name in Japanese, and its batch was lost.
        "client_encoding": "utf8",
    }
    if behind_transaction_pooler(url):
        # Behind a pooler in transaction mode, a statement psycopg prepared in one transaction
        # is missing, or already there, on the server session of the next one. Elsewhere it
        # is kept: preparing saves the server 15 % of a CPU-bound sync.
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        url.difference_update_query([POOLER_PARAMETER]),
        pool_pre_ping=True,  # a connection the server dropped is replaced, not used
        connect_args=connect_args,
    )
    # SET LOCAL in each transaction, not SET once per session: behind a pooler a session's
    # setting would stay on a server session that other clients are given next.
    event.listen(engine, "begin", _PostgresLockTimeout(lock_timeout()))
    event.listen(engine, "connect", _Utf8Check(masked(url)))
    asked = search_path_asked(url)
    if asked is not None:
        event.listen(engine, "connect", _SearchPathCheck(asked, masked(url)))
    return engine


def search_path_asked(url: URL) -> str | None:
    """The search_path that the URL's libpq `options` set, if any: `-csearch_path=a`,
    `-c search_path=a` or `--search_path=a` (dashes in the name stand for underscores)."""
    options = url.query.get("options")
    if not isinstance(options, str):
        return None
    words = options.split()
    for index, word in enumerate(words):
        if word == "-c" and index + 1 < len(words):
            setting = words[index + 1]
        elif word.startswith(("-c", "--")):
            setting = word[2:]
        else:
            continue
        name, _, value = setting.partition("=")
        if name.replace("-", "_").lower() == "search_path":
            return value
    return None


class _SearchPathCheck:
    """Each new session must have the search_path the URL asked for. A pooler that drops the
    `options` startup parameter (pgbouncer's `ignore_startup_parameters = options`) left
    `public` in its place without a word, and a sync meant for one schema's mirror wrote into
    another's."""

    def __init__(self, asked: str, shown: str) -> None:
        self._asked = asked
        self._shown = shown

    def __call__(self, dbapi_connection: Any, _record: Any) -> None:
        got = str(dbapi_connection.execute("SHOW search_path").fetchone()[0])
        dbapi_connection.rollback()
        if _schema_names(got) != _schema_names(self._asked):
            raise DatabaseUnavailable(
                f"cannot use the database {self._shown}: its options set search_path to "
                f"{self._asked}, but the session has {got}: something between this tool and "
                "the server (a pooler) dropped them, and the mirror would be another schema's. "
                "Connect to the server itself, or give the role that search_path: ALTER ROLE "
                f"... SET search_path = {self._asked}"
            )


class _Utf8Check:
    """The mirror keeps what the API sends, in any script and with emoji, which only a UTF8
    database holds. In a LATIN1 one the first image name beyond Latin-1 failed its whole batch
    (with a traceback), again on every run after; in SQL_ASCII not even the schema was made."""

    def __init__(self, shown: str) -> None:
        self._shown = shown

    def __call__(self, dbapi_connection: Any, _record: Any) -> None:
        encoding = dbapi_connection.info.parameter_status("server_encoding")
        if encoding is None:  # not reported at start-up (a pooler may not pass it on)
            encoding = dbapi_connection.execute("SHOW server_encoding").fetchone()[0]
            dbapi_connection.rollback()
        if isinstance(encoding, bytes):
            encoding = encoding.decode("ascii", "replace")
        if encoding.upper() not in ("UTF8", "UNICODE"):
            raise DatabaseUnavailable(
                f"cannot use the database {self._shown}: it is encoded {encoding}, and what the "
                "API sends (image names in any script, emoji) needs UTF8: create the mirror's "
                "database with CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0 (pg_dump "
                "and pg_restore copy an existing mirror over)"
            )


class _PostgresLockTimeout:
    """Bounds each transaction's wait for a lock another session holds (`lock_timeout`): a
    transaction left open in psql on a row of `images` held a sync for as long as it stayed
    open, and SIGTERM could not stop the run before it ended."""

    def __init__(self, seconds: float) -> None:
        self._statement = pg_lock_timeout_statement(seconds)

    def __call__(self, connection: Connection) -> None:
        connection.exec_driver_sql(self._statement)


def lock_timeout_statement(dialect: str, seconds: float) -> str:
    """The statement that bounds the wait for another's lock: SQLite's busy timeout (for the
    connection) or PostgreSQL's lock_timeout (for the transaction)."""
    if dialect == "sqlite":
        return f"PRAGMA busy_timeout={int(seconds * 1000)}"
    return pg_lock_timeout_statement(seconds)


def pg_lock_timeout_statement(seconds: float) -> str:
    """`SET LOCAL lock_timeout`, in whole milliseconds; at least 1, as 0 means no limit there."""
    return f"SET LOCAL lock_timeout = {max(1, round(seconds * 1000)):d}"


def _schema_names(search_path: str) -> list[str]:
    return [name.strip().strip('"') for name in search_path.split(",") if name.strip()]


def behind_transaction_pooler(url: URL) -> bool:
    """The URL says so with `?pgbouncer=true`, the switch Prisma made known."""
    return url.query.get(POOLER_PARAMETER) == "true"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Safe in WAL mode (a power cut may lose the last commits, never corrupt); with a
    # rollback journal only FULL, the default, is.
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        cursor.execute("PRAGMA synchronous=NORMAL")
    # 32 MiB of page cache: random UUID keys touch every page of the primary key index.
    cursor.execute("PRAGMA cache_size=-32768")
    # Checkpoint every ~40 MiB of WAL rather than 4 MiB: far fewer fsyncs in a long sync.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def use_wal(engine: Engine) -> None:
    """SQLite, for the length of a sync: write-ahead logging, so that readers (`status`,
    `report`, anyone's sqlite3) read while it writes. `leave_wal` ends it."""
    if engine.dialect.name != "sqlite":
        return
    with connect(engine) as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
        # SQLite keeps the rollback journal, silently, where WAL cannot work (no shared
        # memory): then only synchronous=FULL is safe, and it stays.
        if mode == "wal":
            connection.exec_driver_sql("PRAGMA synchronous=NORMAL")


def leave_wal(engine: Engine) -> None:
    """SQLite, at the end of a sync: back to a rollback journal, which also checkpoints and
    deletes the -wal file. Between syncs, then, a reader needs no write access beside the file,
    and leaves no -wal or -shm file behind: in WAL mode a reader who may not write the
    database can delete neither, and the next sync, as another user, could not open them.
    While anyone else has the database open it stays in WAL mode, until a later sync ends."""
    if engine.dialect.name != "sqlite":
        return
    engine.dispose()  # this process's other connections would hold it in WAL mode too
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(lock_timeout_statement("sqlite", 0))
            connection.exec_driver_sql("PRAGMA journal_mode=DELETE")
    except SQLAlchemyError:
        pass  # "database is locked": a reader has it open
    finally:
        engine.dispose()


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection; any database error, connecting or inside the block, is raised as
    `database_error`'s exception (exit 3, or 75 for another's lock held past the timeout)."""
    try:
        connection = engine.connect()
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(engine, exc) from None
    with connection:
        try:
            yield connection
        except SQLAlchemyError as exc:
            raise database_error(engine, exc) from None


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def check_sqlite_file(url: URL, *, writing: bool = False) -> None:
    """`check_sqlite_path` for a SQLite URL (nothing to check for PostgreSQL, whose
    privileges are the server's to check: `_privilege_hint`)."""
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_path(path, masked(url), writing=writing)


def sqlite_file_missing(url: URL) -> bool:
    path = sqlite_path(url)
    return path is not None and not path.exists()


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout passed


def database_error(engine: Engine, exc: BaseException) -> FatalError | DatabaseBusy:
    """The exception to raise for a database error: DatabaseBusy (exit 75) when another
    process (SQLite's "database is locked") or session (PostgreSQL's lock_timeout) held a
    lock past the lock timeout, else DatabaseUnavailable (3), as TransientDatabaseError when
    one more try may succeed."""
    url = engine.url
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if url.get_backend_name() == "sqlite":
        if "locked" in str(original):
            return DatabaseBusy(
                f"another process holds a lock on the database {masked(url)} "
                f"(waited {lock_timeout():g} s: {original}); nothing was lost, "
                "try again when it has finished (a long transaction open in a sqlite3 shell, a "
                "read still going as a sync starts, or a backup, holds it)"
            )
    elif getattr(original, "sqlstate", None) == LOCK_NOT_AVAILABLE:
        return DatabaseBusy(
            f"another session holds a lock on the database {masked(url)} (waited "
            f"{lock_timeout():g} s, {LOCK_TIMEOUT_VARIABLE}){_lock_holders(engine)}; nothing "
            "was lost, try again when it has finished (a transaction left open in psql or "
            "another client, VACUUM FULL, or ALTER TABLE or CREATE INDEX on the mirror's "
            "tables holds such locks; COMMIT or ROLLBACK in that session ends one, so does "
            "SELECT pg_terminate_backend(pid))"
        )
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return TransientDatabaseError(describe_db_error(url, exc))
    return DatabaseUnavailable(describe_db_error(url, exc))


_MAX_HOLDERS_NAMED = 3


def _lock_holders(engine: Engine) -> str:
    """`: held by pid 4711 (psql, role ana, from 10.0.0.5, idle in transaction since ...,
    RowExclusiveLock on images)`: the other sessions whose transactions hold locks on the
    mirror's tables, the oldest first; empty when they cannot be read (a role that may not
    see other roles' sessions sees no pids)."""
    statement = text(
        "SELECT a.pid, a.application_name, a.usename, a.client_addr, a.state, a.xact_start, "
        "  string_agg(DISTINCT l.mode || ' on ' || c.relname, ', ') AS locks "
        "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p') "
        "  AND a.pid <> pg_backend_pid() "
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "  AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
        "GROUP BY a.pid, a.application_name, a.usename, a.client_addr, a.state, a.xact_start "
        "ORDER BY a.xact_start NULLS LAST"
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
    except (SQLAlchemyError, OSError):
        return ""
    named = [_holder(row) for row in rows[:_MAX_HOLDERS_NAMED]]
    if not named:
        return ""
    more = len(rows) - len(named)
    return ": held by " + "; ".join(named) + (f"; and {more} more" if more else "")


def _holder(row: Any) -> str:
    pid, application, role, client, state, since, locks = row
    # Of another role's session only its pid, role and application are shown, outside
    # superusers and pg_read_all_stats: the rest is NULL then.
    where = f", from {client}" if client else ""
    opened = f" since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    named = application or "no application name"
    state = state or "its state hidden from this role"
    return f"pid {pid} ({named}, role {role}{where}, {state}{opened}, {locks})"


def describe_db_error(url: URL, exc: BaseException) -> str:
    """A one-line message naming the database (password masked) and the driver's reason."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    # A server's error without libpq's echo of the statement (`LINE 2: CREATE TABLE ... ^`).
    diag = getattr(original, "diag", None)
    primary = getattr(diag, "message_primary", None)
    reason = " ".join(str(primary or original).split()) or type(original).__name__
    sqlstate = getattr(original, "sqlstate", None)
    role = url.username or "the role"
    if sqlstate == INSUFFICIENT_PRIVILEGE:
        reason += _privilege_hint(role, reason)
    elif sqlstate == QUERY_CANCELED:
        reason += _timeout_hint(role)
    elif sqlstate in PREPARED_STATEMENT_MISMATCH:
        reason += _pooler_hint()
    elif "unsupported startup parameter: options" in reason:
        reason += _options_hint()
    elif sqlstate == READ_ONLY_SQL_TRANSACTION:
        reason += (
            " (the server takes no writes here: a read replica, or default_transaction_read_only "
            "set on the database or role; point --database-url at the primary)"
        )
    elif sqlstate == DEPENDENT_OBJECTS_STILL_EXIST:
        reason += _dependents_hint(getattr(diag, "message_detail", None))
    elif sqlstate == INVALID_SCHEMA_NAME:
        reason += (
            " (the search_path, from the URL's options or the role's settings, names no schema "
            f"that exists here: create it first, CREATE SCHEMA name AUTHORIZATION {role}, or "
            "correct the name)"
        )
    redact = Redactor.for_run(api_key=None, database_url=url)
    return redact(f"cannot use the database {masked(url)}: {reason}")


INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATEs, whatever the server's language
QUERY_CANCELED = "57014"
DEPENDENT_OBJECTS_STILL_EXIST = "2BP01"
READ_ONLY_SQL_TRANSACTION = "25006"
INVALID_SCHEMA_NAME = "3F000"  # "no schema has been selected to create in"
# "prepared statement ... already exists" / "does not exist": sessions shared by a pooler
PREPARED_STATEMENT_MISMATCH = ("42P05", "26000")


def _privilege_hint(role: str, reason: str) -> str:
    """What to grant, by what was refused: tables or sequences another role owns, a migration
    only their owner may run, else what a new user on PostgreSQL 15+ meets first: a role that
    may log in to a database it does not own may no longer create tables in its `public`
    schema."""
    if _ON_TABLES.search(reason):
        return _table_privilege_hint(role)
    if _NOT_OWNER.search(reason):
        return _owner_hint(role)
    return (
        f" (the role {role} lacks a privilege on this database: a sync creates and migrates "
        f"the mirror's tables, so give it a database it owns, CREATE DATABASE mirror OWNER "
        f"{role}, or GRANT CREATE ON SCHEMA public TO {role}, which PostgreSQL 15 and later no "
        f"longer grant to every role; status and report only read: GRANT SELECT ON ALL TABLES "
        f"IN SCHEMA public TO {role})"
    )


# "permission denied for table images" / "for sequence sync_runs_id_seq", in English; other
# server languages get the general hint.
_ON_TABLES = re.compile(r"permission denied for (table|sequence) ")
_NOT_OWNER = re.compile(r"must be owner of (table|relation|sequence|index) ")


def _table_privilege_hint(role: str) -> str:
    """Tables another role owns (made by an administrator's `db upgrade`), and a role that may
    only use them: the general hint (a database of its own, CREATE on the schema) was beside
    the point there."""
    return (
        f" (the mirror's tables belong to another role, and {role} may not write them: a sync "
        f"reads and writes every one, so their owner runs GRANT SELECT, INSERT, UPDATE ON ALL "
        f"TABLES IN SCHEMA public TO {role} and GRANT USAGE ON ALL SEQUENCES IN SCHEMA public "
        f"TO {role}, and runs `autoenhance-mirror db upgrade` itself after each upgrade of the "
        f"tool; or makes the tables the role's own: ALTER TABLE ... OWNER TO {role}; status "
        f"and report only read: GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role})"
    )


def _owner_hint(role: str) -> str:
    """A role that may write the tables but does not own them, after an upgrade of the tool:
    only the owner may migrate them."""
    return (
        f" (the mirror's schema is older than this version, and only the owner of its tables "
        f"may migrate it, which {role} is not: run `autoenhance-mirror db upgrade` once with "
        "the owner's --database-url, then syncs go on; nothing was changed)"
    )


def _pooler_hint() -> str:
    """A pooler in transaction mode lends each transaction whichever server session is free,
    and psycopg's prepared statements belong to one session."""
    return (
        " (a pooler in transaction mode between this tool and the server? then add "
        f"{POOLER_PARAMETER}=true to the URL's query, or connect to the server itself or to a "
        "pooler in session mode)"
    )


def _dependents_hint(detail: str | None) -> str:
    """A downgrade that drops a column or table someone's own view or rule uses: PostgreSQL
    names them only in the error's detail."""
    named = "; ".join(" ".join(line.split()) for line in (detail or "").splitlines())
    return (
        f" ({named or 'other objects depend on it'}: drop them, or change them so that they "
        "no longer use it, and run the command again; nothing was changed)"
    )


def _options_hint() -> str:
    """pgbouncer's answer to `options` (a schema picked in the URL) unless told to drop them:
    a pooler gives its server sessions to every client, so it cannot set one client's."""
    return (
        " (a pooler between this tool and the server, which does not pass options on: drop "
        "them from the URL, and give the role its search_path instead: ALTER ROLE ... SET "
        "search_path = ...)"
    )


def _timeout_hint(role: str) -> str:
    """Managed PostgreSQL services often give roles a statement_timeout; a batch that waits on
    a lock, or a migration of a big table, can outlast it."""
    return (
        " (the server cancelled the statement: a statement_timeout of the role or database, "
        "or an administrator; what was committed before is kept. A sync needs no time limit: "
        f"ALTER ROLE {role} SET statement_timeout = 0)"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code: no ini file, no URL, the live connection handed over."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_path()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no Alembic stamp (an empty database, or not ours)
    head: str
    known: bool  # the current revision exists in this code's migrations

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_state(connection: Connection) -> SchemaState:
    current = None
    if inspect(connection).has_table("alembic_version"):
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    connection.commit()
    known = current is None or current in SCHEMA_REVISIONS
    return SchemaState(current=current, head=SCHEMA_HEAD, known=known)


def ensure_schema(engine: Engine, *, allow_upgrade: bool = True) -> SchemaState:
    """Bring the database to the code's head revision, or refuse one the code does not know.

    An empty or older database is migrated (unless `allow_upgrade` is false, then only an
    empty one is). Raises SchemaMismatch for a newer/unknown revision or an un-stamped database
    that already holds our tables, DatabaseUnavailable when the database cannot be used.
    """
    with connect(engine) as connection:
        state = schema_state(connection)
        if state.up_to_date:
            return state
        _refuse_unusable(connection, state, allow_upgrade=allow_upgrade)
        from alembic import command

        with atomic_ddl(connection):
            command.upgrade(alembic_config(connection), "head")
        return schema_state(connection)


def comparable_mirror(engine: Engine) -> bool:
    """For a dry run, which creates and migrates nothing: whether there is a mirror at the
    code's schema to compare with (False: nothing there yet, so everything is new). Raises
    SchemaMismatch for a database it cannot compare with: older or newer than the code, or
    holding an `images` table that autoenhance-mirror did not make."""
    if sqlite_file_missing(engine.url):
        return False  # and is not created by connecting
    with connect(engine) as connection:
        state = schema_state(connection)
        if not state.up_to_date:
            _refuse_unusable(connection, state, allow_upgrade=False)
    return state.current is not None


def _refuse_unusable(connection: Connection, state: SchemaState, *, allow_upgrade: bool) -> None:
    """Raise SchemaMismatch for a schema that is not the code's and may not be brought to it:
    unknown to the code, older when `allow_upgrade` is false, or someone else's tables."""
    if not state.known:
        raise unknown_revision(str(state.current))
    if state.current is None:
        if inspect(connection).has_table("images"):
            raise someone_elses_tables()
    elif not allow_upgrade:
        raise outdated_revision(state.current)


@contextmanager
def atomic_ddl(connection: Connection) -> Iterator[None]:
    """Commit a migration as one unit, or nothing of it.

    PostgreSQL's DDL is transactional already. Python's sqlite3 driver commits before each
    CREATE/ALTER on its own, so an interrupted first run could leave tables without an
    Alembic stamp; here the driver is told to keep out and one real transaction wraps it all.
    Foreign keys are off meanwhile and checked before the commit, and views and triggers are
    set aside, as SQLite's own recipe for rebuilding a table asks (batch migrations drop and
    re-create tables others refer to).
    """
    if connection.dialect.name != "sqlite":
        yield
        connection.commit()
        return
    connection.commit()
    raw: Any = connection.connection.driver_connection
    saved = raw.isolation_level
    raw.isolation_level = None  # the driver issues no BEGIN/COMMIT of its own
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            with views_and_triggers_set_aside(connection):
                yield
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise RuntimeError(f"the migration broke a foreign key: {tuple(broken)}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        raw.isolation_level = saved


def open_mirror(engine: Engine, *, current: bool = False) -> SchemaState:
    """The schema state of an existing mirror, creating nothing: for `status`, `db current`.

    Raises NoMirror when there is none: no SQLite file, or a database without our tables;
    with `current`, SchemaMismatch for a schema older or newer than the code's (`report`).
    """
    state, absence = _mirror_state(engine)
    if state is None:
        elsewhere = "; --database-url or MIRROR_DATABASE_URL names another" * (absence == NO_FILE)
        raise NoMirror(
            f"no mirror at {masked(engine.url)}: {absence} (a first `autoenhance-mirror sync` "
            f"creates it{elsewhere})"
        )
    if current and not state.known:
        raise unknown_revision(str(state.current))
    if current and not state.up_to_date:
        raise outdated_revision(str(state.current))
    return state


NO_FILE = "the file does not exist"
NO_SCHEMA = "the database holds no autoenhance-mirror schema"


def mirror_absence(engine: Engine) -> str | None:
    """Why there is no mirror behind `engine` (NO_FILE, NO_SCHEMA), or None when there is
    one, at any revision; creates nothing."""
    return _mirror_state(engine)[1]


def _mirror_state(engine: Engine) -> tuple[SchemaState | None, str | None]:
    if sqlite_file_missing(engine.url):
        return None, NO_FILE
    with connect(engine) as connection:
        state = schema_state(connection)
    return (state, None) if state.current is not None else (None, NO_SCHEMA)


def drops_mirror(state: SchemaState, revision: str) -> bool:
    """Whether downgrading from `state` to `revision` goes below the first revision, which
    drops every table with the mirrored data (`base`, or a relative `-N` that far)."""
    if revision == "base":
        return True
    if revision.startswith("-") and revision[1:].isdecimal() and state.current is not None:
        position = SCHEMA_REVISIONS.index(state.current) if state.known else len(SCHEMA_REVISIONS)
        return position - int(revision[1:]) < 0
    return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run_command(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run_command(engine, "downgrade", revision)


def current_revision(engine: Engine) -> SchemaState:
    """The revision of an existing mirror; raises NoMirror where there is none."""
    return open_mirror(engine)


def _run_command(engine: Engine, name: str, revision: str) -> None:
    from alembic import command
    from alembic.util.exc import CommandError

    with connect(engine) as connection:
        try:
            with atomic_ddl(connection):
                getattr(command, name)(alembic_config(connection), revision)
        except CommandError as exc:
            raise InputError(f"alembic: {exc}") from None
