"""`mirror/store.py` on real databases: whatever a body held, storing it never fails the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from conftest import PostgresServer
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, text
from strategies import BODIES
from test_payload import ID

from mirror import db, store
from mirror.clock import RunClock
from mirror.config import parse_database_url
from mirror.errors import InvalidPayload
from mirror.outcomes import Missing
from mirror.payload import parse_body, to_row


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def mirror_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One migrated database per module (hypothesis runs many examples against it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mirror.db'}"
        server = None
    else:
        server = request.getfixturevalue("postgres_server")
        assert isinstance(server, PostgresServer)
        url = server.create_database()
    engine = db.create_db_engine(parse_database_url(url))
    db.ensure_schema(engine)
    yield engine
    engine.dispose()
    if server is not None:
        server.drop_database(url)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODIES)
def test_whatever_a_body_holds_storing_it_fails_at_most_that_image(
    mirror_engine: Engine, text_body: str
) -> None:
    try:
        row = to_row(parse_body(text_body.encode("utf-8", "surrogatepass")), requested_id=ID)
    except InvalidPayload:
        return
    stored = store.store_batch(
        mirror_engine, batch=store.Batch([row], [], []), run_id=None, now=datetime.now(UTC)
    )
    assert stored.counts.total() == 1
    with mirror_engine.connect() as connection:
        if stored.counts.failed:
            assert stored.failures[0].kind == "invalid_payload"
            return
        extra = connection.execute(
            text("SELECT extra FROM images WHERE image_id = :id"), {"id": ID}
        ).scalar_one()
        if mirror_engine.dialect.name == "sqlite":
            assert (
                connection.execute(
                    text("SELECT json_valid(extra) FROM images WHERE image_id = :id"), {"id": ID}
                ).scalar_one()
                == 1
            )
            extra = json.loads(extra)
        # Numbers compared as decimals: JSONB keeps a literal's decimal value
        # (3.887527228767522e+16 comes back as 38875272287675220), which is no loss.
        assert as_decimals(extra) == as_decimals(row.columns["extra"])


def as_decimals(value: object) -> object:
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def test_mark_deleted_sets_deleted_at_and_counts_on_the_run(mirror_engine: Engine) -> None:
    now = datetime.now(UTC)
    body = parse_body(b'{"image_name": "a.jpg"}')
    image_id = "11111111-2222-4333-8444-555555555555"
    store.store_batch(
        mirror_engine,
        batch=store.Batch([to_row(body, requested_id=image_id)], [], []),
        run_id=None,
        now=now,
    )
    run_id = store.start_run(mirror_engine, requested=1, clock=RunClock())
    held = store.store_batch(
        mirror_engine, batch=store.Batch([], [Missing(image_id)], []), run_id=run_id, now=now
    )
    assert (held.to_delete, held.counts.deleted) == ([image_id], 0)  # held back, not written
    with mirror_engine.connect() as connection:
        deleted_at = connection.execute(
            text("SELECT deleted_at FROM images WHERE image_id = :id"), {"id": image_id}
        ).scalar_one()
    assert deleted_at is None
    stored = store.mark_deleted(mirror_engine, image_ids=[image_id], run_id=run_id, now=now)
    assert stored.counts.deleted == 1 and stored.order_counts.deleted == 0
    with mirror_engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT i.deleted_at, r.deleted FROM images i, sync_runs r "
                "WHERE i.image_id = :id AND r.id = :run"
            ),
            {"id": image_id, "run": run_id},
        ).one()
    assert row.deleted_at is not None and row.deleted == 1
