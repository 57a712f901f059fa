"""PostgreSQL through a pooler in transaction mode (pgbouncer): a server session is a client's
only for one transaction, and the next one may get another. Real pgbouncer, real CLI."""

from __future__ import annotations

import pytest
from conftest import Pooler
from helpers import new_ids, run_cli, scalar
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from test_robustness import sync_of_80_running

from mirror.config import parse_database_url
from mirror.db import create_db_engine, describe_db_error
from mirror.sample_account import SampleAccount
from mirror.standin import StandIn

pytestmark = pytest.mark.postgres


def run_twelve_times_on_two_connections(url: str) -> None:
    """The same statement, on two connections taking turns, each time in a new transaction."""
    engine = create_db_engine(parse_database_url(url))
    try:
        with engine.connect() as one, engine.connect() as other:
            for _ in range(12):
                for connection in (one, other):
                    assert connection.execute(text("SELECT 1")).scalar_one() == 1
                    connection.commit()
    finally:
        engine.dispose()


def test_with_the_switch_a_statement_runs_any_number_of_times_on_pooled_sessions(
    postgres_url: str, pooler: Pooler
) -> None:
    """The mirror's own engine. Without the switch psycopg prepares a statement on its sixth
    run, on whichever server session the pooler lent; on the next lend that session lacks it,
    or another connection's statement of the same name is there."""
    run_twelve_times_on_two_connections(pooler.url_for(postgres_url, switch=True))


def test_without_the_switch_the_error_names_it(postgres_url: str, pooler: Pooler) -> None:
    url = parse_database_url(pooler.url_for(postgres_url))
    with pytest.raises(DBAPIError) as caught:
        run_twelve_times_on_two_connections(url.render_as_string(hide_password=False))
    message = describe_db_error(url, caught.value)
    assert 'prepared statement "_pg3_0" already exists' in message
    assert "pooler in transaction mode" in message and "add pgbouncer=true" in message
    assert str(url.password) not in message


def test_syncs_through_the_pooler_run_one_at_a_time_and_leave_no_lock(
    standin: StandIn, postgres_url: str, pooler: Pooler
) -> None:
    """Before, a second sync routed to the pooled session that held the first one's session
    lock took it again and ran beside it, failing on the statements psycopg had prepared on
    another session ("prepared statement "_pg3_0" already exists"); a run also warned that
    its lock's session had ended when it had not."""
    url = pooler.url_for(postgres_url, switch=True)
    direct = create_engine(parse_database_url(postgres_url), poolclass=NullPool)
    assert run_cli("db", "upgrade", "--database-url", url).exit_code == 0
    ids = new_ids(80)
    first = sync_of_80_running(standin, url, ids)
    try:
        for _ in range(3):
            second = run_cli("sync", *new_ids(2), "--base-url", standin.url, "--database-url", url)
            assert second.exit_code == 75, second.output
            assert "another sync is running against this database: run 1" in second.stderr
        assert first.poll() is None  # the refusals above came while it ran
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr
    assert stderr == ""  # no "lock taken again": its session never ended
    assert "80 new" in stdout
    assert scalar(direct, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert scalar(direct, "SELECT count(*) FROM sync_runs") == 1
    again = run_cli("sync", *ids, "--base-url", standin.url, "--database-url", url)
    assert again.exit_code == 0, again.output
    assert "0 new, 0 changed, 80 unchanged" in again.stdout
    assert scalar(direct, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    direct.dispose()


def test_the_whole_account_syncs_through_the_pooler_with_every_statement_repeated(
    standin: StandIn, postgres_url: str, pooler: Pooler
) -> None:
    """Many pages, many commits: each statement runs far more often than the 5 times after
    which psycopg prepares it by default. Then `status` and a report read through the pooler."""
    url = pooler.url_for(postgres_url, switch=True)
    standin.state.account = SampleAccount.generate(3000)
    args = ("--api-key", "k", "--base-url", standin.url, "--database-url", url)
    first = run_cli("sync", "--all", *args)
    assert first.exit_code == 0, first.output
    assert first.stderr == ""
    assert "3000 new" in first.stdout
    second = run_cli("sync", "--all", *args)
    assert second.exit_code == 0, second.output
    assert second.stderr == ""
    assert "0 new, 0 changed, 3000 unchanged" in second.stdout
    status = run_cli("status", "--database-url", url)
    assert status.exit_code == 0, status.output
    report = run_cli("report", "images-per-order", "--database-url", url)
    assert report.exit_code == 0, report.output
    direct = create_engine(parse_database_url(postgres_url), poolclass=NullPool)
    assert scalar(direct, "SELECT count(*) FROM images") == 3000
    assert scalar(direct, "SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 2
    direct.dispose()


def test_a_schema_the_pooler_drops_from_the_url_is_refused_before_anything_is_written(
    standin: StandIn, postgres_url: str, pooler: Pooler
) -> None:
    """`options=-csearch_path=account_a` picks a mirror's schema (two accounts, one
    database). A pooler that drops `options` left `public` instead: the sync wrote account
    A's mirror into the public schema, and said nothing."""
    direct = create_engine(parse_database_url(postgres_url), poolclass=NullPool)
    with direct.begin() as connection:
        connection.execute(text("CREATE SCHEMA account_a"))
    schema = "&options=-csearch_path%3Daccount_a"
    ids = new_ids(3)
    args = ("--base-url", standin.url, "--database-url")
    refused = run_cli("sync", *ids, *args, pooler.url_for(postgres_url, switch=True) + schema)
    assert refused.exit_code == 3, refused.output
    assert (
        'its options set search_path to account_a, but the session has "$user", public: '
        "something between this tool and the server (a pooler) dropped them"
    ) in refused.stderr
    assert standin.state.total_requests == 0
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = :schema"
    assert scalar(direct, tables, schema="public") == 0
    served = run_cli("sync", *ids, *args, postgres_url + schema.replace("&", "?"))
    assert served.exit_code == 0, served.output
    assert scalar(direct, "SELECT count(*) FROM account_a.images") == 3
    assert scalar(direct, tables, schema="public") == 0
    direct.dispose()


def test_a_pooler_that_refuses_the_urls_options_is_named_with_what_to_do(
    standin: StandIn, postgres_url: str, strict_pooler: Pooler
) -> None:
    url = strict_pooler.url_for(postgres_url, switch=True) + "&options=-csearch_path%3Da"
    result = run_cli("sync", *new_ids(2), "--base-url", standin.url, "--database-url", url)
    assert result.exit_code == 3, result.output
    assert "unsupported startup parameter: options (a pooler between this tool" in result.stderr
    assert "ALTER ROLE ... SET search_path" in result.stderr
    assert standin.state.total_requests == 0
