"""`sync --metrics-file` (spec §8): the Prometheus textfile after every run that took the lock,
parsed with prometheus_client's own parser and checked against `sync_runs`, on both databases."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import new_ids, rows, run_cli, scalar, when
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from test_robustness import start_cli, wait_for_requests

from mirror.lock import sync_lock
from mirror.metrics import MirrorFigures, RunFigures, write_metrics
from mirror.outcomes import Counts, OrderCounts
from mirror.sample_account import SampleAccount
from mirror.standin import Fault, StandIn

P = "autoenhance_mirror_"
RESULTS = ["inserted", "updated", "unchanged", "deleted", "not_found", "failed"]


def parse(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, keyed by name and labels."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(P + name, tuple(sorted(labels.items())))]


def sync(standin: StandIn, database_url: str, metrics: Path, *args: str) -> Any:
    return run_cli(
        "sync", *args, "--base-url", standin.url, "--database-url", database_url,
        "--metrics-file", str(metrics),
    )  # fmt: skip


def assert_matches_run(samples: dict[Any, float], run: dict[str, Any], exit_code: int) -> None:
    """Each figure of the file is what the run's sync_runs row says."""
    assert value(samples, "last_run_exit_code") == exit_code
    assert value(samples, "last_run_start_timestamp_seconds") == run["started_at"].timestamp()
    assert value(samples, "last_run_timestamp_seconds") == run["finished_at"].timestamp()
    assert value(samples, "last_run_duration_seconds") == pytest.approx(
        (run["finished_at"] - run["started_at"]).total_seconds(), abs=1e-5
    )  # the same two instants, subtracted as Unix times
    for state in ("succeeded", "partial", "failed", "interrupted"):
        assert value(samples, "last_run_status", status=state) == (state == run["status"])
    assert value(samples, "last_run_images_requested") == run["requested"]
    assert value(samples, "last_run_orders_requested") == run["orders_requested"]
    for result in RESULTS:
        assert value(samples, "last_run_images", result=result) == run[result]
        assert value(samples, "last_run_orders", result=result) == run[f"orders_{result}"]
    assert value(samples, "last_run_api_requests") == run["api_requests"]


def assert_mirror_figures(samples: dict[Any, float], engine: Engine) -> None:
    by_status = rows(
        engine,
        "SELECT status, count(*) AS n FROM images WHERE deleted_at IS NULL GROUP BY status",
    )
    got = {dict(k[1])["status"]: v for k, v in samples.items() if k[0] == P + "images"}
    assert got == {r["status"]: r["n"] for r in by_status}
    deleted = scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL")
    assert value(samples, "images_deleted_upstream") == deleted
    last = scalar(engine, "SELECT max(finished_at) FROM sync_runs WHERE status = 'succeeded'")
    assert value(samples, "last_success_timestamp_seconds") == when(last).timestamp()


def last_run(engine: Engine) -> dict[str, Any]:
    run = rows(engine, "SELECT * FROM sync_runs ORDER BY id DESC")[0]
    return run | {"started_at": when(run["started_at"]), "finished_at": when(run["finished_at"])}


def test_success_then_partial_then_failed_each_write_the_runs_figures(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    metrics = tmp_path / "mirror.prom"
    ids = new_ids(12)
    assert sync(standin, database_url, metrics, *ids).exit_code == 0
    samples = parse(metrics)
    first = last_run(engine)
    assert_matches_run(samples, first, exit_code=0)
    assert_mirror_figures(samples, engine)
    assert value(samples, "last_success_timestamp_seconds") == first["finished_at"].timestamp()

    # Partial (exit 1): one image keeps failing, one was deleted upstream.
    standin.state.script(ids[0], *[Fault(status=500)] * 5)
    standin.state.missing.add(ids[1])
    result = sync(standin, database_url, metrics, *ids, "--retries", "0")
    assert result.exit_code == 1
    samples = parse(metrics)
    assert_matches_run(samples, last_run(engine), exit_code=1)
    assert_mirror_figures(samples, engine)
    assert value(samples, "last_run_images", result="failed") == 1
    assert value(samples, "images_deleted_upstream") == 1
    # The last success is carried over from the database: the first run's end.
    assert value(samples, "last_success_timestamp_seconds") == first["finished_at"].timestamp()

    # Failed (exit 3): the API rejects the key.
    standin.state.require_key = "right"
    result = sync(standin, database_url, metrics, *ids, "--api-key", "wrong")
    assert result.exit_code == 3
    samples = parse(metrics)
    run = last_run(engine)
    assert run["status"] == "failed"
    assert_matches_run(samples, run, exit_code=3)
    assert value(samples, "last_success_timestamp_seconds") == first["finished_at"].timestamp()
    assert "wrong" not in metrics.read_text()


def test_an_order_run_counts_orders_and_requests(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    standin.state.account = SampleAccount.generate(60, seed=4)
    metrics = tmp_path / "orders.prom"
    assert sync(standin, database_url, metrics, "--all", "--api-key", "k").exit_code == 0
    samples = parse(metrics)
    run = last_run(engine)
    assert_matches_run(samples, run, exit_code=0)
    assert run["orders_inserted"] == len(standin.state.account.orders) > 0
    assert value(samples, "last_run_orders", result="inserted") == run["orders_inserted"]
    assert value(samples, "last_run_api_requests") == standin.state.total_requests


def test_an_interrupted_run_writes_the_file_with_exit_130(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    metrics = tmp_path / "mirror.prom"
    ids = new_ids(60)
    for image_id in ids[20:]:
        standin.state.script(image_id, Fault(delay=60))
    process = start_cli(
        "sync", *ids, "--concurrency", "4", "--base-url", standin.url,
        "--database-url", database_url, env={"MIRROR_METRICS_FILE": str(metrics)},
    )  # fmt: skip
    wait_for_requests(standin, 24)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    samples = parse(metrics)
    run = last_run(engine)
    assert run["status"] == "interrupted"
    assert_matches_run(samples, run, exit_code=130)
    assert value(samples, "last_run_images", result="inserted") == 20
    # No run has succeeded yet: the file says nothing rather than a made-up time.
    assert not any(name == P + "last_success_timestamp_seconds" for name, _ in samples)


def test_no_file_for_a_run_that_did_not_take_the_lock_nor_for_a_dry_run(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    metrics = tmp_path / "mirror.prom"
    assert run_cli("db", "upgrade", "--database-url", database_url).exit_code == 0
    with sync_lock(engine):
        assert sync(standin, database_url, metrics, *new_ids(2)).exit_code == 75
    assert not metrics.exists()
    assert sync(standin, database_url, metrics, *new_ids(2), "--dry-run").exit_code == 0
    assert not metrics.exists()


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("mirror.txt", "reads only *.prom files"),
        ("missing-dir/mirror.prom", "does not exist"),
        ("mirror.prom\r", "(it ends in a carriage return: Windows line ends?)"),
    ],
)
def test_a_path_node_exporter_would_not_read_is_exit_2_before_any_request(
    standin: StandIn, tmp_path: Path, name: str, complaint: str
) -> None:
    result = sync(standin, f"sqlite:///{tmp_path / 'm.db'}", tmp_path / name, *new_ids(2))
    assert result.exit_code == 2
    assert complaint in result.stderr
    assert standin.state.total_requests == 0
    assert not (tmp_path / "m.db").exists()


def test_a_tilde_in_the_variable_is_the_home_directory_as_cron_does_not_expand_it(
    standin: StandIn, tmp_path: Path
) -> None:
    """`MIRROR_METRICS_FILE=~/metrics/mirror.prom` in a crontab reaches the tool unexpanded:
    it was exit 2 (`the directory ~/metrics does not exist`) on every run."""
    (tmp_path / "metrics").mkdir()
    result = run_cli(
        "sync", *new_ids(2), "--base-url", standin.url,
        "--database-url", f"sqlite:///{tmp_path / 'm.db'}",
        env={"HOME": str(tmp_path), "MIRROR_METRICS_FILE": "~/metrics/mirror.prom"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    samples = parse(tmp_path / "metrics" / "mirror.prom")
    assert value(samples, "last_run_exit_code") == 0


def test_a_file_that_cannot_be_written_is_a_warning_not_a_failed_run(
    standin: StandIn, tmp_path: Path
) -> None:
    blocked = tmp_path / "mirror.prom"
    blocked.mkdir()  # a directory where the file should go: the rename over it fails
    result = sync(standin, f"sqlite:///{tmp_path / 'm.db'}", blocked, *new_ids(2))
    assert result.exit_code == 0
    assert f"warning: --metrics-file {blocked}: not written" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("mirror.prom.")] == []


def test_a_reader_never_sees_half_a_file(standin: StandIn, tmp_path: Path) -> None:
    metrics = tmp_path / "mirror.prom"
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if metrics.exists():
                seen.append(metrics.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(4):
            assert sync(standin, url, metrics, *new_ids(30)).exit_code == 0
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10
    last_line = "# TYPE autoenhance_mirror_images_deleted_upstream gauge"
    assert all(last_line in text and text.endswith("\n") for text in seen)
    assert all(text.count("# HELP") == seen[-1].count("# HELP") for text in seen)


def test_without_the_database_the_last_success_comes_from_the_previous_file(
    tmp_path: Path,
) -> None:
    """A failed run whose database cannot be read (down, say) keeps the last success the
    previous file held, and leaves out the images it cannot count."""
    path = tmp_path / "mirror.prom"
    figures = RunFigures(
        started=100.0, finished=160.0, status="succeeded", exit_code=0, requested=1,
        counts=Counts(inserted=1), orders_requested=0, order_counts=OrderCounts(),
        api_requests=1,
    )  # fmt: skip
    write_metrics(path, figures, MirrorFigures(1234.5, {"processed": 1}, 0))
    assert value(parse(path), "last_success_timestamp_seconds") == 1234.5
    failed = RunFigures(**{**figures.__dict__, "status": "failed", "exit_code": 3})
    write_metrics(path, failed, None)
    samples = parse(path)
    assert value(samples, "last_success_timestamp_seconds") == 1234.5
    assert value(samples, "last_run_exit_code") == 3
    assert value(samples, "last_run_duration_seconds") == 60.0
    assert not any(name == P + "images" for name, _ in samples)


def test_a_run_that_fails_before_its_first_request_still_writes_the_file(
    standin: StandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A schema this code does not know: on PostgreSQL found after the lock is taken (the
    file says exit 3, nothing fetched, the last success kept); on a SQLite file found
    before it, without SQLAlchemy (no lock taken, so no file)."""
    metrics = tmp_path / "mirror.prom"
    assert sync(standin, database_url, metrics, *new_ids(2)).exit_code == 0
    succeeded = last_run(engine)["finished_at"].timestamp()
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'deadbeef'")
    before = metrics.read_text()
    assert sync(standin, database_url, metrics, *new_ids(2)).exit_code == 3
    assert standin.state.total_requests == 2
    samples = parse(metrics)
    if engine.dialect.name == "sqlite":
        assert metrics.read_text() == before
        return
    assert value(samples, "last_run_exit_code") == 3
    assert value(samples, "last_run_status", status="failed") == 1
    assert value(samples, "last_run_images_requested") == 0
    assert value(samples, "last_run_api_requests") == 0
    assert value(samples, "last_success_timestamp_seconds") == succeeded
