"""Benchmark of whole-account sync (spec §7): `sync --all` against the stand-in's account.

    python bench/orders.py                       # 50,000 images at 50 ms, --max-rate 300
    python bench/orders.py --by-id               # ... and the same images by ID, to compare
    python bench/orders.py --by-id --repeat 3    # three series, then medians and the ratio
    python bench/orders.py --million             # 1,000,000 images: memory of --all, then
                                                 # of --unfinished over that mirror

The stand-in (`autoenhance-mirror stand-in --account N --latency ...`) and the installed CLI
run in processes of their own, on a fresh SQLite database (or PostgreSQL with --postgres-url).
Every run is verified: the rows in the database, the run's counts and the requests the
stand-in served. Prints Markdown to paste into the README.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from run import (
    StandInProcess,
    compile_installed_package,
    count_rows,
    fresh_database,
    run_measured,
)

from mirror.sample_account import PER_PAGE_MAX, SampleAccount

KEY = "bench-key"


@dataclass
class Measured:
    label: str
    wall: float
    sync_seconds: float
    cpu: float
    peak_rss_mb: float
    rss_samples: list[float]
    summary: dict[str, object]
    served: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--max-rate", type=float, default=300)
    parser.add_argument("--by-id", action="store_true", help="also sync the images by ID")
    parser.add_argument("--repeat", type=int, default=1, help="series to run, for medians")
    parser.add_argument("--million", action="store_true", help="the 1,000,000-image runs")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    compile_installed_package()
    kind = "postgresql" if args.postgres_url else "sqlite"
    with tempfile.TemporaryDirectory() as scratch:
        if args.million:
            million(scratch, kind, args.postgres_url)
        else:
            account(scratch, kind, args)


BY_ID = "the same images by ID"


def account(scratch: str, kind: str, args: argparse.Namespace) -> None:
    sample = SampleAccount.generate(args.images)
    pages = math.ceil(len(sample.orders) / PER_PAGE_MAX)
    bound = pages * args.latency_ms / 1000
    print(
        f"account: {args.images:,} images in {len(sample.orders):,} orders = {pages} listing "
        f"pages; latency {args.latency_ms:g} ms, --max-rate {args.max_rate:g}, {kind}; "
        f"sequential-page bound {bound:.2f} s\n"
    )
    print(
        "| run | wall s (process) | sync s | x bound | requests | requests/image | "
        "CPU s | peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rate = ["--max-rate", str(args.max_rate)]
    runs: dict[str, list[Measured]] = {}
    with StandInProcess(args.latency_ms, "--account", str(args.images), "--require-key", KEY) as si:
        for _ in range(args.repeat):  # series after series: the machine's drift hits all alike
            url, drop = fresh_database(kind, scratch, args.postgres_url)
            try:
                for label in ("--all, empty database", "--all again, nothing changed"):
                    m = measure(label, si, url, ["--all", "--api-key", KEY, *rate])
                    check(m, url, images=args.images, requests=pages)
                    row(m, bound, args.images)
                    runs.setdefault(label, []).append(m)
            finally:
                drop()  # type: ignore[operator]
            if args.by_id:
                ids = Path(scratch) / "ids.txt"
                ids.write_text("\n".join(sample.image_ids()) + "\n")
                url, drop = fresh_database(kind, scratch, args.postgres_url)
                try:
                    command = ["--from-file", str(ids), "--api-key", KEY, "--concurrency", "32"]
                    m = measure(BY_ID, si, url, [*command, *rate])
                    check(m, url, images=args.images, requests=args.images)
                    row(m, bound, args.images)
                    runs.setdefault(BY_ID, []).append(m)
                finally:
                    drop()  # type: ignore[operator]
    if args.repeat > 1 or args.by_id:
        medians(runs)


def medians(runs: dict[str, list[Measured]]) -> None:
    """Each run's median over the series, and how many times faster `--all` was than by ID."""
    print(f"\n| run | wall s, median of {len(next(iter(runs.values())))} | sync s, median | "
          "x faster than by ID (wall / sync) |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    wall = {label: statistics.median(m.wall for m in ms) for label, ms in runs.items()}
    sync = {label: statistics.median(m.sync_seconds for m in ms) for label, ms in runs.items()}
    for label in runs:
        faster = ""
        if BY_ID in runs and label != BY_ID:
            faster = f"{wall[BY_ID] / wall[label]:.2f} / {sync[BY_ID] / sync[label]:.2f}"
        print(f"| {label} | {wall[label]:.2f} | {sync[label]:.2f} | {faster} |")


def million(scratch: str, kind: str, postgres_url: str | None) -> None:
    n = 1_000_000
    print(f"1,000,000 images, latency 0, no rate cap, {kind}\n")
    print("| run | wall s | requests | peak RSS | RSS at 25/50/75/100 % |")
    print("| --- | --- | --- | --- | --- |")
    with StandInProcess(0, "--account", str(n), "--require-key", KEY) as si:
        url, drop = fresh_database(kind, scratch, postgres_url)
        try:
            common = ["--api-key", KEY, "--max-rate", "0", "--concurrency", "32"]
            m = measure("--all", si, url, ["--all", *common])
            check(m, url, images=n, requests=None)
            memory_row(m)
            m = measure("--unfinished over that mirror", si, url, ["--unfinished", *common])
            memory_row(m)
        finally:
            drop()  # type: ignore[operator]


def measure(label: str, standin: StandInProcess, url: str, options: list[str]) -> Measured:
    standin.call("/__standin/reset")
    command = [
        "autoenhance-mirror", "sync", "--json", "--base-url", standin.url,
        "--database-url", url, *options,
    ]  # fmt: skip
    finished = run_measured(command)
    stats = standin.call("/__standin/stats")
    summary = json.loads(finished.out)
    usage = finished.usage
    return Measured(
        label=label,
        wall=finished.wall,
        sync_seconds=float(summary["seconds"]),
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        rss_samples=finished.rss_samples,
        summary=summary,
        # API requests only (not the benchmark's own calls to /__standin/...).
        served=sum(
            int(n)
            for path, n in stats["paths"].items()  # type: ignore[attr-defined]
            if "/v3/" in path
        ),
    )


def check(m: Measured, url: str, *, images: int, requests: int | None) -> None:
    s = m.summary
    rows = count_rows(url)
    mirrored = int(s["inserted"]) + int(s["unchanged"])  # type: ignore[call-overload]
    ok = s["requested"] == mirrored == rows == images and s["api_requests"] == m.served
    if requests is not None:
        ok = ok and m.served == requests
    if not ok:
        raise SystemExit(f"{m.label}: verification failed: {s}, rows {rows}, served {m.served}")


def row(m: Measured, bound: float, images: int) -> None:
    print(
        f"| {m.label} | {m.wall:.2f} | {m.sync_seconds:.2f} | {m.sync_seconds / bound:.2f} | "
        f"{m.served:,} | {m.served / images:.4f} | {m.cpu:.1f} | {m.peak_rss_mb:.0f} MB |"
    )


def memory_row(m: Measured) -> None:
    samples = m.rss_samples or [0.0]
    quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3, 4)]
    shown = " / ".join(f"{q:.0f}" for q in quarters)
    print(f"| {m.label} | {m.wall:.1f} | {m.served:,} | {m.peak_rss_mb:.0f} MB | {shown} MB |")


if __name__ == "__main__":
    main()
