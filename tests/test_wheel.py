"""The built wheel carries its migrations: installed non-editable, run from elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, new_ids

from mirror.schema import SCHEMA_HEAD
from mirror.standin import StandIn


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the wheel installed; its dependencies come from the interpreter
    running the tests (a venv itself, as the README installs): a .pth file adds that
    interpreter's site-packages. (--system-site-packages would add the base interpreter's.)
    Nested .pth files there are not processed, so an editable install of the checkout
    cannot shadow the wheel."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(base / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (base / "dist").glob("autoenhance_mirror-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own_site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(own_site) / "test-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def run(venv: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [str(venv / "bin" / "autoenhance-mirror"), *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_wheel_ships_migrations_and_runs_from_anywhere(
    installed: Path, tmp_path: Path, database_url: str, standin: StandIn
) -> None:
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import mirror, mirror.db; print(mirror.__file__); print(mirror.db.migrations_path())",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    assert (Path(where[1]) / "versions").is_dir()

    upgraded = run(installed, tmp_path, "db", "upgrade", "--database-url", database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run(installed, tmp_path, "db", "current", "--database-url", database_url).stdout
    assert current.startswith(f"{SCHEMA_HEAD} (head) at ")

    ids = new_ids(3)
    env = {"MIRROR_DATABASE_URL": database_url, "AUTOENHANCE_BASE_URL": standin.url}
    first = run(installed, tmp_path, "sync", *ids, "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["inserted"] == 3
    second = run(installed, tmp_path, "sync", *ids, env=env)
    assert second.returncode == 0
    assert "0 new, 0 changed, 3 unchanged" in second.stdout
    # The reports' SQL ships in the wheel: both runs, newest first, piped so CSV.
    runs = run(installed, tmp_path, "report", "last-runs", env=env)
    assert runs.returncode == 0, runs.stderr
    lines = runs.stdout.splitlines()
    assert lines[0].startswith("id,started_at,") and len(lines) == 3

    module = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "mirror", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert module.stdout.startswith("autoenhance-mirror, version ")
