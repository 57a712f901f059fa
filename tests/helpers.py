"""Helpers for tests: run the real CLI, read rows back with SQL."""

from __future__ import annotations

import datetime as dt
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from mirror.cli import cli

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke the real click command, with stdout and stderr kept apart."""
    return CliRunner().invoke(
        cli,
        list(args),
        input=input,
        env=env,
        catch_exceptions=False,
        prog_name="autoenhance-mirror",
    )


def on_a_terminal(*args: str) -> str:
    """What the CLI, in a process of its own, shows when run by hand: its stdout and stderr a
    (pseudo-)terminal. It must succeed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args], stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done writing
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    shown = output.decode(errors="replace")
    assert process.wait(timeout=60) == 0, shown
    return shown


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def new_ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def when(value: Any) -> dt.datetime:
    """A timestamp read back with plain SQL, as an aware UTC datetime on either database
    (SQLite gives its stored text, PostgreSQL an aware datetime)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime), value
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
