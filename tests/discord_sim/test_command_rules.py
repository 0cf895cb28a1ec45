"""Discord's rules for synced commands, as the sim applies them to a bulk overwrite (pure, no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from photogen.discord_sim.bodies import DiscordError
from photogen.discord_sim.commands import check_commands


def cmd(name: str = "train", options: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": "d", "type": 1, "options": options or [], **extra}


def opt(name: str, kind: int = 3, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": "d", "type": kind, **extra}


def test_a_group_with_subcommands_is_accepted() -> None:
    check_commands([cmd("admin", [opt("credits", 2, options=[opt("grant", 1, options=[opt("amount", 4)])])])])


@pytest.mark.parametrize(
    ("commands", "why"),
    [
        ([cmd("Train")], "lower case"),
        ([cmd("has space")], "Invalid name"),
        ([cmd(description="")], "between 1 and 100"),
        ([cmd(), cmd()], "duplicate command name"),
        ([cmd(options=[opt("a", required=False), opt("b", required=True)])], "Required options"),
        ([cmd(options=[opt(f"o{i}") for i in range(26)])], "25 or fewer"),
        ([cmd(options=[opt("a"), opt("a")])], "Duplicate option"),
        ([cmd(options=[opt("sub", 1, options=[opt("deeper", 1)])])], "nest at most"),
        ([cmd(options=[opt("g", 2, options=[opt("g2", 2)])])], "nest at most"),
        (
            [cmd(options=[opt("c", choices=[{"name": str(i), "value": str(i)} for i in range(26)])])],
            "25 or fewer",
        ),
        ([cmd(f"c{i}") for i in range(101)], "100 or fewer"),
        ({"name": "x"}, "array"),
    ],
)
def test_what_discord_refuses_is_refused(commands: Any, why: str) -> None:
    with pytest.raises(DiscordError) as refused:
        check_commands(commands)
    assert refused.value.status == 400 and refused.value.code == 50035
    assert why in str(refused.value.body())
