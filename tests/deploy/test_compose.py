"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (none runs here).

CI additionally runs the images' install step (docker/install.sh) in fresh virtual environments.
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest
import yaml

from photogen.cli import build_parser, main
from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_bot_and_agent_services_share_one_volume(compose: dict) -> None:
    services = compose["services"]
    assert {"bot", "agent"} <= set(services)
    for name in ("bot", "agent"):
        mounts = services[name]["volumes"]
        assert "photogen-data:/data" in mounts, name
    assert "photogen-data" in compose["volumes"]


def test_agent_reserves_an_nvidia_gpu(compose: dict) -> None:
    devices = compose["services"]["agent"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]


def test_build_contexts_and_dockerfiles_exist(compose: dict) -> None:
    built = [s for s in compose["services"].values() if "build" in s]
    assert len(built) >= 2
    for service in built:
        context = ROOT / service["build"]["context"]
        dockerfile = context / service["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (context / src).exists(), f"{dockerfile.name}: COPY source {src} missing"


def test_every_environment_name_is_a_setting(compose: dict) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        for key in keys:
            if key.startswith("<<"):
                continue
            if name in ("seaweedfs", "elasticmq"):
                continue
            assert key in SETTING_NAMES, f"service {name}: {key} is not a field of storage/settings.py"


def test_env_example_names_are_settings() -> None:
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    assert names, ".env.example lists no settings"
    unknown = set(names) - SETTING_NAMES
    assert not unknown, f".env.example names unknown settings: {sorted(unknown)}"


def test_profiles_for_multihost_and_aws(compose: dict) -> None:
    services = compose["services"]
    assert services["seaweedfs"]["profiles"] == ["multihost"]
    assert services["elasticmq"]["profiles"] == ["multihost"]
    assert services["aws-bootstrap"]["profiles"] == ["aws"]
    assert services["aws-bootstrap"]["command"][:3] == ["photogen", "aws", "bootstrap"]


def test_healthcheck_commands_exist(compose: dict) -> None:
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    checked = 0
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if not test:
            continue
        assert test[0] == "CMD"
        assert test[1] == "photogen", f"{name}: healthcheck runs {test[1]}, which the image does not install"
        assert test[2] in subcommands, f"{name}: photogen has no subcommand {test[2]}"
        checked += 1
    assert checked == 2
    for line in (ROOT / "docker" / "bot.Dockerfile").read_text().splitlines():
        if line.startswith("CMD"):
            assert '"photogen"' in line


def test_healthcheck_subcommand_against_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert main(["healthcheck", f"http://127.0.0.1:{port}/healthz"]) == 0
        assert main(["healthcheck", f"http://127.0.0.1:{port}/broken"]) == 1
    finally:
        server.shutdown()
    server.server_close()
    assert main(["healthcheck", f"http://127.0.0.1:{port}/healthz", "--timeout", "1"]) == 1
    assert main(["healthcheck", "not a url"]) == 1


# --- issue 11, "Trust": the multihost servers are private by default and need credentials -------------------

_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?])(?P<arg>[^}]*)\}")


def _host_part(mapping: str) -> str:
    """The host address of a "HOST:PUBLISHED:TARGET" port mapping, ${VAR:-default} resolved to its default."""
    resolved = _VAR.sub(lambda m: m["arg"] if m["op"].endswith("-") else "", mapping)
    parts = resolved.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""  # "8333:8333" or "8333" publish on every interface


def test_no_port_is_published_on_every_interface(compose: dict) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert isinstance(mapping, str), (name, mapping)
            host = _host_part(mapping)
            assert host == "127.0.0.1", f"service {name} publishes {mapping!r} beyond loopback by default"


def test_multihost_bind_address_is_a_single_variable_defaulting_to_loopback(compose: dict) -> None:
    for name in ("seaweedfs", "elasticmq"):
        for mapping in compose["services"][name]["ports"]:
            match = _VAR.match(mapping)
            assert match and match["name"] == "MULTIHOST_BIND_ADDRESS", mapping
            assert match["arg"] == "127.0.0.1", mapping


def test_the_s3_server_takes_the_keys_from_the_settings_with_no_default(compose: dict) -> None:
    # No ${VAR:?…}: Compose would interpolate it for the default command too (tests/deploy/test_compose_config.py);
    # the server's own start-up refuses a missing key instead.
    env = compose["services"]["seaweedfs"]["environment"]
    for key, variable in (("S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"), ("S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")):
        match = _VAR.fullmatch(env[key])
        assert match and match["name"] == variable and match["op"] == ":-" and match["arg"] == "", (
            key,
            env[key],
        )
    assert "-s3.config=" in compose["services"]["seaweedfs"]["command"][0]


def _seaweed_script(compose: dict, config: Path) -> str:
    script = compose["services"]["seaweedfs"]["command"][0].replace("$$", "$")  # compose's escape
    return script.replace("/etc/seaweedfs-s3.json", str(config))


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("", "at least 32 characters"),
        ("short-secret", "at least 32 characters"),
        ("x" * 32 + '","actions":["Admin"]}', "letters, digits"),
    ],  # a key must not write its own JSON
)
def test_the_s3_server_refuses_to_start_with_a_weak_secret(
    compose: dict, tmp_path: Path, secret: str, why: str
) -> None:
    import subprocess

    config = tmp_path / "s3.json"
    done = subprocess.run(
        ["/bin/sh", "-c", _seaweed_script(compose, config)],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "S3_ACCESS_KEY": "photogen", "S3_SECRET_KEY": secret},
        timeout=30,
    )
    assert done.returncode != 0 and why in done.stderr
    assert not config.exists()


def test_the_s3_server_gets_exactly_one_identity_from_the_keys(compose: dict, tmp_path: Path) -> None:
    # No Docker engine here: the service's shell script runs under /bin/sh with a stand-in `weed` that only
    # records its arguments, and the S3 identity file it wrote is read back.
    import json
    import subprocess

    config, fake_bin = tmp_path / "s3.json", tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "weed").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n')
    (fake_bin / "weed").chmod(0o755)
    secret = "k" * 20 + "-not/so+simple=" + "z" * 12
    done = subprocess.run(
        ["/bin/sh", "-c", _seaweed_script(compose, config)],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "S3_ACCESS_KEY": "photogen-agent", "S3_SECRET_KEY": secret},
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    identities = json.loads(config.read_text())["identities"]
    assert len(identities) == 1 and identities[0]["credentials"] == [
        {"accessKey": "photogen-agent", "secretKey": secret}
    ]
    assert "anonymous" not in config.read_text()
    assert f"-s3.config={config}" in (fake_bin / "args").read_text()
