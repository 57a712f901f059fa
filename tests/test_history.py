"""`image_versions` (spec §8): the history of every image, through the real CLI, on both
databases; its invariants are checked after every kind of run, a killed one included."""

from __future__ import annotations

import datetime as dt
import glob
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import new_ids, rows, run_cli, scalar
from sqlalchemy import Engine, select, update

from mirror.models import sync_runs_table
from mirror.payload import CONTENT_COLUMNS
from mirror.standin import StandIn, record_for


def sync(standin: StandIn, database_url: str, *args: str) -> Any:
    return run_cli("sync", "--base-url", standin.url, "--database-url", database_url, *args)


def _plain(value: Any) -> Any:
    """A column value as comparable across databases (SQLite: JSON as text, 0/1 booleans)."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def assert_history_consistent(engine: Engine) -> None:
    """The invariants of spec §8: at most one open version per image, versions of an image
    never overlap, the open version equals the `images` row (none for a deleted image), and
    every mirrored image has a version."""
    images = {r["image_id"]: r for r in rows(engine, "SELECT * FROM images")}
    versions: dict[str, list[dict[str, Any]]] = {}
    for v in rows(engine, "SELECT * FROM image_versions ORDER BY image_id, valid_from, id"):
        versions.setdefault(v["image_id"], []).append(v)
    assert set(versions) == set(images), "every image has a history, and only images do"
    for image_id, history in versions.items():
        image = images[image_id]
        open_ = [v for v in history if v["valid_to"] is None]
        assert len(open_) <= 1, image_id
        for earlier, later in itertools.pairwise(history):
            assert earlier["valid_to"] is not None, f"{image_id}: an open version before another"
            assert earlier["valid_to"] <= later["valid_from"], f"{image_id}: versions overlap"
        for v in history:
            assert v["valid_to"] is None or v["valid_from"] <= v["valid_to"], image_id
        if image["deleted_at"] is not None:
            assert not open_, f"{image_id}: deleted upstream, yet a version is open"
            continue
        assert open_, f"{image_id}: no open version"
        for column in CONTENT_COLUMNS:
            assert _plain(open_[0][column]) == _plain(image[column]), (image_id, column)


def versions_of(engine: Engine, image_id: str) -> list[dict[str, Any]]:
    return rows(
        engine,
        "SELECT * FROM image_versions WHERE image_id = :id ORDER BY valid_from, id",
        id=image_id,
    )


def test_new_images_open_one_version_each_and_an_unchanged_resync_writes_none(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(5)
    assert sync(standin, database_url, *ids).exit_code == 0
    run_id = scalar(engine, "SELECT max(id) FROM sync_runs")
    [row] = rows(
        engine, "SELECT count(*) AS n, min(run_id) AS lo, max(run_id) AS hi FROM image_versions"
    )
    assert (row["n"], row["lo"], row["hi"]) == (5, run_id, run_id)
    for image_id in ids:
        [version] = versions_of(engine, image_id)
        [image] = rows(engine, "SELECT * FROM images WHERE image_id = :id", id=image_id)
        assert version["valid_from"] == image["last_changed_at"]
        assert version["valid_to"] is None
    assert_history_consistent(engine)

    result = sync(standin, database_url, *ids)
    assert result.exit_code == 0 and "5 unchanged" in result.stdout
    assert scalar(engine, "SELECT count(*) FROM image_versions") == 5
    assert_history_consistent(engine)


def test_a_change_closes_the_version_and_opens_the_next(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    image_id, other = new_ids(2)
    body = record_for(image_id) | {"status": "processing", "downloaded": False}
    standin.state.records[image_id] = body
    assert sync(standin, database_url, image_id, other).exit_code == 0
    standin.state.records[image_id] = body | {"status": "processed", "downloaded": True}
    result = sync(standin, database_url, image_id, other)
    assert result.exit_code == 0 and "1 changed, 1 unchanged" in result.stdout

    first, second = versions_of(engine, image_id)
    assert (first["status"], second["status"]) == ("processing", "processed")
    assert (bool(first["downloaded"]), bool(second["downloaded"])) == (False, True)
    assert first["valid_to"] == second["valid_from"]
    assert second["valid_to"] is None
    runs = [r["id"] for r in rows(engine, "SELECT id FROM sync_runs ORDER BY id")]
    assert (first["run_id"], second["run_id"]) == (runs[0], runs[1])
    assert len(versions_of(engine, other)) == 1
    assert_history_consistent(engine)


def test_a_deletion_closes_the_open_version_and_a_comeback_opens_a_new_one(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    image_id, *others = new_ids(3)
    everything = [image_id, *others]
    assert sync(standin, database_url, *everything).exit_code == 0
    standin.state.missing.add(image_id)
    assert sync(standin, database_url, *everything).exit_code == 0
    [closed] = versions_of(engine, image_id)
    deleted_at = scalar(engine, "SELECT deleted_at FROM images WHERE image_id = :id", id=image_id)
    assert deleted_at is not None and closed["valid_to"] == deleted_at
    assert_history_consistent(engine)

    standin.state.missing.discard(image_id)  # back, with the same content
    result = sync(standin, database_url, *everything)
    assert result.exit_code == 0, result.output
    gone, back = versions_of(engine, image_id)
    assert gone["valid_to"] is not None and back["valid_to"] is None
    assert gone["valid_to"] <= back["valid_from"]
    assert back["content_hash"] == gone["content_hash"]
    assert_history_consistent(engine)


def test_a_dry_run_writes_no_version(standin: StandIn, database_url: str, engine: Engine) -> None:
    ids = new_ids(3)
    assert sync(standin, database_url, *ids[:2]).exit_code == 0
    standin.state.records[ids[0]] = record_for(ids[0]) | {"status": "error"}
    standin.state.missing.add(ids[1])
    result = sync(standin, database_url, *ids, "--dry-run")
    assert result.exit_code in (0, 1), result.output
    assert scalar(engine, "SELECT count(*) FROM image_versions") == 2
    assert scalar(engine, "SELECT count(*) FROM image_versions WHERE valid_to IS NULL") == 2
    assert_history_consistent(engine)


def test_orders_write_the_history_of_their_images(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    from mirror.sample_account import SampleAccount

    standin.state.account = SampleAccount.generate(40)
    assert sync(standin, database_url, "--all", "--api-key", "a-key").exit_code == 0
    assert scalar(engine, "SELECT count(*) FROM image_versions") == 40
    assert_history_consistent(engine)
    assert sync(standin, database_url, "--all", "--api-key", "a-key").exit_code == 0
    assert scalar(engine, "SELECT count(*) FROM image_versions") == 40


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_history_holds_after_a_run_killed_at_a_random_moment(
    standin: StandIn, database_url: str, engine: Engine, sig: signal.Signals
) -> None:
    """Changes, deletions and comebacks in flight when the process dies: every committed
    batch wrote its versions with its rows, and the next run completes the history."""
    ids = new_ids(300)
    assert sync(standin, database_url, *ids[:200]).exit_code == 0
    for image_id in ids[:100]:
        standin.state.records[image_id] = record_for(image_id) | {"status": "processed"}
    for image_id in ids[100:140]:
        standin.state.missing.add(image_id)
    standin.state.latency = 0.01
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", "sync", *ids, "--concurrency", "4",
         "--max-deletes", "1000", "--base-url", standin.url, "--database-url", database_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    target = random.randint(20, 250)
    while standin.state.total_requests < 200 + target:
        assert time.monotonic() < deadline, "the sync never got going"
        time.sleep(0.005)
    process.send_signal(sig)
    process.communicate(timeout=30)
    assert_history_consistent(engine)

    standin.state.latency = 0
    result = sync(standin, database_url, *ids, "--max-deletes", "1000")
    assert result.exit_code == 0, result.output
    assert_history_consistent(engine)
    assert scalar(engine, "SELECT count(*) FROM image_versions WHERE valid_to IS NULL") == 260


def _move_the_mirrors_stamps(engine: Engine, by: dt.timedelta) -> None:
    """Every time the mirror wrote (not the API's `date_added_at`) moves `by`: as if the runs
    so far had run on a host whose clock was that far ahead."""
    from sqlmodel import SQLModel

    from mirror.models import UTCDateTime

    with engine.begin() as connection:
        for table in SQLModel.metadata.sorted_tables:
            stamps = [
                c for c in table.columns
                if isinstance(c.type, UTCDateTime) and c.name != "date_added_at"
            ]  # fmt: skip
            for row in connection.execute(select(*table.primary_key.columns, *stamps)).all():
                key = {c.name: getattr(row, c.name) for c in table.primary_key.columns}
                moved = {c.name: getattr(row, c.name) + by for c in stamps if getattr(row, c.name)}
                if moved:
                    where = [c == key[c.name] for c in table.primary_key.columns]
                    connection.execute(update(table).where(*where).values(moved))


@pytest.mark.parametrize("previous", ["finished", "killed"])
def test_a_run_whose_clock_is_behind_the_mirrors_keeps_the_history_in_order(
    standin: StandIn, database_url: str, engine: Engine, previous: str
) -> None:
    """A clock stepped back (NTP, a restored VM), or cron taking turns from two hosts whose
    clocks differ on one PostgreSQL: the next run must not stamp a time before the ones the
    mirror holds, or an image's new version would begin before the version it replaces and
    reports would read the history backwards. A killed run's row has no end, and its batches
    came after its start."""
    image_id, unchanged = new_ids(2)
    body = record_for(image_id) | {"status": "processing"}
    standin.state.records[image_id] = body
    assert sync(standin, database_url, image_id, unchanged).exit_code == 0
    _move_the_mirrors_stamps(engine, dt.timedelta(hours=1))
    if previous == "killed":  # on another host, 30 minutes before its batch
        with engine.begin() as connection:
            runs = sync_runs_table.c
            [started] = connection.execute(select(runs.started_at)).scalars()
            connection.execute(
                update(sync_runs_table).values(
                    status="running",
                    finished_at=None,
                    host="another-host",
                    started_at=started - dt.timedelta(minutes=30),
                )
            )
    [before] = rows(engine, "SELECT * FROM images WHERE image_id = :id", id=unchanged)

    standin.state.records[image_id] = body | {"status": "processed"}
    result = sync(standin, database_url, image_id, unchanged)
    assert result.exit_code == 0 and "1 changed, 1 unchanged" in result.stdout, result.output

    first, second = rows(
        engine, "SELECT * FROM image_versions WHERE image_id = :id ORDER BY id", id=image_id
    )
    assert (first["status"], second["status"]) == ("processing", "processed")
    assert first["valid_from"] < first["valid_to"] == second["valid_from"]
    assert_history_consistent(engine)
    [after] = rows(engine, "SELECT * FROM images WHERE image_id = :id", id=unchanged)
    assert after["last_synced_at"] > before["last_synced_at"]
    earlier, later = rows(engine, "SELECT * FROM sync_runs ORDER BY id")
    assert earlier["status"] == ("succeeded" if previous == "finished" else "interrupted")
    assert earlier["finished_at"] <= later["started_at"] < later["finished_at"]


# libfaketime itself, preloaded into the CLI's process (the `faketime` command runs its program
# as a child, which a kill of the command would leave running).
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)


def _on_a_skewed_clock(offset: str, *args: str) -> subprocess.Popen[str]:
    """The CLI in its own process, its wall clock `offset` from the machine's (libfaketime;
    its monotonic clock, which paces requests and timeouts, left alone)."""
    assert LIBFAKETIME is not None
    skewed = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **skewed},
    )  # fmt: skip


@pytest.mark.skipif(
    LIBFAKETIME is None,
    reason="faketime is not installed (apt install faketime): the sync under a skewed clock "
    "is not run here (CI installs it)",
)
def test_syncs_whose_clocks_disagree_keep_the_history_in_order(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """Whole processes under skewed clocks, as cron on hosts that disagree: a run an hour
    ahead, killed midway, then one two hours behind and one on time, each changing images.
    Every version follows the one it replaces, and every run starts after the one before."""
    ids = new_ids(300)
    common = ["--base-url", standin.url, "--database-url", database_url]

    def serve(status: str) -> None:
        for image_id in ids:
            standin.state.records[image_id] = record_for(image_id) | {"status": status}

    assert sync(standin, database_url, *ids, "--max-rate", "0").exit_code == 0
    serve("processing")
    ahead = _on_a_skewed_clock("+1h", "sync", *ids, "--max-rate", "25", *common)  # 12 s
    deadline = time.monotonic() + 20
    first = scalar(engine, "SELECT max(id) FROM sync_runs")
    query = "SELECT count(*) FROM image_versions WHERE run_id > :first"
    while not scalar(engine, query, first=first):  # its first batch committed
        assert time.monotonic() < deadline and ahead.poll() is None, "it never committed"
        time.sleep(0.01)
    ahead.kill()
    ahead.communicate(timeout=30)

    serve("processed")
    behind = _on_a_skewed_clock("-2h", "sync", *ids, "--max-rate", "0", *common)
    _, err = behind.communicate(timeout=60)
    assert behind.returncode == 0, err
    serve("error")
    assert sync(standin, database_url, *ids, "--max-rate", "0").exit_code == 0

    assert_history_consistent(engine)
    for image_id in ids:  # oldest first
        statuses = [v["status"] for v in versions_of(engine, image_id)]
        assert statuses[-2:] == ["processed", "error"], (image_id, statuses)
    runs = rows(engine, "SELECT * FROM sync_runs ORDER BY id")
    assert [r["status"] for r in runs] == ["succeeded", "interrupted", "succeeded", "succeeded"]
    for earlier, later in itertools.pairwise(runs):
        assert earlier["started_at"] < earlier["finished_at"] <= later["started_at"]
    killed = runs[1]["id"]
    assert scalar(engine, "SELECT count(*) FROM image_versions WHERE run_id = :r", r=killed) > 0
