"""Start-up benchmark: what cron pays on every run, before the first request.

    python bench/startup.py              # 11 runs of each, medians
    python bench/startup.py --repeat 21
    python bench/startup.py --postgres-url postgresql://bench:pw@127.0.0.1/bench_startup
                                         # ... and a sync into an existing PostgreSQL mirror
                                         # (its own database: the mirror is made there)

Whole processes of the installed CLI, as cron starts them: `--help` and `--version` (exec to
exit), then `sync` of one ID on a plain SQLite file, from exec to the stand-in receiving its
first request: a first run (no file yet), a run on an existing mirror, and a dry run of it
(and one of a file that does not exist). The stand-in runs in this process and stamps each
request as it arrives with the same monotonic clock. Prints Markdown to paste into the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from run import compile_installed_package

from mirror.standin import StandIn

CLI = [sys.executable, "-m", "mirror"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    compile_installed_package()
    rows: list[tuple[str, str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="mirror-startup-") as scratch, StandIn() as standin:
        mirror = Path(scratch) / "mirror.db"
        first_sync(standin, mirror)  # the mirror the later scenarios find
        scenarios: list[tuple[str, str, Callable[[int], float]]] = [
            ("`--help`", "exec to exit", lambda _: whole_process("--help")),
            ("`--version`", "exec to exit", lambda _: whole_process("--version")),
            (
                "`sync ID`, no database file yet",
                "exec to first request",
                lambda i: first_sync(standin, Path(scratch) / f"new-{i}.db"),
            ),
            (
                "`sync ID`, an existing mirror",
                "exec to first request",
                lambda _: to_first_request(standin, mirror),
            ),
            (
                "`sync ID --dry-run`, an existing mirror",
                "exec to first request",
                lambda _: to_first_request(standin, mirror, "--dry-run"),
            ),
            (
                "`sync ID --dry-run`, no database file",
                "exec to first request",
                lambda _: to_first_request(standin, Path(scratch) / "none.db", "--dry-run"),
            ),
        ]
        if args.postgres_url:
            postgres: str = args.postgres_url
            to_first_request(standin, postgres)  # the mirror the runs find
            scenarios.append(
                (
                    "`sync ID`, an existing PostgreSQL mirror",
                    "exec to first request",
                    lambda _: to_first_request(standin, postgres),
                )
            )
        for i in range(args.repeat):  # interleaved, so a noisy moment touches them all
            for label, measure, scenario in scenarios:
                seconds = scenario(i)
                found = next((r for r in rows if r[0] == label), None)
                if found is None:
                    rows.append((label, measure, [seconds]))
                else:
                    found[2].append(seconds)
    print(f"{args.repeat} runs of each, interleaved; seconds")
    print()
    print("| what | measured | median | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for label, measure, seconds in rows:
        print(
            f"| {label} | {measure} | **{statistics.median(seconds):.3f}** | "
            f"{min(seconds):.3f} | {max(seconds):.3f} |"
        )


def whole_process(option: str) -> float:
    started = time.monotonic()
    subprocess.run([*CLI, option], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def first_sync(standin: StandIn, database: Path) -> float:
    return to_first_request(standin, database)


def to_first_request(standin: StandIn, database: Path | str, *options: str) -> float:
    """Seconds from exec to the stand-in's first request stamp of this run; checks the run."""
    with standin.state.lock:
        standin.state.times.clear()
    env = dict(os.environ, AUTOENHANCE_BASE_URL=standin.url)
    command = [*CLI, "sync", str(uuid.uuid4()), "--database-url", str(database), *options]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr}")
    with standin.state.lock:
        stamps = list(standin.state.times)
    if len(stamps) != 1:
        raise SystemExit(f"expected one request, the stand-in saw {len(stamps)}")
    return stamps[0] - started


if __name__ == "__main__":
    main()
