"""Application commands: checking what the bot syncs, and building the `data` of command and autocomplete
interactions from a test's plain Python options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from photogen.discord_sim.bodies import DiscordError, invalid_form
from photogen.discord_sim.interactions import SimError
from photogen.discord_sim.models import SimAttachment, SimChannel, SimMember, SimRole, SimUser, new_snowflake

if TYPE_CHECKING:
    from photogen.discord_sim.server import DiscordSim

SUB_COMMAND, GROUP, STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(
    1, 12
)
_NAME = re.compile(r"^[-_\w]{1,32}$")
MAX_COMMANDS = 100


def check_commands(commands: Any) -> None:
    """Discord's rules for a bulk overwrite, so a bot that syncs something Discord refuses fails here too."""
    if not isinstance(commands, list):
        raise invalid_form("_root", "Must be an array of application commands.")
    if len(commands) > MAX_COMMANDS:
        raise invalid_form("_root", f"Must be {MAX_COMMANDS} or fewer in length.")
    seen: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        if not isinstance(command, dict):
            raise invalid_form(str(i), "Must be an application command object.")
        kind = int(command.get("type", 1))
        key = (kind, str(command.get("name")))
        if key in seen:
            raise DiscordError(400, 50035, f"Invalid Form Body: duplicate command name {key[1]!r}")
        seen.add(key)
        _check_named(command, f"{i}", kind == 1)
        _check_options(command.get("options") or [], f"{i}.options", parent=None)


def _check_named(obj: dict[str, Any], where: str, slash: bool) -> None:
    name = obj.get("name")
    if not isinstance(name, str) or not (_NAME.match(name) if slash else 0 < len(name) <= 32):
        raise invalid_form(f"{where}.name", f"Invalid name {name!r}.")
    if slash and name != name.lower():
        raise invalid_form(f"{where}.name", f"Command and option names must be lower case: {name!r}.")
    description = obj.get("description", "")
    if slash and not (1 <= len(description) <= 100):
        raise invalid_form(f"{where}.description", "Must be between 1 and 100 in length.")


def _check_options(options: list[dict[str, Any]], where: str, parent: int | None) -> None:
    if len(options) > 25:
        raise invalid_form(where, "Must be 25 or fewer in length.")
    names: set[str] = set()
    optional_seen = False
    for i, option in enumerate(options):
        _check_named(option, f"{where}.{i}", True)
        if option["name"] in names:
            raise invalid_form(f"{where}.{i}.name", f"Duplicate option name {option['name']!r}.")
        names.add(option["name"])
        kind = option.get("type")
        if kind in (SUB_COMMAND, GROUP):
            # Discord nests at most command → group → subcommand.
            allowed = parent is None or (parent == GROUP and kind == SUB_COMMAND)
            if not allowed:
                raise invalid_form(f"{where}.{i}.type", "Subcommands nest at most group → subcommand.")
            _check_options(option.get("options") or [], f"{where}.{i}.options", kind)
            continue
        if option.get("required"):
            if optional_seen:
                raise invalid_form(
                    f"{where}.{i}.required", "Required options must be placed before non-required."
                )
        else:
            optional_seen = True
        if len(option.get("choices") or []) > 25:
            raise invalid_form(f"{where}.{i}.choices", "Must be 25 or fewer in length.")


def store_commands(
    sim: DiscordSim, guild_id: int | None, commands: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Bulk overwrite: keep ids of commands that existed by name, as Discord does."""
    check_commands(commands)
    old = {(c.get("type", 1), c["name"]): c for c in sim.commands_for(guild_id)}
    stored = [complete_command(sim, guild_id, c, old.get((c.get("type", 1), c["name"]))) for c in commands]
    if guild_id is None:
        sim.global_commands = stored
    else:
        sim.guild_commands[guild_id] = stored
    sim.sync_count += 1
    sim.sync_log.append((guild_id, [c["name"] for c in stored]))
    sim.notify()
    return stored


def complete_command(
    sim: DiscordSim, guild_id: int | None, command: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    full = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "contexts": None,
        "integration_types": [0],
    } | command
    full["id"] = previous["id"] if previous else str(new_snowflake())
    full["application_id"] = str(sim.application_id)
    full["version"] = str(new_snowflake())
    if guild_id is not None:
        full["guild_id"] = str(guild_id)
    return full


def _walk(
    command: dict[str, Any] | None, path: list[str]
) -> tuple[list[dict[str, Any]] | None, list[tuple[str, int]]]:
    """Follow a subcommand path; returns the leaf's option schema (None if unknown) and the (name, type) chain."""
    chain: list[tuple[str, int]] = []
    schema: list[dict[str, Any]] | None = command.get("options") if command is not None else None
    for name in path:
        if schema is None:
            chain.append((name, SUB_COMMAND))  # unsynced: the last name is a subcommand, earlier ones groups
            continue
        match = next((o for o in schema if o["name"] == name and o.get("type") in (SUB_COMMAND, GROUP)), None)
        if match is None:
            raise SimError(f"no subcommand {name!r}; there are {[o['name'] for o in schema]}")
        chain.append((name, match["type"]))
        schema = match.get("options") or []
    if command is None:
        chain = [(n, GROUP) for n, _ in chain[:-1]] + chain[-1:]
    elif schema and any(o.get("type") in (SUB_COMMAND, GROUP) for o in schema):
        raise SimError(
            f"/{' '.join([command['name'], *path])} needs a subcommand: {[o['name'] for o in schema]}"
        )
    return schema, chain


def _nest(chain: list[tuple[str, int]], leaf: list[dict[str, Any]]) -> list[dict[str, Any]]:
    options = leaf
    for name, kind in reversed(chain):
        options = [{"name": name, "type": kind, "options": options}]
    return options


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, (SimMember, SimUser)):
        return USER
    if isinstance(value, SimChannel):
        return CHANNEL
    if isinstance(value, SimRole):
        return ROLE
    if isinstance(value, tuple):
        return ATTACHMENT
    return STRING


def build_command_data(
    sim: DiscordSim,
    channel: SimChannel,
    command: dict[str, Any] | None,
    name: str,
    options: dict[str, Any],
    attachments: Sequence[tuple[str, bytes]],
) -> dict[str, Any]:
    root, *path = name.split()
    schema, chain = _walk(command, path)
    by_name = {o["name"]: o for o in schema or []}
    values = dict(options)
    pending = list(attachments)
    if pending:
        slots = [o["name"] for o in schema or [] if o.get("type") == ATTACHMENT and o["name"] not in values]
        if schema is None:
            slots = [f"photo{i + 1}" for i in range(len(pending))]
        if len(pending) > len(slots):
            raise SimError(f"/{name} has {len(slots)} free attachment options, got {len(pending)} files")
        values.update(zip(slots, pending, strict=False))  # more slots than files: the first ones
    for option_name in values:
        if schema is not None and option_name not in by_name:
            raise SimError(f"/{name} has no option {option_name!r}; it has {sorted(by_name)}")
    for option in schema or []:
        if option.get("required") and option["name"] not in values:
            raise SimError(f"/{name} needs option {option['name']!r} (Discord would not send it without)")

    resolved: dict[str, dict[str, Any]] = {}
    leaf: list[dict[str, Any]] = []
    for option_name, value in values.items():
        kind = by_name[option_name]["type"] if option_name in by_name else _infer_type(value)
        leaf.append(
            {"name": option_name, "type": kind, "value": _resolve(sim, channel, kind, value, resolved)}
        )
    data: dict[str, Any] = {
        "id": command["id"] if command else str(new_snowflake()),
        "name": root,
        "type": 1,
        "options": _nest(chain, leaf),
    }
    if resolved:
        data["resolved"] = resolved
    if command is not None and command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return data


def _resolve(
    sim: DiscordSim, channel: SimChannel, kind: int, value: Any, resolved: dict[str, dict[str, Any]]
) -> Any:
    if kind == ATTACHMENT:
        if isinstance(value, SimAttachment):
            attachment = value
        elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (bytes, bytearray)):
            attachment = sim.upload_attachment(channel, str(value[0]), bytes(value[1]))
        else:
            raise SimError(f"an attachment option takes (filename, bytes), got {type(value).__name__}")
        resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.payload()
        return str(attachment.id)
    if kind in (USER, MENTIONABLE) and isinstance(value, (SimMember, SimUser)):
        user = value.user if isinstance(value, SimMember) else value
        resolved.setdefault("users", {})[str(user.id)] = user.payload()
        if isinstance(value, SimMember):
            member = {k: v for k, v in value.payload(with_permissions=True).items() if k != "user"}
            resolved.setdefault("members", {})[str(user.id)] = member
        return str(user.id)
    if kind in (ROLE, MENTIONABLE) and isinstance(value, SimRole):
        resolved.setdefault("roles", {})[str(value.id)] = value.payload()
        return str(value.id)
    if kind == CHANNEL and isinstance(value, SimChannel):
        resolved.setdefault("channels", {})[str(value.id)] = value.payload() | {
            "permissions": str((1 << 53) - 1)
        }
        return str(value.id)
    if kind in (USER, ROLE, CHANNEL, MENTIONABLE):
        raise SimError(
            f"option type {kind} takes a sim object (SimMember, SimRole, SimChannel), got {value!r}"
        )
    if kind == INTEGER and not isinstance(value, int):
        raise SimError(f"an integer option got {value!r}")
    if kind == NUMBER and not isinstance(value, (int, float)):
        raise SimError(f"a number option got {value!r}")
    if kind == BOOLEAN and not isinstance(value, bool):
        raise SimError(f"a boolean option got {value!r}")
    if kind == STRING and not isinstance(value, str):
        raise SimError(f"a string option got {value!r}")
    return value


def build_autocomplete_data(
    command: dict[str, Any] | None, name: str, options: dict[str, Any], focused: str
) -> dict[str, Any]:
    """Autocomplete sends what is typed so far: raw values, with `focused` on one option."""
    root, *path = name.split()
    schema, chain = _walk(command, path)
    if focused not in options:
        raise SimError(f"focused option {focused!r} is not among the options {sorted(options)}")
    by_name = {o["name"]: o for o in schema or []}
    leaf = []
    for option_name, value in options.items():
        if schema is not None and option_name not in by_name:
            raise SimError(f"/{name} has no option {option_name!r}")
        kind = by_name[option_name]["type"] if option_name in by_name else _infer_type(value)
        entry: dict[str, Any] = {"name": option_name, "type": kind, "value": value}
        if option_name == focused:
            entry["focused"] = True
        leaf.append(entry)
    data: dict[str, Any] = {
        "id": command["id"] if command else str(new_snowflake()),
        "name": root,
        "type": 1,
        "options": _nest(chain, leaf),
    }
    if command is not None and command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return data
