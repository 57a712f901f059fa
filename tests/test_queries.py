"""The README's reporting queries (docs/queries.sql) run, on both databases, with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, new_ids, rows, run_cli
from sqlalchemy import Engine, text

from mirror.standin import StandIn, record_for

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
        "status timeline of one image",
        "images in each status at a moment",
        "images whose extra holds a given key",
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


def run_query(engine: Engine, name: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SET TIME ZONE 'UTC'"))
        query = text(named_queries()[name])
        return [dict(r) for r in connection.execute(query, params).mappings()]


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.usefixtures("mirrored")
def test_images_whose_extra_holds_a_given_key(engine: Engine) -> None:
    result = run_query(engine, "images whose extra holds a given key")
    # An integer on both databases (not JSON text on one and a number on the other).
    assert [(r["image_id"], r["render_revision"]) for r in result] == [(RESTAGED, 3)]
    assert type(result[0]["render_revision"]) is int


def test_status_timeline_of_one_image_and_status_at_a_moment(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    image, other = new_ids(2)
    common = ["--base-url", standin.url, "--database-url", database_url]
    standin.state.records[image] = record_for(image) | {"status": "processing"}
    standin.state.records[other] = record_for(other) | {"status": "processing"}
    assert run_cli("sync", image, other, *common).exit_code == 0
    standin.state.records[image]["status"] = "processed"
    assert run_cli("sync", image, other, *common).exit_code == 0
    assert run_cli("sync", image, other, *common).exit_code == 0  # unchanged: no new version

    timeline = run_query(engine, "status timeline of one image", image_id=image)
    runs = [r["id"] for r in rows(engine, "SELECT id FROM sync_runs ORDER BY id")]
    assert [(r["status"], r["run_id"]) for r in timeline] == [
        ("processing", runs[0]),
        ("processed", runs[1]),
    ]
    assert timeline[0]["valid_to"] == timeline[1]["valid_from"]
    assert timeline[1]["valid_to"] is None

    def at(moment: Any) -> list[tuple[str, int]]:
        found = run_query(engine, "images in each status at a moment", moment=moment)
        return [(r["status"], r["images"]) for r in found]

    assert at(timeline[0]["valid_from"]) == [("processing", 2)]
    assert at(timeline[1]["valid_from"]) == [("processed", 1), ("processing", 1)]


def test_forgetting_the_failures_of_all_but_the_newest_runs(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    standin.state.missing.add(NEVER)
    common = ["--base-url", standin.url, "--database-url", database_url]
    for _ in range(4):
        assert run_cli("sync", PROCESSED, NEVER, *common).exit_code == 1
    with engine.begin() as connection:
        statement = text(named_queries()["forget the failures of all but the newest runs"])
        connection.execute(statement, {"runs": 2})
    kept = rows(engine, "SELECT run_id, image_id FROM sync_failures ORDER BY run_id")
    assert kept == [{"run_id": 3, "image_id": NEVER}, {"run_id": 4, "image_id": NEVER}]
    assert [r["id"] for r in rows(engine, "SELECT id FROM sync_runs ORDER BY id")] == [1, 2, 3, 4]
    assert run_cli("status", "--database-url", database_url).exit_code == 0
