"""Defaults, database URL normalising and secret masking: everything a cron line configures."""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from mirror.errors import DatabaseUnavailable, InputError

if TYPE_CHECKING:  # SQLAlchemy is imported when a URL is parsed: `--help` must stay fast
    from sqlalchemy.engine import URL

DEFAULT_DATABASE_URL = "sqlite:///autoenhance-mirror.db"
# The demo's own file: sample images never land in the mirror `sync` writes by default.
DEMO_DATABASE_URL = "sqlite:///autoenhance-mirror-demo.db"
DEFAULT_BASE_URL = "https://api.autoenhance.ai"
# Pinned so the response shape cannot change under the mirror (api-notes.md §2).
DEFAULT_API_VERSION = "2025-08-31"
DEFAULT_MAX_RATE = 100.0
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3

_POSTGRES_ALIASES = {"postgresql", "postgres"}
POOLER_PARAMETER = "pgbouncer"  # ?pgbouncer=true: a PostgreSQL URL of a transaction pooler


_URL_ADVICE = (
    "expected e.g. sqlite:///autoenhance-mirror.db, a file path (mirror.db), or "
    "postgresql://user:password@host/dbname; reserved characters in a user name or password "
    "(@ : / ? # % and spaces) must be percent-encoded, e.g. @ as %40"
)


def parse_database_url(raw: str) -> URL:
    """Parse a database URL, picking psycopg 3 for plain `postgresql://` (and `postgres://`) URLs.

    A plain file path is a SQLite database; `~` is expanded in SQLite paths. Raises InputError
    for what cannot be used: a URL that does not parse or is ambiguous (an unencoded `@` in a
    password), a driver that is not installed, an in-memory SQLite database. The message never
    repeats the URL past its scheme (it may hold a password).
    """
    from sqlalchemy.engine import URL, make_url

    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    refuse_stray_characters(
        "--database-url (or MIRROR_DATABASE_URL)",
        raw,
        shown=f"{scheme}://***" if "://" in raw else repr(raw),
        names="database",
    )
    if "://" not in raw and raw.strip():
        return URL.create("sqlite", database=os.path.expanduser(raw))
    shown = f"{scheme}://***" if scheme else "(empty)"
    try:
        url = make_url(raw)
        url.port  # noqa: B018 (parsed lazily by some versions: a bad port raises here)
    except Exception:
        raise InputError(f"--database-url {shown} is not a database URL; {_URL_ADVICE}") from None
    if url.host is not None and ("@" in url.host or "/" in url.host):
        raise InputError(
            f"--database-url {shown} has more than one @ before the host; {_URL_ADVICE}"
        )
    if url.drivername in _POSTGRES_ALIASES:
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise InputError(f"unsupported database {backend!r}; use sqlite:/// or postgresql://")
    try:
        url.get_dialect().import_dbapi()
    except Exception:
        raise InputError(
            f"--database-url {shown}: the driver {url.drivername!r} is not installed; "
            "write plain postgresql://user:password@host/dbname (psycopg 3 is used)"
        ) from None
    pooler = url.query.get(POOLER_PARAMETER)
    if pooler is not None and (backend != "postgresql" or pooler not in ("true", "false")):
        raise InputError(
            f"--database-url {shown}: {POOLER_PARAMETER}={pooler} is not understood; "
            f"add {POOLER_PARAMETER}=true to a postgresql:// URL that reaches the server through "
            "a pooler in transaction mode"
        )
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise InputError(
                "--database-url names an in-memory SQLite database, which would be gone when "
                "the run ends; give a file, e.g. sqlite:///autoenhance-mirror.db or mirror.db"
            )
        url = url.set(database=os.path.expanduser(database))
    return url


def plain_sqlite_path(raw: str) -> str | None:
    """The file of a SQLite database written plainly (a path, or `sqlite:///path` with
    nothing to decode), read without importing SQLAlchemy; None for anything else, which
    `parse_database_url` parses in full. Agrees with it on what it accepts."""
    if "://" not in raw:
        return os.path.expanduser(raw) if raw.strip() else None
    prefix = "sqlite:///"
    path = raw[len(prefix) :]
    if not raw.startswith(prefix) or not path or any(c in path for c in "?#%"):
        return None
    if path == ":memory:" or path.startswith("file:") or not path.isprintable():
        return None
    return os.path.expanduser(path)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_path(path: Path, shown: str, *, writing: bool = False) -> None:
    """Before SQLite creates or opens anything: its directory must exist, and an existing
    file must be a SQLite database (or empty); `writing`: `_check_writable` too. Raises
    DatabaseUnavailable naming the cause (`shown`: the database as the user may see it)."""
    directory = path.parent
    if not directory.is_dir():
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: the directory {directory} does not exist; "
            "create it, or point --database-url elsewhere"
        )
    try:
        with path.open("rb") as file:
            header = file.read(_WAL_VERSION_AT + 2)
    except FileNotFoundError:
        header = b""
    except IsADirectoryError:
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: {path} is a directory"
        ) from None
    except PermissionError as exc:
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: {exc.strerror} ({path} {file_owner(path)}; "
            f"this user is {current_user()})"
        ) from None
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: {exc.strerror or exc}"
        ) from None
    if header and not header.startswith(SQLITE_HEADER):
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: {path} is not a SQLite database "
            "(file is not a database); nothing was changed"
        )
    # SQLite keeps its -wal, -shm and journal beside the file a symlink names.
    real = Path(os.path.realpath(path))
    if writing:
        _check_writable(real, shown)
    if _needs_shared_memory_file(real, header) and not _may_write(real.parent):
        raise DatabaseUnavailable(
            f"cannot use the database {shown}: it is in WAL mode, and SQLite cannot open it "
            f"without creating {real.name}-shm beside it, which this user may not do in "
            f"{real.parent}: give this user write access to that directory, or read a copy "
            "of the file"
        )


_WAL_VERSION_AT = 18  # the header's file format write and read versions: 2 and 2 in WAL mode


def _check_writable(path: Path, shown: str) -> None:
    """Before a run that writes: this user may write the file `path` (symlinks resolved), and
    create files in its directory (SQLite's -wal and -shm, the sync lock). Raises
    DatabaseUnavailable naming the owner to run as: a mirror made by root (one `sudo` run)
    and synced by cron's user otherwise fails at its first write, after the first requests,
    with SQLite's bare `attempt to write a readonly database`."""
    directory = path.parent
    if not directory.is_dir():
        raise DatabaseUnavailable(
            f"cannot write the database {shown}: it is a symlink to {path}, in a directory "
            "that does not exist"
        )
    if _read_only_mount(directory):
        raise DatabaseUnavailable(
            f"cannot write the database {shown}: {directory} is on a file system mounted "
            "read-only; nothing was fetched or written"
        )
    if path.exists() and not _may_write(path):
        raise DatabaseUnavailable(
            f"cannot write the database {shown}: {path} {file_owner(path)}, and this user "
            f"({current_user()}) may not write it: run autoenhance-mirror as its owner, or "
            "give this user write access; nothing was fetched or written"
        )
    # SQLite's own files beside it, which another user's run or reader can leave behind.
    for end in ("-wal", "-shm", "-journal"):
        file = path.with_name(path.name + end)
        if file.exists() and not _may_write(file):
            raise DatabaseUnavailable(
                f"cannot write the database {shown}: SQLite's {file} {file_owner(file)}, and "
                f"this user ({current_user()}) may not write it: another user's run or reader "
                "left it; give it to this user, or remove it while nobody has the database "
                "open; nothing was fetched or written"
            )
    if not _may_write(directory):
        raise DatabaseUnavailable(
            f"cannot write the database {shown}: this user ({current_user()}) may not create "
            f"files in {directory} ({file_owner(directory)}), as SQLite must beside the "
            "database (its -wal and -shm files) and so must the sync lock: run "
            "autoenhance-mirror as the directory's owner, or give this user write access; "
            "nothing was fetched or written"
        )


def _may_write(path: Path) -> bool:
    """As SQLite's open() will find it: for the effective user (access() checks the real one)."""
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def _read_only_mount(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def file_owner(path: Path) -> str:
    """`belongs to root, mode 0644`, for messages about a file this user may not use."""
    try:
        status = path.stat()
    except OSError:
        return "cannot be examined"
    try:
        owner = pwd.getpwuid(status.st_uid).pw_name
    except KeyError:
        owner = f"uid {status.st_uid}"
    return f"belongs to {owner}, mode {status.st_mode & 0o7777:04o}"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _needs_shared_memory_file(path: Path, header: bytes) -> bool:
    """Whether opening the file makes SQLite create its -shm file: a database in WAL mode
    that no connection has open (the last to close deletes -shm and -wal). A reader that may
    not create it cannot open the file at all, not even read-only (sqlite.org/wal.html,
    "Read-Only Databases")."""
    in_wal_mode = header[_WAL_VERSION_AT : _WAL_VERSION_AT + 2] == b"\x02\x02"
    return in_wal_mode and not path.with_name(path.name + "-shm").exists()


def masked(url: URL) -> str:
    """The URL as it may be shown to a person: the password replaced by ***.

    The driver picked for a plain `postgresql://` URL is left out, as the user wrote none.
    """
    if url.drivername == "postgresql+psycopg":
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=True)


class Redactor:
    """Replaces known secrets in any text that is about to leave the process (output, rows).

    A secret is replaced wherever it stands, except as the mere part of a longer word: the
    password `postgres` (a common one) turned `postgresql://` into `***ql://`, and the key
    `any` turned "too many connections" into "too m*** connections"."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        kept = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(_standing_alone, kept))) if kept else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub("***", text)

    @classmethod
    def for_run(cls, *, api_key: str | None, database_url: URL | None) -> Redactor:
        password = database_url.password if database_url is not None else None
        return cls([api_key, str(password) if password is not None else None])


def _standing_alone(secret: str) -> str:
    """A pattern for `secret` not run on from a letter, digit or underscore at an end that is
    one itself."""
    before = r"(?<!\w)" if _WORD.match(secret[0]) else ""
    after = r"(?!\w)" if _WORD.match(secret[-1]) else ""
    return before + re.escape(secret) + after


_WORD = re.compile(r"\w")


def check_base_url(base_url: str) -> str:
    """The API's address, checked before any request; returns it without a trailing slash.

    Raises InputError for what is not an http(s) URL with a host, for characters a request
    line cannot carry, and for a path ending in /v3: the mirror adds `/v3/images/...` itself,
    so such a base URL makes every request 404 (and would make every image look deleted).
    """
    parts = urlsplit(base_url)
    shown = without_user_info(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"--base-url must be an http:// or https:// URL with a host, not {shown!r}"
        )
    if "@" in parts.netloc:
        # Every message naming the API's address would show it; the API takes no password.
        raise InputError(
            f"--base-url {shown!r} holds a user name or password, which the API does not take "
            "(its key goes in --api-key or AUTOENHANCE_API_KEY): leave them out"
        )
    if parts.scheme == "http" and parts.hostname == urlsplit(DEFAULT_BASE_URL).hostname:
        raise InputError(
            f"--base-url {shown!r} would send the API key over plain HTTP, readable on the way; "
            f"the API is at {DEFAULT_BASE_URL}"
        )
    if any(c.isspace() or not c.isprintable() for c in base_url):
        raise InputError(
            f"--base-url {shown!r} holds a space or control character; "
            "percent-encode it (a space is %20)"
        )
    path = parts.path.rstrip("/")
    if "/v3/" in path + "/":
        fixed = urlunsplit((parts.scheme, parts.netloc, path.split("/v3")[0], "", ""))
        raise InputError(
            f"--base-url {base_url!r} holds the API's /v3 path, which the mirror adds itself "
            f"(requests would go to .../v3/v3/images/...); use --base-url {fixed}"
        )
    if parts.query or parts.fragment:
        raise InputError(f"--base-url {base_url!r} may not have a query or a fragment")
    return base_url.rstrip("/")


def without_user_info(url: str) -> str:
    """`url` with its user info, if any, as *** (a lone user name may be a token)."""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    masked_url = f"***@{authority.rsplit('@', 1)[1]}{slash}{tail}"
    return f"{scheme}://{masked_url}" if scheme else masked_url


def refuse_stray_characters(option: str, raw: str, *, shown: str, names: str) -> None:
    """A control character, or a space at either end, is never part of the database or file
    meant: a URL read from an environment file saved with Windows line ends
    (`sqlite:///mirror.db\r`) made a second SQLite file, `mirror.db\r`, that every cron run
    then filled, while the real mirror went stale and `status` showed it so."""
    control = _holds_control_characters(raw)
    if not control and raw == raw.strip():
        return
    what = "holds a control character" if control else "begins or ends with a space"
    raise InputError(
        f"{option} {shown} {what}{_windows_line_end(raw)}, which would name another {names} "
        "than the one meant; remove it"
    )


def _holds_control_characters(value: str, *, tab_allowed: bool = False) -> bool:
    """C0 controls and DEL (a tab too, unless allowed)."""
    return any((ord(c) < 0x20 and not (tab_allowed and c == "\t")) or c == "\x7f" for c in value)


def _windows_line_end(value: str) -> str:
    """The likely cause, when a value read from a file (an env file, a key file) ends in CR."""
    return " (it ends in a carriage return: Windows line ends?)" if value.endswith("\r") else ""


def check_header_value(option: str, value: str | None, *, secret: bool = False) -> None:
    """Raises InputError when `value` cannot be sent as one HTTP header value (RFC 9110 §5.5):
    a CR or LF would end the header and inject others, any control character is refused."""
    if value is None:
        return
    shown = "" if secret else f" {value!r}"
    if _holds_control_characters(value, tab_allowed=True):
        raise InputError(
            f"{option}{shown} holds a line break or control character, "
            f"which cannot be sent in an HTTP header{_windows_line_end(value)}"
        )
    if any(ord(c) > 0xFF for c in value):
        raise InputError(f"{option}{shown} holds characters an HTTP header cannot carry")
