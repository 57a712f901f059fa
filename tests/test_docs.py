"""Every command has help text with an example, and the README documents it."""

from __future__ import annotations

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
