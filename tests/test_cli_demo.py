"""`autoenhance-mirror demo`: the offline quick start, on both databases."""

from __future__ import annotations

from helpers import rows, run_cli, scalar
from sqlalchemy import Engine

from mirror.demo import demo_image_ids


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
