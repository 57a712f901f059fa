"""Fixtures: the real stand-in on 127.0.0.1, real SQLite files and a real PostgreSQL server.

PostgreSQL comes from PYTEST_POSTGRES_URL (a role that may CREATE DATABASE; `.ci/run` sets it),
else from a throwaway cluster started here with the machine's initdb/pg_ctl. Without either,
Postgres tests skip and say why, unless PYTEST_REQUIRE_POSTGRES=1 (CI), which fails them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mirror.config import parse_database_url
from mirror.db import create_db_engine
from mirror.standin import StandIn


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's configuration, proxies included (a machine's HTTP_PROXY
    would send every request to the stand-in through it)."""
    for name in list(os.environ):
        if name.startswith(("AUTOENHANCE_", "MIRROR_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(host="127.0.0.1", port=0) as server:
        yield server


# --- PostgreSQL ------------------------------------------------------------------------------


def drop_database(admin: Engine, name: str) -> None:
    """DROP DATABASE, waiting out sessions that are ending (autovacuum, a closing pool).

    WITH (FORCE) is not used: a role without superuser rights may not terminate sessions
    it does not own, and a benchmark or test must not need those rights.
    """
    deadline = time.monotonic() + 15
    while True:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class PostgresServer:
    admin_url: str  # connects to a maintenance database with CREATEDB rights

    def create_database(self, encoding: str | None = None) -> str:
        """A new database; with `encoding`, in that encoding (and the C locale, which fits any)."""
        name = f"mirror_test_{uuid.uuid4().hex[:12]}"
        options = f" ENCODING '{encoding}' LOCALE 'C' TEMPLATE template0" if encoding else ""
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{options}'))
        engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        drop_database(engine, str(make_url(url).database))
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _not_as_root(base: Path, server: str) -> list[str] | str:
    """The command prefix that starts `server` as the postgres user when the tests run as root
    (`base` and what is in it handed to that user), or why it cannot be started."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        return f"running as root and no runuser to start {server} as another user"
    for path in [base, *base.iterdir()]:
        shutil.chown(path, "postgres")
    return [runuser, "-u", "postgres", "--"]


def _start_throwaway_cluster() -> tuple[str, Any] | str:
    """Start a private PostgreSQL cluster; returns (admin URL, stop function) or why not."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = binaries[-1] if binaries else shutil.which("initdb")
    if initdb is None:
        return "no PostgreSQL server binaries (initdb) on this machine"
    bindir = Path(initdb).parent
    base = Path(tempfile.mkdtemp(prefix="mirror-pg-"))
    data, port = base / "data", _free_port()
    password = uuid.uuid4().hex
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    prefix = _not_as_root(base, "PostgreSQL")  # initdb refuses to run as root
    if isinstance(prefix, str):
        return prefix
    try:
        subprocess.run(
            [
                *prefix,
                str(initdb),
                "-D",
                str(data),
                "-U",
                "postgres",
                # Passwords are checked over TCP, as on a real server (tests rely on it).
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                f"--pwfile={pwfile}",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"could not start a throwaway PostgreSQL cluster: {exc}"

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    required = os.environ.get("PYTEST_REQUIRE_POSTGRES") == "1"
    url = os.environ.get("PYTEST_POSTGRES_URL")
    stop = None
    if not url:
        started = _start_throwaway_cluster()
        if isinstance(started, str):
            if required:
                pytest.fail(f"PostgreSQL is required here but: {started}")
            pytest.skip(f"PostgreSQL tests skipped: {started} (set PYTEST_POSTGRES_URL)")
        url, stop = started
    deadline = time.monotonic() + 20
    while True:
        try:
            engine = create_engine(parse_database_url(url))
            with engine.connect():
                pass
            engine.dispose()
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                if required:
                    pytest.fail(f"PostgreSQL is required here but cannot connect: {exc}")
                pytest.skip(f"PostgreSQL tests skipped: cannot connect: {exc}")
            time.sleep(0.3)
    yield PostgresServer(admin_url=str(parse_database_url(url).render_as_string(False)))
    if stop is not None:
        stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database, as a plain postgresql:// URL (the way users write it)."""
    url = postgres_server.create_database().replace("postgresql+psycopg://", "postgresql://", 1)
    yield url
    postgres_server.drop_database(url)


@dataclass
class Pooler:
    """pgbouncer in transaction mode in front of the test server: what a hosted service's
    "transaction" port is."""

    port: int

    def url_for(self, direct_url: str, *, switch: bool = False) -> str:
        """`direct_url`, through the pooler; `switch`: saying so (`?pgbouncer=true`)."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        if switch:
            url = url.update_query_dict({"pgbouncer": "true"})
        return url.render_as_string(hide_password=False)


def _start_pgbouncer(admin_url: str, *, drops_options: bool) -> tuple[Pooler, Any] | str:
    """pgbouncer on a free port, for every database of the server; (pooler, stop) or why not.
    `drops_options`: accepts a client's `options` and drops them (what some set-ups do);
    else it refuses them, its default."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        return "no pgbouncer on this machine"
    admin = make_url(admin_url)
    base = Path(tempfile.mkdtemp(prefix="mirror-pgbouncer-"))
    port = _free_port()
    (base / "users.txt").write_text(f'"{admin.username}" "{admin.password}"\n')
    (base / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={admin.host or '127.0.0.1'} port={admin.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {base / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "server_idle_timeout = 1\n"  # a test's database can be dropped soon after
        + ("ignore_startup_parameters = options\n" if drops_options else "")
    )
    prefix = _not_as_root(base, "pgbouncer")  # pgbouncer refuses to run as root
    if isinstance(prefix, str):
        return prefix
    log = (base / "log").open("wb")  # it logs every connection: a pipe nobody read would fill
    process = subprocess.Popen(
        [*prefix, binary, str(base / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log.close()
                said = (base / "log").read_text(errors="replace").strip()[-500:]
                shutil.rmtree(base, ignore_errors=True)
                return f"pgbouncer did not start: {said}"
            time.sleep(0.05)

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    return Pooler(port), stop


@pytest.fixture(scope="session")
def pooler(postgres_server: PostgresServer) -> Iterator[Pooler]:
    """One that drops `options`."""
    yield from _pooler(postgres_server, drops_options=True)


@pytest.fixture(scope="session")
def strict_pooler(postgres_server: PostgresServer) -> Iterator[Pooler]:
    """One that refuses `options` (pgbouncer's default)."""
    yield from _pooler(postgres_server, drops_options=False)


def _pooler(postgres_server: PostgresServer, *, drops_options: bool) -> Iterator[Pooler]:
    started = _start_pgbouncer(postgres_server.admin_url, drops_options=drops_options)
    if isinstance(started, str):
        if os.environ.get("PYTEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"pgbouncer is required here but: {started}")
        pytest.skip(f"PostgreSQL pooler tests skipped: {started}")
    pooler, stop = started
    yield pooler
    stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mirror.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine to read back what the CLI wrote."""
    engine = create_db_engine(parse_database_url(database_url))
    yield engine
    engine.dispose()
