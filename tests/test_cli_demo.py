"""`autoenhance-mirror demo`: the offline quick start, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import new_ids, rows, run_cli, scalar
from sqlalchemy import Engine

from mirror.demo import demo_image_ids
from mirror.standin import StandIn


def test_demo_mirrors_samples_and_reports_from_sql(database_url: str, engine: Engine) -> None:
    result = run_cli("demo", "--count", "60", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    expected = len(demo_image_ids(60))
    assert f"synced {expected} images: {expected} new, 0 changed" in result.stdout
    assert "images by status" in result.stdout and "images by scene" in result.stdout
    assert scalar(engine, "SELECT count(*) FROM images") == expected
    by_status = {
        r["status"]: r["n"]
        for r in rows(engine, "SELECT status, count(*) AS n FROM images GROUP BY status")
    }
    for status, n in by_status.items():
        assert f"  {status}" in result.stdout and str(n) in result.stdout
    # Parents of the restaged samples are mirrored too, so the join finds them.
    restaged = rows(
        engine,
        "SELECT c.image_id FROM images c JOIN images p ON p.image_id = c.parent_image_id",
    )
    assert len(restaged) == expected - 60 > 0

    again = run_cli("demo", "--count", "60", "--database-url", database_url)
    assert f"0 new, 0 changed, {expected} unchanged" in again.stdout


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
