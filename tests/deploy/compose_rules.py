"""What `docker compose config` does to docker-compose.yml, reproduced without a Docker engine (none here).

Compose (compose-go) loads the YAML, interpolates EVERY value of EVERY service with the shell environment
and the project's `.env`, validates the result against the Compose Specification's JSON schema, and only then
applies profiles. So a `${VAR:?message}` in a service that only a profile enables still aborts the default
`docker compose up -d`. The interpolation rules follow the specification's "Interpolation" section:

    ${VAR} $VAR          the value; unset: empty (compose warns)
    ${VAR:-default}      default when VAR is unset or empty       ${VAR-default}  default when VAR is unset
    ${VAR:?message}      error when VAR is unset or empty         ${VAR?message}  error when VAR is unset
    ${VAR:+other}        other when VAR is set and not empty      ${VAR+other}    other when VAR is set
    $$                   a literal $                               defaults and messages may nest ${…}

The schema is the specification's own (compose-spec.json as vendored by the check-jsonschema package).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from dotenv import dotenv_values

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """Compose refuses the file: what `docker compose config` would print."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """One string, interpolated as Compose does."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match[0], ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _braced(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    """${…} starting after the brace: its value and the index after its closing brace."""
    name = _NAME.match(text, start)
    if name is None:
        raise InterpolationError(f"invalid interpolation format for {text!r}")
    at = name.end()
    operator = next((op for op in _OPERATORS if text.startswith(op, at)), "")
    at += len(operator)
    end = _closing_brace(text, at)
    if end is None or (not operator and end != at):
        raise InterpolationError(f"invalid interpolation format for {text!r}")
    variable, argument = name[0], text[at:end]
    is_set = variable in env
    value = env.get(variable, "")
    if operator == ":-":
        result = value if value else interpolate(argument, env)
    elif operator == "-":
        result = value if is_set else interpolate(argument, env)
    elif operator in (":?", "?"):
        missing = not value if operator == ":?" else not is_set
        if missing:
            raise InterpolationError(
                f"required variable {variable} is missing a value: {interpolate(argument, env)}"
            )
        result = value
    elif operator == ":+":
        result = interpolate(argument, env) if value else ""
    elif operator == "+":
        result = interpolate(argument, env) if is_set else ""
    else:
        result = value
    return result, end + 1


def _closing_brace(text: str, start: int) -> int | None:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


def interpolate_model(node: Any, env: Mapping[str, str]) -> Any:
    """Every value of the loaded YAML (keys are not interpolated), every service whatever its profiles."""
    if isinstance(node, dict):
        return {key: interpolate_model(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_model(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """A `.env` file as Compose and the settings read it (comments, `export`, quotes); missing: nothing."""
    if not path.is_file():
        return {}
    return {key: value or "" for key, value in dotenv_values(path, interpolate=False).items()}


def enabled_services(model: Mapping[str, Any], profiles: tuple[str, ...] = ()) -> set[str]:
    """The services `docker compose [--profile P …] up` starts: those without profiles, and the named ones."""
    return {
        name
        for name, service in model["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def container_environment(model: Mapping[str, Any], service: str, project_dir: Path) -> dict[str, str]:
    """What the service's container sees: its env_file entries in order, then `environment`, which wins."""
    spec = model["services"][service]
    result: dict[str, str] = {}
    entries = spec.get("env_file") or []
    for entry in [entries] if isinstance(entries, str | dict) else entries:
        path = project_dir / (entry if isinstance(entry, str) else entry["path"])
        required = True if isinstance(entry, str) else entry.get("required", True)
        if required and not path.is_file():
            raise InterpolationError(f"env file {path} not found")
        result.update(read_env_file(path))
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    result.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return result


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema as check-jsonschema ships it (its "vendor.compose-spec")."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))


def schema_errors(model: Mapping[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(model)
    ]
