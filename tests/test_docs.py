"""Every command has help text with an example, and the README documents it."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from helpers import REPO, run_cli

from mirror.cli import cli


def all_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))

    walk(cli, ())
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_command_has_help_with_an_example_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"autoenhance-mirror {' '.join(path)}" in (REPO / "README.md").read_text()


def test_readme_shows_the_current_sync_help() -> None:
    """The README's `sync --help` block is the real one (regenerate it when options change)."""
    help_text = run_cli("sync", "--help").stdout
    assert help_text.strip() in (REPO / "README.md").read_text()


def test_help_and_version_import_no_database_library() -> None:
    """`--help` and `--version` stay fast (cron wrappers, shell completion): the CLI module
    imports click and light modules only; SQLAlchemy, SQLModel and the drivers wait for a
    command that uses them. (How fast is measured in the README, not asserted here.)"""
    probe = (
        "import sys, mirror.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'psycopg', 'alembic', 'httpx') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-m", "mirror", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("autoenhance-mirror, version ")


def test_the_readmes_module_map_names_every_module() -> None:
    readme = (REPO / "README.md").read_text()
    modules = sorted(p.name for p in (REPO / "mirror").glob("*.py") if p.name != "__init__.py")
    assert [name for name in modules if f"`{name}`" not in readme] == []
