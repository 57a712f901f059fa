"""`report` (spec §8): every named report through the real CLI on both databases, with answers
computed independently from the rows; the percentiles agree across SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import random
import subprocess
import sys
from fractions import Fraction
from typing import Any

import pytest
from helpers import REPO, new_ids, on_a_terminal, rows, run_cli, when
from sqlalchemy import Engine, insert

from mirror.config import parse_database_url
from mirror.db import create_db_engine
from mirror.models import image_versions_table, images_table, orders_table
from mirror.reports import load_reports, report_source
from mirror.sample_account import SampleAccount
from mirror.standin import StandIn, record_for

UTC = dt.UTC
REPORTS = load_reports()


def report(database_url: str, *args: str) -> Any:
    return run_cli("report", *args, "--database-url", database_url)


def report_json(database_url: str, name: str, *args: str) -> list[dict[str, Any]]:
    result = report(database_url, name, "--format", "json", *args)
    assert result.exit_code == 0, result.output + result.stderr
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


def sync(standin: StandIn, database_url: str, *args: str) -> None:
    common = ["--base-url", standin.url, "--database-url", database_url, "--max-deletes", "9"]
    result = run_cli("sync", *args, *common)
    assert result.exit_code in (0, 1), result.output + result.stderr


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def percentile(values: list[int], fraction: Fraction) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont), exactly."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (position - low) * (ordered[high] - ordered[low]))


# --- the list, the formats and bad input --------------------------------------------------


def test_report_alone_lists_every_report_with_one_line() -> None:
    result = run_cli("report")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(REPORTS)
    assert set(REPORTS) >= {
        "status-per-day",
        "time-to-process",
        "errors-per-day",
        "downloads-per-day",
        "restaged",
        "deleted",
        "last-runs",
        "last-run-failures",
        "images-per-order",
        "orders-processing",
    }
    for line, named in zip(lines, REPORTS.values(), strict=True):
        assert named.about and line.endswith(named.about)
    # Reports that read image_versions say so; those that do not, do not.
    history = {n for n, r in REPORTS.items() if "image_versions" in "".join(r.statements.values())}
    assert history == {n for n, r in REPORTS.items() if r.about.startswith("(history)")}
    assert history == {"time-to-process", "errors-per-day", "downloads-per-day"}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["no-such-report"], "no report named 'no-such-report'"),
        (["deleted", "--since", "2026-13-01"], "--since '2026-13-01' is not a date"),
        (["deleted", "--until", "yesterday"], "--until 'yesterday' is not a date"),
    ],
)
def test_an_unknown_name_or_a_bad_date_is_exit_2_with_the_names(
    tmp_path: Any, args: list[str], complaint: str
) -> None:
    target = tmp_path / "never-created.db"
    result = report(f"sqlite:///{target}", *args)
    assert result.exit_code == 2
    assert complaint in result.stderr
    assert all(name in result.stderr for name in REPORTS)
    assert not target.exists()  # nothing was opened, let alone created


def test_since_after_until_is_exit_2(tmp_path: Any) -> None:
    result = report(
        f"sqlite:///{tmp_path / 'm.db'}",
        "deleted",
        "--since",
        "2026-11-02",
        "--until",
        "2026-11-01",
    )
    assert result.exit_code == 2
    assert "--since 2026-11-02 is after --until 2026-11-01" in result.stderr


def test_a_missing_mirror_is_an_error_not_an_empty_report(tmp_path: Any) -> None:
    target = tmp_path / "missing.db"
    result = report(f"sqlite:///{target}", "last-runs")
    assert result.exit_code == 3
    assert "error:" in result.stderr and result.stdout == ""
    assert not target.exists()


def test_a_mirror_older_than_the_history_table_is_told_to_upgrade(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert run_cli("db", "upgrade", "0004", "--database-url", url).exit_code == 0
    result = report(url, "time-to-process")
    assert result.exit_code == 3
    assert "db upgrade" in result.stderr


def test_the_reports_file_is_in_docs_queries_verbatim() -> None:
    docs = (REPO / "docs" / "queries.sql").read_text()
    for named in REPORTS.values():
        for statement in named.statements.values():
            assert statement in docs, named.name
    assert report_source().split("\n-- report: ", 1)[1] in docs


# --- every report, through the CLI, on both databases -------------------------------------

A_PROCESSED_LATER, B_ERROR_LATER, C_DONE, D_CHILD, E_GONE, F_ERROR_TWICE, G_NO_REASON = new_ids(7)
NEVER = "ffffffff-0000-4000-8000-000000000000"


def base(image_id: str, **changes: Any) -> dict[str, Any]:
    record = record_for(image_id)
    record.update(parent_image_id=None, restage=None, downloaded=False, status_reason=None)
    record.update(changes)
    return record


@pytest.fixture
def history(standin: StandIn, database_url: str) -> list[str]:
    """Three runs: images that change status between them, a restaged child, a deletion."""
    records = standin.state.records
    records.update(
        {
            A_PROCESSED_LATER: base(A_PROCESSED_LATER, status="processing"),
            B_ERROR_LATER: base(B_ERROR_LATER, status="processing"),
            C_DONE: base(C_DONE, status="processed", downloaded=True),
            D_CHILD: base(
                D_CHILD, status="processed", parent_image_id=C_DONE, restage={"tvs": "BLACK_OUT"}
            ),
            E_GONE: base(E_GONE, status="processed"),
            F_ERROR_TWICE: base(F_ERROR_TWICE, status="error", status_reason="quota"),
            G_NO_REASON: base(G_NO_REASON, status="error"),  # an error the API gave no reason
        }
    )
    ids = [A_PROCESSED_LATER, B_ERROR_LATER, C_DONE, D_CHILD, E_GONE, F_ERROR_TWICE, G_NO_REASON]
    sync(standin, database_url, *ids)
    records[A_PROCESSED_LATER]["status"] = "processed"
    records[B_ERROR_LATER].update(status="error", status_reason="quota")
    records[F_ERROR_TWICE].update(status="error", status_reason="corrupt upload")
    sync(standin, database_url, *ids)
    records[A_PROCESSED_LATER]["downloaded"] = True
    standin.state.missing.update({E_GONE, NEVER})
    sync(standin, database_url, *ids, NEVER)
    return ids


@pytest.mark.usefixtures("history")
def test_every_report_answers_from_the_rows(engine: Engine, database_url: str) -> None:
    images = {r["image_id"]: r for r in rows(engine, "SELECT * FROM images")}
    versions: dict[str, list[dict[str, Any]]] = {}
    for v in rows(engine, "SELECT * FROM image_versions ORDER BY valid_from, id"):
        versions.setdefault(v["image_id"], []).append(v)
    day = lambda value: when(value).date().isoformat()  # noqa: E731

    # status-per-day: mirrored (not deleted) images by day added and current status.
    expected_status: dict[tuple[str, str], int] = {}
    for image in images.values():
        if image["deleted_at"] is None:
            key = (day(image["date_added_at"]), image["status"])
            expected_status[key] = expected_status.get(key, 0) + 1
    got = report_json(database_url, "status-per-day")
    assert [(r["day"], r["status"], r["images"]) for r in got] == sorted(
        (d, s, n) for (d, s), n in expected_status.items()
    )

    # time-to-process: first processed version minus date added, whole seconds; how many
    # of those the mirror saw processed from its first version on.
    seconds: dict[str, list[int]] = {}
    seen_processed: dict[str, int] = {}
    for history in versions.values():
        first = next((v for v in history if v["status"] == "processed"), None)
        if first is not None:
            took = math.floor(when(first["valid_from"]).timestamp()) - math.floor(
                when(first["date_added_at"]).timestamp()
            )
            seconds.setdefault(day(first["valid_from"]), []).append(took)
            at_once = int(first is history[0])
            seen_processed[day(first["valid_from"])] = at_once + seen_processed.get(
                day(first["valid_from"]), 0
            )
    assert sum(len(v) for v in seconds.values()) == 4  # A, C, D and E (deleted since)
    assert sum(seen_processed.values()) == 3  # all but A
    got = report_json(database_url, "time-to-process")
    assert got == [
        {
            "day": d,
            "images": len(values),
            "median_seconds": percentile(values, Fraction(1, 2)),
            "p90_seconds": percentile(values, Fraction(9, 10)),
            "max_seconds": max(values),
            "first_seen_processed": seen_processed[d],
        }
        for d, values in sorted(seconds.items())
    ]

    # errors-per-day: B entered error once; F twice (its reason changed while in error).
    got = report_json(database_url, "errors-per-day")
    today = day(versions[F_ERROR_TWICE][-1]["valid_from"])
    assert [(r["day"], r["status_reason"], r["images"]) for r in got] == [
        (today, "quota", 2),
        (today, "corrupt upload", 1),
        (today, None, 1),  # no reason sorts last on both databases
    ]

    # downloads-per-day: C downloaded from the first run, A from the third.
    got = report_json(database_url, "downloads-per-day")
    assert got == [{"day": today, "images": 2}]

    # restaged: D with its parent C.
    [child] = report_json(database_url, "restaged")
    assert (child["image_id"], child["parent_image_id"], child["parent_name"]) == (
        D_CHILD,
        C_DONE,
        images[C_DONE]["image_name"],
    )
    assert child["date_added_at"] == iso(when(images[D_CHILD]["date_added_at"]))

    # deleted: E, at the time the third run found it gone.
    [gone] = report_json(database_url, "deleted")
    assert (gone["image_id"], gone["deleted_at"]) == (
        E_GONE,
        iso(when(images[E_GONE]["deleted_at"])),
    )

    # last-runs: newest first, with the counts sync_runs holds.
    runs = rows(engine, "SELECT * FROM sync_runs ORDER BY id DESC")
    got = report_json(database_url, "last-runs")
    assert [(r["id"], r["status"], r["requested"], r["updated"], r["deleted"]) for r in got] == [
        (r["id"], r["status"], r["requested"], r["updated"], r["deleted"]) for r in runs
    ]
    assert [r["status"] for r in got] == ["partial", "succeeded", "succeeded"]
    assert got[0]["started_at"] == iso(when(runs[0]["started_at"]))

    # last-run-failures: the ID the API never knew.
    got = report_json(database_url, "last-run-failures")
    assert [(r["run_id"], r["image_id"], r["kind"], r["http_status"]) for r in got] == [
        (runs[0]["id"], NEVER, "not_found", 404)
    ]


@pytest.mark.usefixtures("history")
def test_since_and_until_are_whole_utc_days_both_included(database_url: str) -> None:
    today = dt.datetime.now(UTC).date()
    one_day = dt.timedelta(days=1)
    for name in ("downloads-per-day", "deleted", "last-runs", "errors-per-day"):
        everything = report_json(database_url, name)
        assert everything
        assert report_json(database_url, name, "--since", str(today), "--until", str(today)) == (
            everything
        )
        assert report_json(database_url, name, "--until", str(today - one_day)) == []
        assert report_json(database_url, name, "--since", str(today + one_day)) == []
    # With no run in the dates there is no "last run", so no failures.
    assert report_json(database_url, "last-run-failures", "--since", str(today + one_day)) == []


@pytest.mark.usefixtures("history")
def test_csv_when_piped_table_on_request_json_one_array(database_url: str) -> None:
    piped = report(database_url, "last-runs")  # click's runner is not a terminal
    assert piped.exit_code == 0
    parsed = list(csv.DictReader(io.StringIO(piped.stdout)))
    as_json = report_json(database_url, "last-runs")
    assert [r["id"] for r in parsed] == [str(r["id"]) for r in as_json]
    assert parsed[0]["started_at"] == as_json[0]["started_at"]
    assert parsed[0]["error"] == ""  # NULL is an empty cell

    table = report(database_url, "last-runs", "--format", "table").stdout.splitlines()
    assert table[0].split()[:4] == ["id", "started_at", "finished_at", "status"]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert len(table) == 2 + len(as_json)
    assert table[2].split()[0] == str(as_json[0]["id"])

    empty = report(database_url, "last-run-failures", "--since", "9999-01-01", "--format", "table")
    assert empty.stdout.splitlines()[-1] == "(no rows)"


# --- the percentiles: the same numbers on both databases ----------------------------------


def seen_processed_first(index: int) -> bool:
    """Every fifth seeded image the mirror first saw already processed."""
    return index % 5 == 4


def seed_durations(engine: Engine, durations: dict[dt.date, list[int]]) -> None:
    """Images processed on the given days after the given seconds; their versions as the
    mirror writes them (one processing, then one processed; only the processed one for
    every fifth image), with sub-second timestamps."""
    image_rows: list[dict[str, Any]] = []
    version_rows: list[dict[str, Any]] = []
    rng = random.Random(7)
    for day, values in durations.items():
        for index, took in enumerate(values):
            image_id = new_ids(1)[0]
            processed_at = dt.datetime.combine(day, dt.time(12, 0), UTC) + dt.timedelta(
                seconds=rng.randrange(-40_000, 40_000), microseconds=rng.randrange(1_000_000)
            )
            added = processed_at - dt.timedelta(seconds=took, microseconds=rng.randrange(1000))
            content = {"image_id": image_id, "date_added_at": added, "extra": {}}
            seen = added + (processed_at - added) / 3
            if seen_processed_first(index):
                seen = processed_at
            image_rows.append(
                content
                | {
                    "status": "processed",
                    "content_hash": "h2",
                    "first_synced_at": seen,
                    "last_synced_at": processed_at,
                    "last_changed_at": processed_at,
                }
            )
            if not seen_processed_first(index):
                version_rows.append(
                    content
                    | {"status": "processing", "content_hash": "h1", "valid_from": seen}
                    | {"valid_to": processed_at}
                )
            version_rows.append(
                content
                | {"status": "processed", "content_hash": "h2", "valid_from": processed_at}
                | {"valid_to": None}
            )
    with engine.begin() as connection:
        connection.execute(insert(images_table), image_rows)
        connection.execute(insert(image_versions_table), version_rows)


def test_seeded_rows_are_what_the_mirror_writes(tmp_path: Any) -> None:
    """The seeded history obeys the invariants the sync keeps, so it is a fair input."""
    from test_history import assert_history_consistent

    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    assert run_cli("db", "upgrade", "--database-url", url).exit_code == 0
    engine = create_db_engine(parse_database_url(url))
    seed_durations(engine, {dt.date(2026, 11, 2): [5, 60, 3600]})
    assert_history_consistent(engine)
    engine.dispose()


DURATIONS = {
    dt.date(2026, 11, 1): [42],
    dt.date(2026, 11, 2): [300, 90],
    dt.date(2026, 11, 3): [7, 7, 7, 8],
    dt.date(2026, 11, 4): random.Random(1).sample(range(30, 90_000), 37),
    dt.date(2026, 11, 5): [random.Random(2).randrange(1, 2_000_000) for _ in range(101)],
    dt.date(2026, 11, 6): [10**6 + i for i in range(11)],
}


@pytest.mark.postgres
def test_time_to_process_gives_the_same_numbers_on_sqlite_and_postgresql(
    tmp_path: Any, postgres_url: str
) -> None:
    answers = []
    for url in (f"sqlite:///{tmp_path / 'same.db'}", postgres_url):
        assert run_cli("db", "upgrade", "--database-url", url).exit_code == 0
        engine = create_db_engine(parse_database_url(url))
        seed_durations(engine, DURATIONS)
        engine.dispose()
        answers.append(report_json(url, "time-to-process", "--since", "2026-11-02"))
    on_sqlite, on_postgres = answers
    assert on_sqlite == on_postgres
    assert on_sqlite == [
        {
            "day": day.isoformat(),
            "images": len(values),
            "median_seconds": percentile(values, Fraction(1, 2)),
            "p90_seconds": percentile(values, Fraction(9, 10)),
            "max_seconds": max(values),
            "first_seen_processed": sum(map(seen_processed_first, range(len(values)))),
        }
        for day, values in DURATIONS.items()
        if day >= dt.date(2026, 11, 2)
    ]
    assert [a["first_seen_processed"] for a in on_sqlite[:3]] == [0, 0, 7]
    assert on_sqlite[1]["median_seconds"] == 7.0 and on_sqlite[1]["p90_seconds"] == 7.7

    # And PostgreSQL's own percentile_cont agrees with the portable formula.
    engine = create_db_engine(parse_database_url(postgres_url))
    reference = rows(
        engine,
        """SELECT day, percentile_cont(0.5) WITHIN GROUP (ORDER BY took) AS median,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY took) AS p90
           FROM (SELECT CAST(date(v.valid_from AT TIME ZONE 'UTC') AS TEXT) AS day,
                        floor(extract(epoch FROM v.valid_from))
                          - floor(extract(epoch FROM v.date_added_at)) AS took
                 FROM image_versions AS v WHERE v.status = 'processed') AS t
           WHERE day >= '2026-11-02' GROUP BY day ORDER BY day""",
    )
    engine.dispose()
    assert [r["day"] for r in reference] == [a["day"] for a in on_postgres]
    for mine, theirs in zip(on_postgres, reference, strict=True):
        assert mine["median_seconds"] == pytest.approx(float(theirs["median"]), rel=1e-12)
        assert mine["p90_seconds"] == pytest.approx(float(theirs["p90"]), rel=1e-12)


@pytest.mark.usefixtures("history")
def test_a_terminal_gets_a_table_by_default(database_url: str) -> None:
    """`report` run as a user runs it, its stdout a terminal (a pseudo-terminal here)."""
    lines = on_a_terminal("report", "last-runs", "--database-url", database_url).splitlines()
    assert lines[0].split()[:2] == ["id", "started_at"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 5  # header, rule, three runs


def test_the_readme_shows_the_history_reports_sql_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    assert REPORTS["downloads-per-day"].statements[""] in readme
    assert REPORTS["time-to-process"].statements["postgresql"] in readme


# --- the order reports ----------------------------------------------------------------------

FINISHED = ("processed", "error", "expired")


@pytest.fixture
def account(standin: StandIn, database_url: str) -> SampleAccount:
    """Four orders created on four days, mirrored with --order; one still processing, one
    deleted upstream after; the account then holds the three left."""
    account = SampleAccount.generate(40, seed=11)
    standin.state.account = account
    chosen = sorted(account.orders)[:4]
    for days, order_id in enumerate(chosen):
        account.orders[order_id].created_at = dt.datetime(2026, 3, 1 + days, 23, 30, tzinfo=UTC)
    account.orders[chosen[0]].status = "processing"
    args = [arg for order_id in chosen for arg in ("--order", order_id)]
    sync(standin, database_url, *args)
    account.delete_order(chosen[3])
    sync(standin, database_url, *args)
    for order_id in list(account.orders):
        if order_id not in chosen:
            account.orders.pop(order_id)
    return account


def test_images_per_order_and_orders_processing(account: SampleAccount, database_url: str) -> None:
    per_order, unfinished_orders = [], []
    for order_id in sorted(account.orders):
        order = account.orders[order_id]
        statuses = [account.image_record(i)["status"] for i in order.image_ids]
        n = len(order.image_ids)
        created = iso(order.created_at)
        per_order.append((order_id, order.status, created, n, n, statuses.count("processed")))
        unfinished = sum(1 for s in statuses if s not in FINISHED)
        if order.status == "processing" or unfinished:
            unfinished_orders.append((order_id, order.status, created, unfinished))
    got = report_json(database_url, "images-per-order")
    assert [
        (r["order_id"], r["status"], r["created_at"], r["total_images"], r["images"],
         r["processed"])
        for r in got
    ] == per_order  # fmt: skip
    assert len(per_order) == 3  # the deleted order is left out
    got = report_json(database_url, "orders-processing")
    assert [
        (r["order_id"], r["status"], r["created_at"], r["unfinished_images"]) for r in got
    ] == unfinished_orders
    assert any(status == "processing" for _, status, _, _ in unfinished_orders)


def test_the_order_reports_filter_the_day_created(
    account: SampleAccount, engine: Engine, database_url: str
) -> None:
    """Whole UTC days, both ends included; an order whose creation is unknown is always in."""
    first, second, third = sorted(account.orders, key=lambda o: account.orders[o].created_at)
    listed = [r["order_id"] for r in report_json(database_url, "images-per-order",
              "--since", "2026-03-02", "--until", "2026-03-03")]  # fmt: skip
    assert listed == sorted([second, third])
    with engine.begin() as connection:
        connection.execute(
            orders_table.update().where(orders_table.c.order_id == first).values(created_at=None)
        )
    for name in ("images-per-order", "orders-processing"):
        got = report_json(database_url, name, "--since", "2026-03-03", "--until", "2026-03-03")
        assert first in [r["order_id"] for r in got], name
        assert second not in [r["order_id"] for r in got], name


def test_a_locale_that_is_not_utf8_neither_chokes_on_a_name_nor_loses_it(
    standin: StandIn, database_url: str
) -> None:
    """Under a legacy locale (here PYTHONIOENCODING=latin-1), an image name with a character
    the locale lacks ended `report` in a traceback. CSV is UTF-8 whatever the locale, every
    character kept; a table escapes what the terminal's encoding cannot show."""
    parent, child = new_ids(2)
    name = "kitchen \U0001f373 na\u00efve.jpg"
    restaged = {"image_name": name, "parent_image_id": parent}
    standin.state.records[child] = record_for(child) | restaged
    sync(standin, database_url, child, parent)
    report = [sys.executable, "-m", "mirror", "report", "restaged", "--database-url", database_url]
    latin1 = {**os.environ, "PYTHONIOENCODING": "latin-1"}

    as_csv = subprocess.run([*report, "--format", "csv"], capture_output=True, env=latin1)
    assert as_csv.returncode == 0, as_csv.stderr
    table = csv.DictReader(io.StringIO(as_csv.stdout.decode("utf-8")))
    assert [r["image_name"] for r in table if r["image_id"] == child] == [name]

    as_table = subprocess.run([*report, "--format", "table"], capture_output=True, env=latin1)
    assert as_table.returncode == 0, as_table.stderr
    assert "kitchen \\U0001f373 na\u00efve.jpg" in as_table.stdout.decode("latin-1")


def test_escape_sequences_in_the_apis_data_reach_no_terminal_and_stay_in_csv(
    standin: StandIn, database_url: str
) -> None:
    """An image's name is its uploader's, and a status is the API's word: printed as they
    were, by a table of `report` or by `status`, the terminal obeyed the escape sequences in
    them (retitled, cleared, recoloured). A table now shows them escaped; CSV keeps them."""
    parent, child = new_ids(2)
    name = "\x1b]0;pwned\x07\x1b[2Jcafé\tbar.jpg"
    drifted = {"image_name": name, "parent_image_id": parent, "status": "queued\x1b[31m"}
    standin.state.records[child] = record_for(child) | drifted
    sync(standin, database_url, child, parent)

    table = on_a_terminal("report", "restaged", "--database-url", database_url)
    status = on_a_terminal("status", "--database-url", database_url)
    for shown in (table, status):
        assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]0;pwned\\x07\\x1b[2Jcafé\\tbar.jpg" in table  # é kept, controls escaped
    assert "queued\\x1b[31m" in status

    as_csv = report(database_url, "restaged", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows_read = csv.DictReader(io.StringIO(as_csv.stdout))
    # The child's row: the parent's sample record may be a restaged image too (a row of its own)
    assert [r["image_name"] for r in rows_read if r["image_id"] == child] == [name]


@pytest.mark.parametrize(
    "command",
    [
        ["report", "last-runs", "--format", "csv"],
        ["report", "last-runs", "--format", "json"],
        ["report"],
        ["status"],
        ["status", "--json"],
        ["db", "current"],
    ],
)
def test_output_to_a_full_disk_is_exit_3_saying_so(
    standin: StandIn, tmp_path: Any, command: list[str]
) -> None:
    """`report ... > report.csv` on a full disk (/dev/full) ended in a traceback with exit 1, a
    partial sync's code, and a file cut short."""
    database_url = f"sqlite:///{tmp_path / 'm.db'}"
    sync(standin, database_url, *new_ids(2))
    database = [] if command == ["report"] else ["--database-url", database_url]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "mirror", *command, *database],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        "error: cannot write to standard output (No space left on device): what reached it is "
        "incomplete\n"
    )
