"""The write stage on a real SQLite database: batches, the deletion guard, dry runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import new_ids, scalar

from mirror import db
from mirror.batch import SoFar
from mirror.clock import RunClock
from mirror.config import parse_database_url
from mirror.control import RunControl
from mirror.errors import TooManyDeletions
from mirror.lock import HeldLock
from mirror.outcomes import Failure, Missing, Outcome
from mirror.payload import parse_body, to_row
from mirror.standin import record_for
from mirror.writer import DeletionGuard, Writer


@pytest.mark.parametrize(
    ("requested", "max_deletes", "limit"),
    [(3, None, 10), (100, None, 10), (300, None, 30), (10_000, None, 1000), (300, 0, 0), (5, 7, 7)],
)
def test_the_deletion_guard_allows_10_percent_at_least_10_or_max_deletes(
    requested: int, max_deletes: int | None, limit: int
) -> None:
    assert DeletionGuard(lambda: requested, "http://api", max_deletes).limit == limit


def row_for(image_id: str) -> Outcome:
    return to_row(parse_body(json.dumps(record_for(image_id)).encode()), requested_id=image_id)


def write(writer: Writer, outcomes: list[Outcome]) -> None:
    async def main() -> None:
        queue: asyncio.Queue[Outcome | None] = asyncio.Queue()
        for outcome in [*outcomes, None]:
            queue.put_nowait(outcome)
        await writer.run(queue)
        await writer.commit_deletions()

    asyncio.run(main())


def test_outcomes_are_written_and_404s_of_mirrored_images_held_back(tmp_path: Path) -> None:
    engine = db.create_db_engine(parse_database_url(str(tmp_path / "m.db")))
    db.ensure_schema(engine)
    ids = new_ids(13)
    control = RunControl()

    def writer(requested: int) -> Writer:
        guard = DeletionGuard(lambda: requested, "http://api")
        return Writer(
            engine=engine, lock=HeldLock(), run_id=None, clock=RunClock(), dry_run=False,
            guard=guard,
            order_guard=DeletionGuard(lambda: 0, "http://api.invalid", noun="orders"),
            control=control, so_far=lambda: SoFar(requested, 0, 0),
        )  # fmt: skip

    first = writer(13)
    write(first, [row_for(i) for i in ids[:12]] + [Failure(ids[12], "timeout", "slow")])
    assert (first.counts.inserted, first.counts.failed) == (12, 1)
    assert scalar(engine, "SELECT count(*) FROM images") == 12

    # 11 404s of mirrored images in a run of 12: over the limit of 10, none is marked.
    guarded = writer(12)
    write(guarded, [Missing(i) for i in ids[:11]] + [row_for(ids[11])])
    assert isinstance(control.fatal, TooManyDeletions)
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == 0
    engine.dispose()
