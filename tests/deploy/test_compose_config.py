"""`docker compose up -d` on a fresh `.env`: what `docker compose config` does to the file, reproduced here
(tests/deploy/compose_rules.py: interpolation of every service before profiles, the specification's schema,
env_file and environment), and the services' own start-up refusing a missing setting with one line.

No Docker engine runs here: the containers' start-up commands run as processes with the environment Compose
would give them, `/data` (the shared volume) mapped to a temporary folder.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.deploy.compose_rules import (
    InterpolationError,
    container_environment,
    enabled_services,
    interpolate,
    interpolate_model,
    read_env_file,
    schema_errors,
)

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
TOKEN = "MTE" + "x" * 56  # the shape of a Discord bot token; never sent anywhere


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _project(tmp_path: Path, extra: str = "") -> Path:
    """A checkout after `cp .env.example .env` (plus what a newcomer then adds)."""
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text() + extra)
    return tmp_path


# --- the interpolation rules the helper implements (Compose Specification, "Interpolation") -----------------

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${SET}", "value"),
        ("$SET/x", "value/x"),
        ("${UNSET}", ""),
        ("a$$b", "a$b"),
        ("$${SET}", "${SET}"),
        ("${SET:-d}", "value"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${SET-d}", "value"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${SET:+r}", "r"),
        ("${EMPTY:+r}", ""),
        ("${UNSET:+r}", ""),
        ("${SET+r}", "r"),
        ("${EMPTY+r}", "r"),
        ("${UNSET+r}", ""),
        ("${SET:?no}", "value"),
        ("${EMPTY?no}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a}:${SET}", "a:value"),
    ],
)
def test_interpolation_follows_the_specification(template: str, expected: str) -> None:
    assert interpolate(template, ENV) == expected


@pytest.mark.parametrize(
    "template",
    [
        "${EMPTY:?set EMPTY}",
        "${UNSET:?set UNSET}",
        "${UNSET?set UNSET}",
        "${UNSET:-${UNSET:?deep}}",
        "${}",
        "${SET",
        "${SET x}",
    ],
)
def test_interpolation_refuses_what_compose_refuses(template: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate(template, ENV)


# --- the compose file ---------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification_schema(raw: dict) -> None:
    for env in ({}, read_env_file(ENV_EXAMPLE)):
        assert schema_errors(interpolate_model(raw, env)) == []
    broken = copy.deepcopy(raw)
    broken["services"]["bot"]["enviroment"] = {"X": "1"}  # the schema is really applied: a misspelt key fails
    assert any("enviroment" in error for error in schema_errors(broken))


def test_docker_compose_config_cannot_fail_on_the_shipped_env_example(raw: dict) -> None:
    # Compose interpolates every service before it applies profiles: a required variable in a profile-only
    # service aborts the default `docker compose up -d`.
    environments = {
        "empty": {},
        ".env.example": read_env_file(ENV_EXAMPLE),
        ".env.example + DISCORD_TOKEN": read_env_file(ENV_EXAMPLE) | {"DISCORD_TOKEN": TOKEN},
    }
    for label, env in environments.items():
        for name, service in raw["services"].items():
            try:
                interpolate_model(service, env)
            except InterpolationError as err:
                pytest.fail(f"`docker compose config` with {label}: service {name}: {err}")
        interpolate_model(raw, env)  # the whole file too (x- extension fields, volumes)


def test_the_default_command_starts_bot_and_agent_on_the_embedded_backends(raw: dict, tmp_path: Path) -> None:
    project = _project(tmp_path)
    model = interpolate_model(raw, read_env_file(project / ".env"))
    assert enabled_services(model) == {"bot", "agent"}
    assert enabled_services(model, ("multihost",)) == {"bot", "agent", "seaweedfs", "elasticmq"}
    for name in ("bot", "agent"):
        env = container_environment(model, name, project)
        assert env["BLOB_URL"].startswith("file:///data/"), (name, env["BLOB_URL"])
        assert env["QUEUE_URL"].startswith("sqlite:////data/"), (name, env["QUEUE_URL"])


def test_the_agent_container_is_not_given_the_discord_token(raw: dict, tmp_path: Path) -> None:
    dashboard = "d" * 40
    project = _project(tmp_path, f"DISCORD_TOKEN={TOKEN}\nDASHBOARD_TOKEN={dashboard}\n")
    model = interpolate_model(raw, read_env_file(project / ".env"))
    bot, agent = (container_environment(model, name, project) for name in ("bot", "agent"))
    assert bot["DISCORD_TOKEN"] == TOKEN and bot["DASHBOARD_TOKEN"] == dashboard
    assert TOKEN not in agent.values() and dashboard not in agent.values()


# --- required settings are checked by the services' own start-up --------------------------------------------


def _start_command(model: dict, service: str) -> list[str]:
    """The service's `command`, else its image's CMD (the Dockerfile it builds)."""
    spec = model["services"][service]
    if "command" in spec:
        return spec["command"]
    dockerfile = ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]
    cmd = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")][-1]
    return json.loads(cmd.removeprefix("CMD "))


def _container(model: dict, service: str, project: Path, tmp_path: Path, **overrides: str) -> dict:
    """The container's start-up as a process: `photogen` is this checkout's CLI, /data a folder, the
    environment the one Compose gives the service (plus `overrides`, each a stand-in the test names)."""
    data, shim = tmp_path / "volume", tmp_path / "bin"
    data.mkdir(exist_ok=True)
    shim.mkdir(exist_ok=True)
    (shim / "photogen").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m photogen.cli "$@"\n')
    (shim / "photogen").chmod(0o755)
    env = {
        key: value.replace("/data", str(data))
        for key, value in container_environment(model, service, project).items()
    }
    env |= {
        "PATH": f"{shim}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **overrides,
    }
    workdir = tmp_path / "app"  # the image's WORKDIR holds no .env
    workdir.mkdir(exist_ok=True)
    return {"args": _start_command(model, service), "cwd": workdir, "env": env}


def _start(model: dict, service: str, project: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        **_container(model, service, project, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _failure_lines(stderr: str) -> list[str]:
    """stderr less the log records (the migration logs its steps): what the process says about itself."""
    return [
        line
        for line in stderr.strip().splitlines()
        if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", line)
    ]


def test_the_bot_container_on_a_fresh_env_stops_with_one_line_naming_the_token(
    raw: dict, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    model = interpolate_model(raw, read_env_file(project / ".env"))
    done = _start(model, "bot", project, tmp_path)
    assert done.returncode != 0
    failures = _failure_lines(done.stderr)
    assert len(failures) == 1 and "DISCORD_TOKEN is not set" in failures[0], done.stderr
    assert done.stderr.strip().splitlines()[-1] == failures[0] and "Traceback" not in done.stderr
    assert (tmp_path / "volume" / "photogen.db").is_file()  # the schema is created on a fresh volume first


def test_aws_bootstrap_without_a_bucket_stops_with_one_line_naming_blob_url(
    raw: dict, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    model = interpolate_model(raw, read_env_file(project / ".env"))
    done = _start(model, "aws-bootstrap", project, tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "BLOB_URL" in lines[0] and "s3://" in lines[0], done.stderr


def test_the_multihost_s3_server_refuses_to_start_without_an_access_key(raw: dict, tmp_path: Path) -> None:
    project = _project(tmp_path)
    model = interpolate_model(raw, read_env_file(project / ".env"))
    env = container_environment(model, "seaweedfs", project)
    script = model["services"]["seaweedfs"]["command"][0].replace(
        "/etc/seaweedfs-s3.json", str(tmp_path / "s3")
    )
    done = subprocess.run(
        [*model["services"]["seaweedfs"]["entrypoint"], script],
        env=env | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "AWS_ACCESS_KEY_ID" in lines[0], done.stderr
    assert not (tmp_path / "s3").exists()


def test_the_agent_container_on_a_fresh_env_passes_its_own_healthcheck(raw: dict, tmp_path: Path) -> None:
    # Stand-ins: no GPU here, so DEVICE=cpu instead of the compose file's cuda; a free port instead of 9100.
    project = _project(tmp_path)
    model = interpolate_model(raw, read_env_file(project / ".env"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    container = _container(model, "agent", project, tmp_path, DEVICE="cpu", AGENT_METRICS_PORT=port)
    check = [part.replace("9100", port) for part in model["services"]["agent"]["healthcheck"]["test"][1:]]
    agent = subprocess.Popen(**container, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and agent.poll() is None:
            if (
                subprocess.run(
                    check, env=container["env"], capture_output=True, timeout=30, check=False
                ).returncode
                == 0
            ):
                break
            time.sleep(1)
        else:
            pytest.fail(
                f"the agent never became healthy: {agent.stderr.read() if agent.poll() is not None else ''}"
            )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
    assert agent.returncode == 0  # drained and stopped on SIGTERM, as `docker compose stop` asks
