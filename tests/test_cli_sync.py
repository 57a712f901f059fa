"""`autoenhance-mirror sync` end to end: the real CLI, the stand-in, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import new_ids, rows, run_cli, scalar
from sqlalchemy import DateTime, Engine, bindparam, create_engine, inspect, text

from mirror.config import masked, parse_database_url
from mirror.schema import SCHEMA_HEAD, SCHEMA_REVISIONS
from mirror.standin import Fault, StandIn, record_for

DATA = Path(__file__).parent / "data"
EXAMPLES = ["image_processed.json", "image_processing.json", "image_restaged.json"]
SUMMARY_KEYS = [
    "run_id",
    "status",
    "requested",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "not_found",
    "failed",
]


def sync(standin: StandIn, database_url: str, *args: str, input: str | None = None) -> Any:
    return run_cli(
        "sync", "--base-url", standin.url, "--database-url", database_url, *args, input=input
    )


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text()))


def as_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)  # SQLite hands back 0/1


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # SQLite JSON is text


def test_the_three_documented_examples_land_where_the_spec_says(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    bodies = [load(name) for name in EXAMPLES]
    for body in bodies:
        standin.state.records[body["image_id"]] = body
    result = sync(standin, database_url, *(b["image_id"] for b in bodies))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("synced 3 images: 3 new, 0 changed, 0 unchanged")

    for body in bodies:
        [row] = rows(engine, "SELECT * FROM images WHERE image_id = :id", id=body["image_id"])
        for key in ["ai_version", "cloud_type", "enhance_type", "image_name", "scene"]:
            assert row[key] == body[key], key
        for key in ["parent_image_id", "window_pull_type", "order_id", "user_id", "status"]:
            assert row[key] == body[key], key
        for key in ["preset_id", "status_reason"]:
            assert row[key] == body[key], key
        for key in ["downloaded", "enhance", "lens_correction", "privacy", "sky_replacement"]:
            assert as_bool(row[key]) == body[key], key
        for key in ["upscale", "vertical_correction"]:
            assert as_bool(row[key]) == body[key], key
        assert row["date_added"] == body["date_added"]
        assert row["rating"] == body["rating"]
        assert as_json(row["finetune_settings"]) == body["finetune_settings"]
        assert as_json(row["restage"]) == body["restage"]
        expected_extra = {
            k: v for k, v in body.items() if k in {"metadata", "window_pull", "render_revision"}
        }
        assert as_json(row["extra"]) == expected_extra

    # JSON null is SQL NULL, in JSON columns too.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM images WHERE finetune_settings IS NULL AND restage IS NULL",
        )
        == 1
    )
    # date_added_at is the same instant as a UTC timestamp; SQL can compare it (the bind is
    # typed: Python 3.12 deprecated sqlite3's own adapter of a bare datetime).
    after = text("SELECT image_id FROM images WHERE date_added_at > :t").bindparams(
        bindparam("t", datetime(2026, 1, 1, tzinfo=UTC), type_=DateTime(timezone=True))
    )
    with engine.connect() as connection:
        assert connection.execute(after).scalar() == "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d"
    # The restaged image's extra is queryable with the portable -> operator.
    assert rows(
        engine, "SELECT image_id FROM images WHERE extra -> 'render_revision' IS NOT NULL"
    ) == [{"image_id": "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d"}]


def test_rerun_is_unchanged_and_a_change_replaces_every_api_column(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(5)
    assert sync(standin, database_url, *ids).exit_code == 0
    before = {r["image_id"]: r for r in rows(engine, "SELECT * FROM images")}

    again = sync(standin, database_url, *ids, "--json")
    assert again.exit_code == 0
    summary = json.loads(again.stdout)
    assert list(summary)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS
    assert summary["unchanged"] == 5 and summary["inserted"] == summary["updated"] == 0
    after = {r["image_id"]: r for r in rows(engine, "SELECT * FROM images")}
    for image_id in ids:
        assert after[image_id]["last_synced_at"] > before[image_id]["last_synced_at"]
        assert after[image_id]["last_changed_at"] == before[image_id]["last_changed_at"]
        assert after[image_id]["first_synced_at"] == after[image_id]["last_changed_at"]

    changed = record_for(ids[0])
    changed["status"] = "expired"
    del changed["scene"]  # absent from the response: the column becomes NULL
    changed["brand_new_field"] = {"x": 1}
    standin.state.records[ids[0]] = changed
    third = sync(standin, database_url, *ids)
    assert third.exit_code == 0
    assert "0 new, 1 changed, 4 unchanged" in third.stdout
    [row] = rows(engine, "SELECT * FROM images WHERE image_id = :id", id=ids[0])
    assert row["status"] == "expired" and row["scene"] is None
    assert as_json(row["extra"])["brand_new_field"] == {"x": 1}
    assert row["last_changed_at"] == row["last_synced_at"] > before[ids[0]]["last_changed_at"]
    assert row["first_synced_at"] == before[ids[0]]["first_synced_at"]

    runs = rows(engine, "SELECT * FROM sync_runs ORDER BY id")
    assert [(r["status"], r["inserted"], r["updated"], r["unchanged"]) for r in runs] == [
        ("succeeded", 5, 0, 0),
        ("succeeded", 0, 0, 5),
        ("succeeded", 0, 1, 4),
    ]
    assert all(r["requested"] == 5 and r["finished_at"] >= r["started_at"] for r in runs)


def test_ids_from_arguments_file_and_stdin_are_fetched_once(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    ids = new_ids(4)
    id_file = tmp_path / "ids.txt"
    id_file.write_bytes(
        (
            f"# cron list\r\n\r\n  {ids[0].upper()}  \r\n{ids[1]}\r\n{ids[0]}\r\n   \r\n# end\r\n"
        ).encode()
    )
    result = sync(standin, database_url, ids[0], ids[2], "--from-file", str(id_file))
    assert result.exit_code == 0, result.output
    assert "synced 3 images: 3 new" in result.stdout
    assert standin.state.requests == {ids[0]: 1, ids[1]: 1, ids[2]: 1}

    from_stdin = sync(standin, database_url, "--from-file", "-", input=f"{ids[3]}\n{ids[1]}\n")
    assert from_stdin.exit_code == 0
    assert "synced 2 images: 1 new, 0 changed, 1 unchanged" in from_stdin.stdout
    stored = {r["image_id"] for r in rows(engine, "SELECT image_id FROM images")}
    assert stored == set(ids)  # lower-case, canonical


def test_invalid_ids_exit_2_naming_each_and_nothing_is_fetched_or_written(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    good = new_ids(1)[0]
    id_file = tmp_path / "ids.txt"
    id_file.write_text(f"{good}\n\nnot-a-uuid\n{good.replace('-', '')}\n")
    result = sync(standin, database_url, good, "{" + good + "}", "--from-file", str(id_file))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "3 invalid image IDs" in result.stderr
    assert f"argument 2: '{{{good}}}'" in result.stderr
    assert f"{id_file}:3: 'not-a-uuid'" in result.stderr
    assert f"{id_file}:4: '{good.replace('-', '')}'" in result.stderr
    assert standin.state.total_requests == 0
    # Nothing written: not even the schema.
    with engine.connect() as connection:
        assert not connection.dialect.has_table(connection, "images")


def test_no_ids_at_all_is_a_usage_error(standin: StandIn, database_url: str) -> None:
    result = sync(standin, database_url)
    assert result.exit_code == 2
    assert "--from-file" in result.stderr
    assert standin.state.total_requests == 0


def test_headers_sent_and_secrets_never_shown(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    key = "sk-test-SECRET-4f1c9a"
    ids = new_ids(2)
    result = run_cli(
        "sync",
        *ids,
        "--base-url",
        standin.url,
        "--database-url",
        database_url,
        "--api-key",
        key,
        "--json",
    )
    assert result.exit_code == 0, result.output
    headers = standin.state.last_headers
    assert headers["x-api-key"] == key
    assert headers["x-api-version"] == "2025-08-31"
    assert headers["user-agent"].startswith("autoenhance-mirror/")
    assert key not in result.stdout + result.stderr
    assert standin.state.paths.keys() == {"GET /v3/images/{id}"}  # read-only, nothing else


def test_api_settings_come_from_the_environment_and_options_win(
    standin: StandIn, database_url: str
) -> None:
    ids = new_ids(1)
    env = {
        "AUTOENHANCE_BASE_URL": standin.url,
        "MIRROR_DATABASE_URL": database_url,
        "AUTOENHANCE_API_KEY": "env-key-123",
        "AUTOENHANCE_API_VERSION": "2025-05-08",
    }
    result = run_cli("sync", *ids, env=env)
    assert result.exit_code == 0, result.output
    assert standin.state.last_headers["x-api-key"] == "env-key-123"
    assert standin.state.last_headers["x-api-version"] == "2025-05-08"
    result = run_cli("sync", *ids, "--api-version", "2025-08-31", env=env)
    assert result.exit_code == 0
    assert standin.state.last_headers["x-api-version"] == "2025-08-31"


def test_quiet_prints_nothing_on_success_even_when_creating_the_schema(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    record = record_for(new_ids(1)[0])
    record["rating"] = "4"  # would warn
    image_id = record["image_id"]
    standin.state.records[image_id] = record
    result = sync(standin, database_url, image_id, "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert scalar(engine, "SELECT count(*) FROM images") == 1


def test_wrong_typed_value_warns_and_is_kept_in_extra(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    image_id = new_ids(1)[0]
    record = record_for(image_id)
    record["rating"] = "4"
    record["upscale"] = 1
    standin.state.records[image_id] = record
    result = sync(standin, database_url, image_id)
    assert result.exit_code == 0
    assert f"image {image_id}: rating" in result.stderr
    assert f"image {image_id}: upscale" in result.stderr
    [row] = rows(engine, "SELECT rating, upscale, extra FROM images")
    assert row["rating"] is None and row["upscale"] is None
    assert as_json(row["extra"])["rating"] == "4"
    assert as_json(row["extra"])["upscale"] == 1


def test_dry_run_fetches_compares_and_writes_nothing(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(3)
    assert sync(standin, database_url, ids[0]).exit_code == 0
    before = rows(engine, "SELECT * FROM images")
    changed = record_for(ids[0])
    changed["scene"] = "attic"
    standin.state.records[ids[0]] = changed

    result = sync(standin, database_url, *ids, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True and summary["run_id"] is None
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (2, 1, 0)
    assert sorted((c["image_id"], c["change"]) for c in summary["changes"]) == sorted(
        [(ids[0], "changed"), (ids[1], "new"), (ids[2], "new")]
    )
    assert rows(engine, "SELECT * FROM images") == before
    assert scalar(engine, "SELECT count(*) FROM sync_runs") == 1
    assert sum(standin.state.requests.values()) == 4

    standin.state.missing.add(ids[0])
    text = sync(standin, database_url, *ids, "--dry-run")
    assert text.exit_code == 0, text.output
    assert f"  would be deleted: {ids[0]}" in text.stdout.splitlines()
    assert f"  would be new: {ids[1]}" in text.stdout.splitlines()
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == 0


def test_dry_run_on_a_new_database_creates_nothing_and_everything_is_new(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    ids = new_ids(2)
    standin.state.missing.add(ids[1])
    result = sync(standin, database_url, *ids, "--dry-run")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("dry run: would sync 2 images: 1 new")
    assert "1 not found" in result.stdout
    assert f"  would be new: {ids[0]}" in result.stdout.splitlines()
    if engine.dialect.name == "sqlite":
        assert list(tmp_path.iterdir()) == []  # no database file, no lock file
    else:
        assert scalar(engine, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_not_found_and_deleted(standin: StandIn, database_url: str, engine: Engine) -> None:
    mirrored, never = new_ids(2)
    assert sync(standin, database_url, mirrored).exit_code == 0
    standin.state.missing.update({mirrored, never})
    result = sync(standin, database_url, mirrored, never, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["deleted"], summary["not_found"]) == ("partial", 1, 1)
    [line] = [line for line in result.stderr.splitlines() if "not_found:" in line]
    assert line.startswith(f"  not_found: {never}: HTTP 404")  # the status said once
    [row] = rows(engine, "SELECT deleted_at FROM images WHERE image_id = :id", id=mirrored)
    assert row["deleted_at"] is not None
    [failure] = rows(engine, "SELECT run_id, image_id, kind, http_status FROM sync_failures")
    assert failure == {
        "run_id": summary["run_id"],
        "image_id": never,
        "kind": "not_found",
        "http_status": 404,
    }
    # It comes back: deleted_at is cleared.
    standin.state.missing.clear()
    assert sync(standin, database_url, mirrored).exit_code == 0
    assert scalar(engine, "SELECT deleted_at FROM images WHERE image_id = :id", id=mirrored) is None


def test_every_failure_is_counted_and_the_counts_add_up(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(6)
    standin.state.script(ids[0], Fault(status=500), Fault(status=503))  # retried, then fine
    standin.state.script(ids[1], *[Fault(status=502)] * 5)  # retries exhausted
    standin.state.script(ids[2], Fault(body="<html>oops</html>"))
    standin.state.script(ids[3], Fault(json={"image_id": ids[4]}))
    standin.state.script(ids[4], Fault(status=400))  # not retried
    result = sync(standin, database_url, *ids, "--retries", "2", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "partial"
    assert (summary["inserted"], summary["failed"]) == (2, 4)
    assert summary["requested"] == sum(summary[k] for k in SUMMARY_KEYS[3:])
    assert standin.state.requests[ids[0]] == 3
    assert standin.state.requests[ids[1]] == 3  # 1 + --retries 2
    assert standin.state.requests[ids[4]] == 1
    kinds = {
        r["image_id"]: (r["kind"], r["http_status"])
        for r in rows(engine, "SELECT image_id, kind, http_status FROM sync_failures")
    }
    assert kinds == {
        ids[1]: ("http_error", 502),
        ids[2]: ("invalid_payload", 200),
        ids[3]: ("invalid_payload", 200),
        ids[4]: ("http_error", 400),
    }
    assert scalar(engine, "SELECT count(*) FROM images") == 2


def test_max_rate_paces_requests_and_concurrency_bounds_them(
    standin: StandIn, database_url: str
) -> None:
    standin.state.latency = 0.05
    ids = new_ids(30)
    # In a process of its own, as cron runs it: in this one, the run's threads (the late
    # database opening imports SQLAlchemy beside the requests) would hold up the stand-in's
    # thread too, which then stamps arrivals late and bunched: the pacing is what the
    # server sees, measured by a server that does not share the client's GIL.
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "sync", *ids, "--max-rate", "20", "--concurrency", "4",
         "--base-url", standin.url, "--database-url", database_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert standin.state.max_per_second() <= 20
    assert standin.state.max_in_flight <= 4
    # Paced evenly, 30 requests at 20/s take about 1.5 s: none arrived in a burst.
    times = sorted(standin.state.times)
    assert times[-1] - times[0] >= 1.4


@pytest.mark.parametrize("revision", ["9999_from_the_future", "deadbeef"])
def test_a_database_at_an_unknown_revision_is_refused(
    standin: StandIn, database_url: str, engine: Engine, revision: str
) -> None:
    image_id = new_ids(1)[0]
    assert run_cli("db", "upgrade", "--database-url", database_url).exit_code == 0
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{revision}'")
    result = sync(standin, database_url, image_id)
    assert result.exit_code == 3
    assert revision in result.stderr and "upgrade autoenhance-mirror" in result.stderr
    assert standin.state.total_requests == 0
    assert scalar(engine, "SELECT count(*) FROM sync_runs") == 0


def test_a_dry_run_refuses_an_older_schema_before_any_request(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """A dry run migrates nothing: a mirror at an older revision is refused, saying what to
    run, before anything is fetched (on SQLite from the file itself, without SQLAlchemy)."""
    older = SCHEMA_REVISIONS[-2]
    upgraded = run_cli("db", "upgrade", older, "--database-url", database_url)
    assert upgraded.exit_code == 0, upgraded.output
    result = sync(standin, database_url, *new_ids(2), "--dry-run")
    assert result.exit_code == 3, result.output
    assert f"schema is at {older!r}, older than {SCHEMA_HEAD!r}" in result.stderr
    assert "autoenhance-mirror db upgrade" in result.stderr
    assert standin.state.total_requests == 0
    assert scalar(engine, "SELECT version_num FROM alembic_version") == older
    for command in (["status"], ["report", "last-runs"]):  # they only read, too
        refused = run_cli(*command, "--database-url", database_url)
        assert refused.exit_code == 3
        assert "and this command only reads: run `autoenhance-mirror db upgrade` first" in (
            refused.stderr
        )
    assert scalar(engine, "SELECT version_num FROM alembic_version") == older


def test_ids_piped_on_stdin_are_read_once_and_fetched_once(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """A pipe cannot be read twice: it is spooled while it is validated."""
    ids = new_ids(3)
    piped = "\n".join([ids[0], "# comment", ids[1], ids[0].upper(), ids[2]]) + "\n"
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "sync", "--from-file", "-", "--json",
         "--base-url", standin.url, "--database-url", database_url],
        input=piped, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 3
    assert standin.state.requests == dict.fromkeys(ids, 1)
    assert scalar(engine, "SELECT count(*) FROM images") == 3


def test_a_file_that_is_not_utf8_text_is_an_input_error(
    standin: StandIn, database_url: str, tmp_path: Path
) -> None:
    id_file = tmp_path / "ids.bin"
    id_file.write_bytes(new_ids(1)[0].encode() + b"\n\xff\xfe\x00garbage\n")
    result = sync(standin, database_url, "--from-file", str(id_file))
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.stderr
    assert standin.state.total_requests == 0


# --- the deletion guard ----------------------------------------------------------------------


def test_a_base_url_ending_in_v3_is_an_input_error(standin: StandIn, database_url: str) -> None:
    result = run_cli(
        "sync", *new_ids(1), "--base-url", standin.url + "/v3", "--database-url", database_url
    )
    assert result.exit_code == 2
    assert f"use --base-url {standin.url}" in result.stderr
    assert standin.state.total_requests == 0


def test_the_api_over_plain_http_is_an_input_error_before_anything(tmp_path: Path) -> None:
    database = tmp_path / "mirror.db"
    result = run_cli(
        "sync", *new_ids(1), "--base-url", "http://api.autoenhance.ai",
        "--api-key", "sk-plain-9f3e", "--database-url", str(database),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "would send the API key over plain HTTP" in result.stderr
    assert "sk-plain-9f3e" not in result.output
    assert not database.exists()


def test_implausibly_many_404s_mark_nothing_deleted_and_exit_3(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """What a wrong base URL path does: every request 404s. The mirror must survive it."""
    ids = new_ids(300)
    assert sync(standin, database_url, *ids).exit_code == 0
    standin.state.missing.update(ids)
    result = sync(standin, database_url, *ids, "--quiet")
    assert result.exit_code == 3, result.output
    assert f"the API at {standin.url} answered 404 for" in result.stderr
    assert "nothing was marked deleted" in result.stderr and "--max-deletes" in result.stderr
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == 0
    run = rows(engine, "SELECT status, deleted, error FROM sync_runs ORDER BY id DESC")[0]
    assert (run["status"], run["deleted"]) == ("failed", 0)
    assert "answered 404" in run["error"]
    assert standin.state.total_requests < 2 * 300  # it stopped early

    allowed = sync(standin, database_url, *ids, "--max-deletes", "300", "--json")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["deleted"] == 300
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == 300


@pytest.mark.parametrize(
    ("mirrored", "missing", "env", "code", "deleted"),
    [
        (40, 5, {}, 0, 5),  # a handful of real deletions pass the default guard
        (2, 1, {"MIRROR_MAX_DELETES": "0"}, 3, 0),  # the limit comes from the environment
    ],
)
def test_the_deletion_guard_lets_real_deletions_through_up_to_its_limit(
    standin: StandIn,
    database_url: str,
    engine: Engine,
    mirrored: int,
    missing: int,
    env: dict[str, str],
    code: int,
    deleted: int,
) -> None:
    ids = new_ids(mirrored)
    assert sync(standin, database_url, *ids).exit_code == 0
    standin.state.missing.update(ids[:missing])
    common = ["--base-url", standin.url, "--database-url", database_url]
    result = run_cli("sync", *ids, *common, env=env)
    assert result.exit_code == code, result.output
    if code == 3:
        assert "(0: --max-deletes 0)" in result.stderr
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == deleted


# --- input checked before any request ---------------------------------------------------------


def test_a_line_break_in_a_header_value_is_an_input_error(
    standin: StandIn, database_url: str
) -> None:
    for option in ("--api-version", "--api-key"):
        result = sync(standin, database_url, *new_ids(1), option, "v\r\nX-Injected: yes")
        assert result.exit_code == 2, result.output
        assert "line break" in result.stderr
    assert standin.state.total_requests == 0


def test_standard_input_closed_is_an_input_error(standin: StandIn, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'exec "{sys.executable}" -m mirror sync --from-file - --base-url {standin.url} '
            f"--database-url {tmp_path / 'm.db'} <&-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "standard input is closed" in result.stderr
    assert "Traceback" not in result.stderr


# --- machine-readable output ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["nope"], 2, "is not a UUID"),
        (["--concurrency", "0"], 2, "--concurrency"),
        (["--api-key", "k-123456"], 3, "the API rejected the request"),
    ],
)
def test_json_errors_are_one_object_on_stdout(
    standin: StandIn, database_url: str, args: list[str], code: int, words: str
) -> None:
    standin.state.require_key = "another-key"
    result = sync(standin, database_url, *new_ids(1), *args, "--json")
    assert result.exit_code == code, result.output
    error = json.loads(result.stdout)
    assert error["exit_code"] == code and words in error["message"]
    assert error["status"] == {2: "input_error", 3: "failed"}[code]
    assert "k-123456" not in result.output


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--max-rate", "inf"], {}),  # was a traceback
        (["--max-rate", "nan"], {}),  # was a traceback
        (["--timeout", "nan"], {}),  # was no timeout at all
        ([], {"MIRROR_TIMEOUT": "inf"}),
        (["--connect-timeout", "NaN"], {}),
    ],
)
def test_seconds_and_rates_that_are_not_finite_are_input_errors(
    standin: StandIn, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = run_cli(
        "sync", *new_ids(1), *args, "--base-url", standin.url,
        "--database-url", str(tmp_path / "m.db"), env=env,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "is not a finite number" in result.stderr
    assert standin.state.total_requests == 0
    assert list(tmp_path.iterdir()) == []


def test_the_json_summary_lists_the_failures(standin: StandIn, database_url: str) -> None:
    ids = new_ids(3)
    standin.state.script(ids[0], Fault(status=400))
    standin.state.missing.add(ids[1])
    result = sync(standin, database_url, *ids, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    failures = {f["image_id"]: f for f in summary["failures"]}
    assert failures[ids[0]]["kind"] == "http_error" and failures[ids[0]]["http_status"] == 400
    assert failures[ids[1]]["kind"] == "not_found"
    assert summary["failures_left_out"] == 0


# --- refreshing from the mirror itself (spec §7) ---------------------------------------------


def test_unfinished_refreshes_every_mirrored_image_still_in_progress(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(60)
    assert sync(standin, database_url, *ids).exit_code in (0, 1)
    standin.state.missing.add(ids[0])  # a deleted image is never selected
    assert sync(standin, database_url, ids[0]).exit_code == 0
    unfinished = {
        r["image_id"]
        for r in rows(
            engine,
            "SELECT image_id FROM images WHERE deleted_at IS NULL AND (status IS NULL "
            "OR status NOT IN ('processed', 'error', 'expired'))",
        )
    }
    assert unfinished  # the stand-in serves processing images
    explicit = next(iter(unfinished))
    standin.state.requests.clear()
    result = sync(standin, database_url, "--unfinished", explicit, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requested"] == len(unfinished) == summary["unchanged"]
    assert set(standin.state.requests) == unfinished  # the explicit one fetched once
    assert set(standin.state.requests.values()) == {1}


def test_older_than_refreshes_what_was_synced_before_then(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    old, recent = new_ids(5), new_ids(3)
    assert sync(standin, database_url, *old).exit_code in (0, 1)
    time.sleep(1.2)
    assert sync(standin, database_url, *recent).exit_code in (0, 1)
    standin.state.requests.clear()
    result = sync(standin, database_url, "--older-than", "1s", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requested"] == 5
    assert set(standin.state.requests) == set(old)
    # Right after, nothing is older than an hour: an empty run, not an error.
    nothing = sync(standin, database_url, "--older-than", "1h")
    assert nothing.exit_code == 0 and nothing.stdout.startswith("synced 0 images")


@pytest.mark.parametrize("duration", ["7", "1w", "-5m", "1.5h", "h"])
def test_a_bad_duration_is_an_input_error(
    standin: StandIn, database_url: str, duration: str
) -> None:
    result = sync(standin, database_url, "--older-than", duration)
    assert result.exit_code == 2
    assert "90s, 30m, 12h or 7d" in result.stderr
    assert standin.state.total_requests == 0


@pytest.mark.parametrize(
    ("selection", "named"),
    [
        (["--unfinished"], "--unfinished to choose from"),
        (["--older-than", "7d", "--dry-run"], "--older-than 7d to choose from"),
        (["--with-parents", "--unfinished"], "--unfinished and --with-parents to choose from"),
    ],
)
def test_selections_alone_refuse_a_database_without_a_mirror_and_create_nothing(
    standin: StandIn, database_url: str, engine: Engine, selection: list[str], named: str
) -> None:
    """A mistyped --database-url under `sync --unfinished` in cron made an empty mirror that
    every later run called a success ("synced 0 images", exit 0). Now: exit 3 naming it."""
    result = sync(standin, database_url, *selection)
    assert result.exit_code == 3, result.output
    shown = masked(parse_database_url(database_url))
    assert f"no mirror at {shown} for {named}" in result.stderr
    assert standin.state.total_requests == 0
    if database_url.startswith("sqlite"):
        assert "(the file does not exist)" in result.stderr
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
    else:
        assert "(the database holds no autoenhance-mirror schema)" in result.stderr
        assert inspect(engine).get_table_names() == []

    # Once a sync of IDs made the mirror, the same selection runs, even when it picks nothing.
    assert sync(standin, database_url, *new_ids(2)).exit_code in (0, 1)
    again = sync(standin, database_url, *selection)
    assert again.exit_code == 0, again.output


def test_with_parents_fetches_the_parents_missing_from_the_mirror(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """Restaged children never point at nothing: their parents (and theirs: a parent may be
    restaged itself) are fetched in the same run, counted in it; a second run finds only the
    one the API does not know."""
    # Fixed IDs: random ones left a single parent among 120 about once in 3,000 runs, and
    # the test needs more than one.
    rng = random.Random(120)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(120)]
    missing_parent = sorted({record_for(i)["parent_image_id"] for i in ids} - {None})[0]
    standin.state.missing.add(missing_parent)  # one parent the API no longer knows
    generation, ancestors = set(ids), set()
    while generation:  # the unknown parent is asked for, but names nobody
        fetched = generation - {missing_parent}
        generation = {record_for(i)["parent_image_id"] for i in fetched} - {None} - ancestors
        ancestors |= generation
    assert len(ancestors) > 1  # the stand-in restages about one image in ten
    result = sync(standin, database_url, *ids, "--with-parents", "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 1, result.output  # the unknown parent is a not_found failure
    assert summary["requested"] == len(ids) + len(ancestors)
    assert summary["not_found"] == 1
    assert summary["requested"] == sum(
        summary[k] for k in ["inserted", "updated", "unchanged", "deleted", "not_found", "failed"]
    )
    orphans = rows(
        engine,
        "SELECT c.image_id FROM images c WHERE c.parent_image_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM images p WHERE p.image_id = c.parent_image_id)",
    )
    assert len(orphans) == sum(1 for i in ids if record_for(i)["parent_image_id"] == missing_parent)
    [run] = rows(engine, "SELECT requested FROM sync_runs ORDER BY id DESC LIMIT 1")
    assert run["requested"] == summary["requested"]

    standin.state.requests.clear()
    again = sync(standin, database_url, "--with-parents", "--json")  # a source of its own
    assert json.loads(again.stdout)["requested"] == 1  # only the one still missing
    assert set(standin.state.requests) == {missing_parent}


def test_a_sqlite_sync_sends_its_first_request_before_importing_sqlalchemy(
    standin: StandIn, tmp_path: Path
) -> None:
    """Start-up is what cron pays on every run: on a plain SQLite file the run takes its file
    lock and fetches at once; SQLAlchemy and SQLModel are imported (and the database opened)
    while the first requests are in flight. A probe in the real CLI's process records what was
    imported when the first request was sent."""
    probe = (
        "import sys, atexit, mirror.api as api\n"
        "seen = []\n"
        "attempt = api.Fetcher._attempt\n"
        "async def first(self, *a):\n"
        "    if not seen:\n"
        "        seen.append(sorted(m for m in ('sqlalchemy', 'sqlmodel') if m in sys.modules))\n"
        "    return await attempt(self, *a)\n"
        "api.Fetcher._attempt = first\n"
        "atexit.register(lambda: print('PROBE', seen, file=sys.stderr))\n"
        "from mirror.cli import main\n"
        "sys.argv = ['autoenhance-mirror', *sys.argv[1:]]\n"
        "main()\n"
    )
    ids = new_ids(3)
    database = tmp_path / "mirror.db"

    def probed(database: Path, *options: str) -> str:
        """The run's stdout, once it has succeeded with nothing of SQLAlchemy imported."""
        done = subprocess.run(
            [sys.executable, "-c", probe, "sync", *ids, "--base-url", standin.url,
             "--database-url", str(database), *options],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "PROBE [[]]" in done.stderr
        return done.stdout

    for _ in range(2):  # creating the schema, then an existing mirror
        probed(database)
    # Dry runs too: comparing with the mirror, and with none (nothing is created).
    assert json.loads(probed(database, "--dry-run", "--json"))["unchanged"] == 3
    nowhere = tmp_path / "new" / "mirror.db"
    nowhere.parent.mkdir()
    assert json.loads(probed(nowhere, "--dry-run", "--json"))["inserted"] == 3
    assert list(nowhere.parent.iterdir()) == []
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM images").scalar() == 3
        runs = connection.exec_driver_sql("SELECT status, inserted FROM sync_runs").all()
    engine.dispose()
    assert [tuple(r) for r in runs] == [("succeeded", 3), ("succeeded", 0)]


def test_a_database_refused_after_the_first_requests_gets_nothing_written(
    standin: StandIn, tmp_path: Path
) -> None:
    """When the plain SQLite file turns out unusable only once it is opened (here: a SQLite
    header over a damaged schema), the run stops with exit 3 and changes nothing."""
    database = tmp_path / "mirror.db"
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE images (image_id TEXT PRIMARY KEY)")
    engine.dispose()
    damaged = bytearray(database.read_bytes())
    damaged[100:4096] = bytes(range(256)) * 15 + bytes(range(156))  # page 1's b-tree: noise
    database.write_bytes(bytes(damaged))
    result = sync(standin, str(database), *new_ids(20))
    assert result.exit_code == 3, result.output
    assert "cannot use the database" in result.stderr
    assert database.read_bytes() == damaged


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry run"])
def test_someone_elses_images_table_is_refused_before_any_request(
    standin: StandIn, database_url: str, dry_run: bool
) -> None:
    """A database holding an `images` table that autoenhance-mirror did not make (no migration
    stamp): a sync will not write into it, and a dry run will not call all of it new."""
    engine = create_engine(parse_database_url(database_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT)")
        connection.exec_driver_sql("INSERT INTO images (id, path) VALUES (1, 'a.jpg')")
    result = sync(standin, database_url, *new_ids(20), *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 3, result.output
    assert (
        "the database has an `images` table but no migration stamp: autoenhance-mirror did "
        "not make it"
    ) in result.stderr
    assert standin.state.total_requests == 0
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT id, path FROM images").all() == [(1, "a.jpg")]
        assert set(inspect(connection).get_table_names()) == {"images"}
    engine.dispose()
