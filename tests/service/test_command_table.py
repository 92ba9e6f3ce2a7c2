"""The console and the CLI are built from one command table (bot/adapters/commands.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bot.adapters.commands import COMMANDS, CONSOLE_SPELLINGS
from bot.adapters.syntax import (
    Command,
    Flag,
    Option,
    Positional,
    add_cli_arguments,
    cli_values,
    console_usage,
    parse_console,
)
from bot.cli import build_parser
from bot.console import help_text
from bot.errors import UserError


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_row_is_a_cli_subcommand_and_a_console_command() -> None:
    subcommands = _subcommands()
    for command in COMMANDS:
        if command.cli:
            assert subcommands[command.name].description == command.help
        for spelling in command.console:
            assert CONSOLE_SPELLINGS[spelling] is command
            assert f"/{command.console[0]}" in help_text()
    # The process-level commands of the CLI alone (no console spelling, no table row).
    operations = {"run", "sync", "migrate-storage", "reshard", "console"}
    offered = {c.name for c in COMMANDS if c.cli} | operations
    assert set(subcommands) == offered


@pytest.mark.parametrize(
    ("name", "console", "cli", "expected"),
    [
        (
            "train",
            "story.txt mode:append [layers:2] seed:1",
            "story.txt --append --layers 2 --seed 1",
            {"file": Path("story.txt"), "mode": "append", "layers": 2, "seed": 1},
        ),
        ("continue", "had a general length:5", "had a general --length 5", {"length": 5}),
        ("remove", "#3", "3", {"story_id": 3}),
        ("rollback", "v2", "2", {"version": 2}),
        ("rollback", "", "", {"version": None}),
        ("export", "out.zip", "--out out.zip", {"out": Path("out.zip")}),
        ("export", "", "", {"out": None}),
        ("forget", "yes", "--yes", {"yes": True}),
        ("forget", "", "", {"yes": False}),
        (
            "forget-user",
            "42 server:7 yes",
            "42 --server 7 --yes",
            {"user_id": 42, "server": 7, "yes": True},
        ),
        (
            "user-data",
            "42 me.json",
            "42 --out me.json",
            {"user_id": 42, "server": None, "out": Path("me.json")},
        ),
    ],
)
def test_both_surfaces_parse_to_the_same_arguments(
    name: str, console: str, cli: str, expected: dict[str, object]
) -> None:
    command = next(c for c in COMMANDS if c.name == name)
    from_console = parse_console(command, console.split())
    from_cli = cli_values(command, build_parser().parse_args([name, *cli.split()]))
    assert from_console == from_cli
    assert {key: from_console[key] for key in expected} == expected


def test_a_new_row_is_spelled_by_both_surfaces() -> None:
    async def handler(call: object) -> str:
        return ""

    row = Command(
        "privacy",
        ("story privacy",),
        "what is stored",
        handler,
        (
            Positional("member", "a member", "ID", int, optional=True),
            Option("days", "last N days", int, "30"),
            Flag("yes", "do not ask"),
        ),
    )
    assert console_usage(row) == "/story privacy [ID] [days:30] [yes]"
    assert parse_console(row, ["7", "days:3", "yes"]) == {"member": 7, "days": 3, "yes": True}
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser, row)
    args = parser.parse_args(["7", "--days", "3", "--yes"])
    assert cli_values(row, args) == {"member": 7, "days": 3, "yes": True}
    with pytest.raises(UserError, match=r"Usage: /story privacy \[ID\]"):
        parse_console(row, ["seven"])


def test_console_groups_find_their_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import bot.console

    console = bot.console.Console(None, io.StringIO())  # type: ignore[arg-type]  # no call made
    status = next(c for c in COMMANDS if c.name == "status")
    assert console._lookup("story", []) == (status, [])  # /story alone is /story show
    assert console._lookup("story", ["SHOW", "x"]) == (status, ["x"])
    with pytest.raises(UserError, match=r"Usage: /story show \| list"):
        console._lookup("story", ["nonsense"])
    # A group no row is spelled by alone (a new /filter add, /filter remove) shows its usage.
    added = Command("filter-add", ("filter add",), "add", status.handler)
    monkeypatch.setattr(bot.console, "COMMANDS", (*COMMANDS, added))
    monkeypatch.setattr(bot.console, "CONSOLE_GROUPS", {"story", "filter"})
    monkeypatch.setattr(
        bot.console, "CONSOLE_SPELLINGS", {**CONSOLE_SPELLINGS, "filter add": added}
    )
    assert console._lookup("filter", ["add"]) == (added, [])
    with pytest.raises(UserError, match=r"^Usage: /filter add$"):
        console._lookup("filter", [])
