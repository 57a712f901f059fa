"""The README's reporting queries (docs/queries.sql) run, on both databases, with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, rows, run_cli
from sqlalchemy import Engine, text

from mirror.sample_account import SampleAccount
from mirror.standin import StandIn

QUERIES_FILE = REPO / "docs" / "queries.sql"
DATA = Path(__file__).parent / "data"
PROCESSED = "3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5"
PROCESSING = "b1e2c3d4-5f60-4a7b-8c9d-0e1f2a3b4c5d"
RESTAGED = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d"
GONE = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
NEVER = "ffffffff-0000-4000-8000-000000000000"


def named_queries() -> dict[str, str]:
    """`-- name: X`, optional comment lines, then one statement ending in `;`."""
    queries: dict[str, str] = {}
    for block in QUERIES_FILE.read_text().split("-- name: ")[1:]:
        name, _, rest = block.partition("\n")
        sql = "\n".join(line for line in rest.splitlines() if not line.startswith("--"))
        queries[name.strip()] = sql.strip()
    return queries


def test_the_file_holds_the_queries_the_readme_promises() -> None:
    assert set(named_queries()) >= {
        "images per status per day",
        "restaged images with their parents",
        "images whose extra holds a given key",
        "failures of the last run",
        "images per order",
        "orders still processing",
    }


@pytest.mark.parametrize("name", sorted(named_queries()))
def test_the_readme_shows_each_query_verbatim(name: str) -> None:
    assert named_queries()[name] in (REPO / "README.md").read_text()


@pytest.fixture
def mirrored(standin: StandIn, database_url: str) -> None:
    for name in ["image_processed.json", "image_processing.json", "image_restaged.json"]:
        body = json.loads((DATA / name).read_text())
        standin.state.records[body["image_id"]] = body
    ids = [PROCESSED, PROCESSING, RESTAGED, GONE]
    common = ["--base-url", standin.url, "--database-url", database_url]
    assert run_cli("sync", *ids, *common).exit_code == 0
    standin.state.missing.update({GONE, NEVER})
    assert run_cli("sync", *ids, NEVER, *common).exit_code == 1


def run_query(engine: Engine, name: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SET TIME ZONE 'UTC'"))
        return [dict(r) for r in connection.execute(text(named_queries()[name])).mappings()]


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.usefixtures("mirrored")
def test_images_per_status_per_day(engine: Engine) -> None:
    result = run_query(engine, "images per status per day")
    assert [(r["day"], r["status"], r["images"]) for r in result] == [
        ("2025-05-08", "processed", 1),
        ("2025-10-30", "processing", 1),
        ("2026-02-25", "processed", 1),
    ]


@pytest.mark.usefixtures("mirrored")
def test_restaged_images_with_their_parents(engine: Engine) -> None:
    [row] = run_query(engine, "restaged images with their parents")
    assert (row["image_id"], row["parent_id"], row["parent_name"]) == (
        RESTAGED,
        PROCESSED,
        "IMG_3090.JPG",
    )
    assert isinstance(row["restage"], str)  # JSON text on both databases
    assert json.loads(row["restage"])["grass"] == "GREEN"


@pytest.mark.usefixtures("mirrored")
def test_images_whose_extra_holds_a_given_key(engine: Engine) -> None:
    result = run_query(engine, "images whose extra holds a given key")
    # An integer on both databases (not JSON text on one and a number on the other).
    assert [(r["image_id"], r["render_revision"]) for r in result] == [(RESTAGED, 3)]
    assert type(result[0]["render_revision"]) is int


@pytest.mark.usefixtures("mirrored")
def test_failures_of_the_last_run(engine: Engine) -> None:
    result = run_query(engine, "failures of the last run")
    assert [(r["image_id"], r["kind"], r["http_status"]) for r in result] == [
        (NEVER, "not_found", 404)
    ]


@pytest.mark.usefixtures("mirrored")
def test_images_deleted_upstream_and_last_runs(engine: Engine) -> None:
    assert [r["image_id"] for r in run_query(engine, "images deleted upstream")] == [GONE]
    runs = run_query(engine, "the last runs")
    assert [(r["status"], r["requested"], r["deleted"], r["not_found"]) for r in runs] == [
        ("partial", 5, 1, 1),
        ("succeeded", 4, 0, 0),
    ]
    assert [(r["orders_requested"], r["api_requests"]) for r in runs] == [(0, 5), (0, 4)]
    assert rows(engine, "SELECT count(*) AS n FROM images") == [{"n": 4}]


FINISHED = ("processed", "error", "expired")


@pytest.fixture
def account(standin: StandIn, database_url: str) -> SampleAccount:
    """Three orders mirrored with --order; one still processing, one deleted upstream after."""
    account = SampleAccount.generate(40, seed=11)
    standin.state.account = account
    chosen = sorted(account.orders)[:4]
    account.orders[chosen[0]].status = "processing"
    args = [arg for order_id in chosen for arg in ("--order", order_id)]
    common = ["--base-url", standin.url, "--database-url", database_url, "--max-deletes", "99"]
    assert run_cli("sync", *args, *common).exit_code == 0
    account.delete_order(chosen[3])
    assert run_cli("sync", *args, *common).exit_code == 0
    for order_id in list(account.orders):
        if order_id not in chosen:
            account.orders.pop(order_id)
    return account


def test_images_per_order(account: SampleAccount, engine: Engine) -> None:
    result = run_query(engine, "images per order")
    expected = []
    for order_id in sorted(account.orders):
        order = account.orders[order_id]
        statuses = [account.image_record(i)["status"] for i in order.image_ids]
        n = len(order.image_ids)
        expected.append((order_id, order.status, n, n, statuses.count("processed")))
    got = [
        (r["order_id"], r["status"], r["total_images"], r["images"], r["processed"]) for r in result
    ]
    assert got == expected
    assert all(type(r["images"]) is int and type(r["processed"]) is int for r in result)


def test_orders_still_processing(account: SampleAccount, engine: Engine) -> None:
    result = run_query(engine, "orders still processing")
    expected = []
    for order_id in sorted(account.orders):
        order = account.orders[order_id]
        statuses = [account.image_record(i)["status"] for i in order.image_ids]
        unfinished = sum(1 for s in statuses if s not in FINISHED)
        if order.status == "processing" or unfinished:
            expected.append((order_id, order.status, unfinished))
    assert [(r["order_id"], r["status"], r["unfinished_images"]) for r in result] == expected
    assert any(status == "processing" for _, status, _ in expected)
