"""End-to-end benchmark: the installed CLI against the stand-in, in separate processes.

    python bench/run.py                      # every scenario, SQLite and PostgreSQL
    python bench/run.py --only throughput --db sqlite --repeat 5

Installs nothing. PostgreSQL comes from --postgres-url / BENCH_POSTGRES_URL (a role that may
CREATE DATABASE); without it only SQLite runs. Each run gets a fresh database, migrated
before the clock starts (`db upgrade`), so the figures are those of `sync` itself, start-up
of the process included. Prints a Markdown table to paste into the README.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError


@dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    latency_ms: float
    concurrency: int
    max_rate: float  # 0: no cap
    target: str

    @property
    def ideal(self) -> float:
        """images/s if only latency x concurrency and the rate cap bound the run."""
        by_latency = (
            self.concurrency / (self.latency_ms / 1000) if self.latency_ms else float("inf")
        )
        return min(by_latency, self.max_rate or float("inf"))


SCENARIOS = {
    "throughput": Scenario("throughput", 2_000, 20, 32, 0, ">= 1,200 images/s"),
    "cpu": Scenario("cpu", 10_000, 0, 32, 0, "<= 0.5 ms CPU/image"),
    "ratecap": Scenario("ratecap", 6_000, 200, 96, 300, ">= 285 images/s, <= 300 req in any 1 s"),
    "memory": Scenario("memory", 1_000_000, 0, 32, 0, "peak RSS <= 200 MB, flat"),
}


@dataclass
class Run:
    wall: float
    sync_seconds: float  # what the CLI reports: lock to last commit, no interpreter start-up
    cpu: float
    peak_rss_mb: float
    rss_samples: list[float]
    served: int
    max_per_second: int
    rows: int


def compile_installed_package() -> None:
    """Byte-compile the `mirror` that the CLI will import, as pip does when it installs a
    wheel: an editable checkout under PYTHONDONTWRITEBYTECODE=1 has no .pyc files, and every
    run would otherwise pay for compiling them in its start-up."""
    spec = importlib.util.find_spec("mirror")
    assert spec is not None and spec.submodule_search_locations
    for location in spec.submodule_search_locations:
        subprocess.run([sys.executable, "-m", "compileall", "-q", location], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-repeat", type=int, default=1, help="the 1M-ID run is long")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    compile_installed_package()

    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in databases and not args.postgres_url:
        print("no --postgres-url / BENCH_POSTGRES_URL: PostgreSQL skipped", file=sys.stderr)
        databases.remove("postgresql")
    scenarios = [SCENARIOS[name] for name in (args.only or SCENARIOS)]

    print(f"date {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; medians")  # fmt: skip
    print()
    print(
        "| scenario | db | N | latency | concurrency | max-rate | process wall s | "
        "images/s (process) | sync s | images/s (sync) | of ideal (sync) | CPU ms/image | "
        "peak RSS MB | RSS MB at 25/50/75/100 % | served | max req in 1 s | target |"
    )
    print("|" + " --- |" * 17)
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as scratch:
        for scenario in scenarios:
            repeat = args.memory_repeat if scenario.name == "memory" else args.repeat
            ids_file = Path(scratch) / f"ids-{scenario.n}.txt"
            write_ids(ids_file, scenario.n)
            with StandInProcess(scenario.latency_ms) as standin:
                for database in databases:
                    runs = []
                    for _ in range(repeat):
                        url, drop = fresh_database(database, scratch, args.postgres_url)
                        try:
                            runs.append(run_sync(scenario, url, ids_file, standin))
                        finally:
                            drop()
                    print_row(scenario, database, runs)


def write_ids(path: Path, n: int) -> None:
    rng = random.Random(n)
    with path.open("w") as f:
        for _ in range(n):
            f.write(f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\n")


class StandInProcess:
    """`autoenhance-mirror stand-in` in its own process, on a free port."""

    def __init__(self, latency_ms: float, *options: str) -> None:
        self.latency_ms = latency_ms
        self.options = options  # more stand-in options: --account N, --require-key K

    def __enter__(self) -> StandInProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mirror", "stand-in", "--port", "0",
             "--latency", str(self.latency_ms), *self.options],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.url = line.split(" on ", 1)[1].split()[0].rstrip(",")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)

    def call(self, path: str) -> dict[str, object]:
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return dict(json.loads(response.read()))


def fresh_database(kind: str, scratch: str, postgres_url: str | None) -> tuple[str, object]:
    if kind == "sqlite":
        path = Path(scratch) / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"

        def drop_file() -> None:
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        migrate(url)
        return url, drop_file
    assert postgres_url is not None
    name = f"mirror_bench_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(postgres_url).set(
        drivername="postgresql+psycopg"
    )  # the benchmark itself needs a driver name
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        drop_database(admin, name)
        admin.dispose()

    migrate(url)
    return url, drop


def drop_database(admin: Engine, name: str) -> None:
    """DROP DATABASE, waiting out sessions that are ending (autovacuum, a closing pool).

    WITH (FORCE) is not used: a role without superuser rights may not terminate sessions
    it does not own, and a benchmark or test must not need those rights.
    """
    deadline = time.monotonic() + 15
    while True:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def migrate(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "mirror", "db", "upgrade", "--database-url", url],
        check=True,
        capture_output=True,
    )


def run_sync(scenario: Scenario, url: str, ids_file: Path, standin: StandInProcess) -> Run:
    standin.call("/__standin/reset")
    command = [
        "autoenhance-mirror", "sync", "--from-file", str(ids_file), "--json",
        "--base-url", standin.url, "--database-url", url,
        "--concurrency", str(scenario.concurrency), "--max-rate", str(scenario.max_rate),
    ]  # fmt: skip
    finished = run_measured(command)
    summary = json.loads(finished.out)
    samples, usage, wall = finished.rss_samples, finished.usage, finished.wall
    stats = standin.call("/__standin/stats")
    rows = count_rows(url)
    if not (summary["inserted"] == rows == scenario.n == stats["image_requests"]):
        raise SystemExit(f"verification failed: {summary}, rows {rows}, stand-in {stats}")
    return Run(
        wall=wall,
        sync_seconds=float(summary["seconds"]),
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        rss_samples=samples,
        served=int(stats["image_requests"]),  # type: ignore[call-overload]
        max_per_second=int(stats["max_per_second"]),  # type: ignore[call-overload]
        rows=rows,
    )


@dataclass
class Finished:
    """A measured process that exited 0: its output, resource usage and RSS over time."""

    out: bytes
    wall: float
    usage: os.struct_rusage  # type: ignore[name-defined]
    rss_samples: list[float]


def run_measured(command: list[str]) -> Finished:
    """Run `command`, sampling its RSS; SystemExit with its stderr when it fails."""
    samples: list[float] = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = threading.Thread(target=sample_rss, args=(process.pid, samples), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed ({code}): {err.decode()[-2000:]}")
    return Finished(out, wall, usage, samples)


def sample_rss(pid: int, samples: list[float]) -> None:
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                samples.append(int(line.split()[1]) / 1024)
        time.sleep(0.25)


def count_rows(url: str) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        n = int(connection.execute(text("SELECT count(*) FROM images")).scalar_one())
    engine.dispose()
    return n


def print_row(scenario: Scenario, database: str, runs: list[Run]) -> None:
    wall = statistics.median(r.wall for r in runs)
    rate = scenario.n / wall
    sync_seconds = statistics.median(r.sync_seconds for r in runs)
    sync_rate = scenario.n / sync_seconds
    ideal = scenario.ideal
    ratio = f"{sync_rate / ideal:.0%}" if ideal != float("inf") else "n/a (CPU-bound)"
    cpu = statistics.median(r.cpu for r in runs) / scenario.n * 1000
    rss = statistics.median(r.peak_rss_mb for r in runs)
    samples = max(runs, key=lambda r: r.peak_rss_mb).rss_samples
    quarters = (
        "/".join(f"{samples[min(len(samples) - 1, int(len(samples) * q))]:.0f}"
                 for q in (0.25, 0.5, 0.75, 1.0))
        if samples else "-"
    )  # fmt: skip
    served = statistics.median(r.served for r in runs)
    peak = max(r.max_per_second for r in runs)
    print(
        f"| {scenario.name} | {database} | {scenario.n:,} | {scenario.latency_ms:g} ms | "
        f"{scenario.concurrency} | {scenario.max_rate or 'none'} | {wall:.2f} | {rate:,.0f} | "
        f"{sync_seconds:.2f} | {sync_rate:,.0f} | {ratio} | {cpu:.3f} | {rss:.0f} | {quarters} | "
        f"{served:,.0f} | {peak} | "
        f"{scenario.target} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
