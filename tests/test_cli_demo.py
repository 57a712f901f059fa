"""`autoenhance-mirror demo`: the offline quick start, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import new_ids, rows, run_cli, scalar
from sqlalchemy import Engine

from mirror.demo import demo_account, demo_image_ids
from mirror.standin import StandIn


def test_demo_mirrors_the_sample_account_with_all_and_reports_from_sql(
    database_url: str, engine: Engine
) -> None:
    result = run_cli("demo", "--count", "60", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    account = demo_account(60)
    expected = len(demo_image_ids(60))
    orders = len(account.orders)
    assert f"synced {expected} images from {orders} orders: {expected} new, 0 changed" in (
        result.stdout
    )
    assert f"orders: {orders} new" in result.stdout
    for title in ("orders by status", "images by status", "images by scene"):
        assert title in result.stdout
    assert scalar(engine, "SELECT count(*) FROM images") == expected
    assert scalar(engine, "SELECT count(*) FROM orders") == orders
    by_status = {
        r["status"]: r["n"]
        for r in rows(engine, "SELECT status, count(*) AS n FROM images GROUP BY status")
    }
    for status, n in by_status.items():
        assert f"  {status}" in result.stdout and str(n) in result.stdout
    # Parents of the restaged samples are mirrored too (by ID), so the join finds them.
    restaged = rows(
        engine,
        "SELECT c.image_id FROM images c JOIN images p ON p.image_id = c.parent_image_id",
    )
    assert restaged
    assert not rows(
        engine,
        "SELECT c.image_id FROM images c LEFT JOIN images p ON p.image_id = c.parent_image_id "
        "WHERE c.parent_image_id IS NOT NULL AND p.image_id IS NULL",
    )

    # Again: the account's images and orders unchanged; the parents, mirrored, not asked for.
    again = run_cli("demo", "--count", "60", "--database-url", database_url)
    assert again.exit_code == 0, again.output
    assert "0 new, 0 changed, 60 unchanged" in again.stdout
    assert f"orders: 0 new, 0 changed, {orders} unchanged" in again.stdout


def test_demo_has_its_own_file_and_ignores_the_sync_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    production = tmp_path / "production.db"
    result = run_cli("demo", "--count", "5", env={"MIRROR_DATABASE_URL": f"sqlite:///{production}"})
    assert result.exit_code == 0, result.output
    assert not production.exists()
    assert (tmp_path / "autoenhance-mirror-demo.db").exists()
    assert not (tmp_path / "autoenhance-mirror.db").exists()  # sync's default is left alone
    assert "into sqlite:///autoenhance-mirror-demo.db" in result.stdout


def test_demo_refuses_a_database_with_real_images(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    real = new_ids(3)
    synced = run_cli("sync", *real, "--base-url", standin.url, "--database-url", database_url)
    assert synced.exit_code == 0
    result = run_cli("demo", "--count", "5", "--database-url", database_url)
    assert result.exit_code == 2
    assert "holds images that are not demo samples" in result.stderr
    assert scalar(engine, "SELECT count(*) FROM images") == 3
    # A demo database takes more demo runs, of any size.
    demo_db = str(tmp_path / "demo.db")
    assert run_cli("demo", "--count", "40", "--database-url", demo_db).exit_code == 0
    assert run_cli("demo", "--count", "4", "--database-url", demo_db).exit_code == 0


def test_demo_says_how_to_read_its_mirror_and_status_points_a_newcomer_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("demo", "--count", "20")
    assert result.exit_code == 0, result.output
    suggested = [
        line.split("(")[0].split()[1:]
        for line in result.stdout.splitlines()
        if line.startswith("  autoenhance-mirror ")
    ]
    assert [words[:2] for words in suggested] == [
        ["status", "--database-url"],
        ["report"],
        ["report", "images-per-order"],
    ]
    for words in suggested:  # each command it prints works as printed
        shown = run_cli(*words)
        assert shown.exit_code == 0, (words, shown.output)
    images = run_cli(*suggested[2], "--format", "json").stdout
    assert sum(order["images"] for order in json.loads(images)) == 20

    # `status` reads sync's default file, which the demo did not make: it says where the
    # demo's mirror is, and creates nothing.
    default = run_cli("status")
    assert default.exit_code == 3
    assert "no mirror at sqlite:///autoenhance-mirror.db: the file does not exist" in (
        default.stderr
    )
    assert "--database-url sqlite:///autoenhance-mirror-demo.db" in default.stderr
    assert not (tmp_path / "autoenhance-mirror.db").exists()
    # Elsewhere, or for another database, the hint is not given.
    other = run_cli("status", "--database-url", "other.db")
    assert other.exit_code == 3 and "demo" not in other.stderr
