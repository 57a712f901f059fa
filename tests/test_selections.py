"""Selections from the mirror, on both databases: what they pick, streamed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import new_ids, run_cli
from sqlalchemy import Engine, insert, text, update

from mirror.errors import InputError
from mirror.models import images_table, orders_table
from mirror.selections import Selection, images_of_deleted_orders, parse_duration, selected_ids
from mirror.standin import StandIn


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), (" 12h", timedelta(hours=12)),
     ("7d", timedelta(days=7)), ("0s", timedelta(0)), ("36500d", timedelta(days=36_500))],
)  # fmt: skip
def test_durations(raw: str, expected: timedelta) -> None:
    assert parse_duration(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "7", "d", "1.5h", "-1d", "1 d", "1w", "\uff11d", "36501d", "1000000d", "9" * 30 + "s"],
)  # the last three: a traceback (OverflowError) when the cutoff was taken
def test_bad_durations(raw: str) -> None:
    with pytest.raises(InputError):
        parse_duration(raw)


def test_the_selection_picks_unfinished_or_old_images_not_deleted(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(8)
    common = ["--base-url", standin.url, "--database-url", database_url]
    assert run_cli("sync", *ids, *common).exit_code in (0, 1)
    now = datetime.now(UTC)
    statuses = ["processed", "error", "expired", None, "processing", "queued"] + ["processed"] * 2
    with engine.begin() as connection:
        for image_id, status in zip(ids, statuses, strict=True):
            connection.execute(
                text("UPDATE images SET status = :s WHERE image_id = :i"),
                {"s": status, "i": image_id},
            )
        connection.execute(
            text("UPDATE images SET deleted_at = last_synced_at WHERE image_id = :i"),
            {"i": ids[5]},
        )
    with engine.connect() as connection:
        unfinished = list(selected_ids(connection, Selection(unfinished=True), now=now))
        # NULL, processing and queued; not the deleted one (ids[5] was queued)
        assert sorted(unfinished) == sorted([ids[3], ids[4]])
        later = now + timedelta(hours=2)
        old = list(selected_ids(connection, Selection(older_than=timedelta(hours=1)), now=later))
        assert sorted(old) == sorted(set(ids) - {ids[5]})
        both = Selection(unfinished=True, older_than=timedelta(hours=1))
        assert sorted(selected_ids(connection, both, now=now)) == sorted(unfinished)
        assert list(selected_ids(connection, Selection(), now=now)) == []


def test_images_of_deleted_orders_are_those_not_deleted_themselves(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(5)
    common = ["--base-url", standin.url, "--database-url", database_url]
    assert run_cli("sync", *ids, *common).exit_code == 0
    now = datetime.now(UTC)
    with engine.begin() as connection:
        # Core statements on the models' tables, which store times as the mirror does
        # (sqlite3's own adapter for datetime, which text() would use, is deprecated).
        for order_id, deleted in (("gone", now), ("live", None)):
            connection.execute(
                insert(orders_table).values(
                    order_id=order_id, content_hash="x", first_synced_at=now,
                    last_synced_at=now, last_changed_at=now, deleted_at=deleted, extra={},
                )
            )  # fmt: skip
        # ids[0], ids[1]: of the deleted order; ids[1] deleted too; ids[2]: of the live one;
        # ids[3]: of an order never mirrored; ids[4]: of none
        for image_id, order_id in zip(ids, ["gone", "gone", "live", "unknown", None], strict=True):
            connection.execute(
                update(images_table)
                .where(images_table.c.image_id == image_id)
                .values(order_id=order_id)
            )
        connection.execute(
            update(images_table).where(images_table.c.image_id == ids[1]).values(deleted_at=now)
        )
    with engine.connect() as connection:
        assert images_of_deleted_orders(connection) == [ids[0]]
