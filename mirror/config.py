"""Defaults, database URL normalising and secret masking: everything a cron line configures."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mirror.errors import InputError

DEFAULT_DATABASE_URL = "sqlite:///autoenhance-mirror.db"
DEFAULT_BASE_URL = "https://api.autoenhance.ai"
# Pinned so the response shape cannot change under the mirror (api-notes.md §2).
DEFAULT_API_VERSION = "2025-08-31"
DEFAULT_MAX_RATE = 100.0
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3

_POSTGRES_ALIASES = {"postgresql", "postgres"}


def parse_database_url(raw: str) -> URL:
    """Parse a database URL, picking psycopg 3 for plain `postgresql://` (and `postgres://`) URLs.

    Raises InputError, without echoing the URL (it may hold a password), when it cannot be parsed.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise InputError(
            "--database-url is not a database URL; expected e.g. "
            "sqlite:///autoenhance-mirror.db or postgresql://user:password@host/dbname"
        ) from None
    if url.drivername in _POSTGRES_ALIASES:
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise InputError(
            f"unsupported database {url.get_backend_name()!r}; use sqlite:/// or postgresql://"
        )
    return url


def masked(url: URL) -> str:
    """The URL as it may be shown to a person: the password replaced by ***.

    The driver picked for a plain `postgresql://` URL is left out, as the user wrote none.
    """
    if url.drivername == "postgresql+psycopg":
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=True)


class Redactor:
    """Replaces known secrets in any text that is about to leave the process (output, rows)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @classmethod
    def for_run(cls, *, api_key: str | None, database_url: URL | None) -> Redactor:
        password = database_url.password if database_url is not None else None
        return cls([api_key, str(password) if password is not None else None])
