"""Every command the README tells a newcomer to run is run here or by CI (.ci/run runs ./scripts/test and
./scripts/demo). Docker commands cannot run without an engine: they are checked against docker-compose.yml."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from pydantic import SecretStr

from photogen.cli import build_parser
from storage.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", text, re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_readme_names_the_two_quickstart_commands_and_ci_runs_them() -> None:
    commands = readme_commands()
    assert ["./scripts/demo"] in commands and ["./scripts/test"] in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in ci and "./scripts/demo" in ci
    for script in ("scripts/demo", "scripts/test", "scripts/setup"):
        assert os.access(ROOT / script, os.X_OK), script


def test_every_readme_command_is_known() -> None:
    parser = build_parser()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    seen = set()
    for argv in readme_commands():
        if argv[0] == "photogen":
            parser.parse_args(argv[1:])  # exits (fails the test) on an unknown subcommand or option
            seen.add(argv[1])
        elif argv[:2] == ["docker", "compose"]:
            for i, word in enumerate(argv):
                if word == "--profile":
                    assert argv[i + 1] in profiles, argv
            assert argv[-2:] == ["up", "-d"], argv
        else:
            assert argv[0] in ("./scripts/demo", "./scripts/test"), (
                f"README command not covered by a test: {argv}"
            )
    assert {"doctor", "migrate", "all", "aws", "autoscaler"} <= seen
    order = [argv[1] for argv in readme_commands() if argv[0] == "photogen"]
    assert order.index("migrate") < order.index("doctor")  # a first doctor run is not a false failure


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "photogen.cli", *argv],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_doctor_then_migrate_then_doctor(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "QUEUE_URL": f"sqlite:///{tmp_path}/q.db",
        "BLOB_URL": f"file://{tmp_path}/blobs",
        "DISCORD_TOKEN": "",
        "BASE_MODEL": str(tmp_path / "no-model"),
    }
    env.pop("DISCORD_TOKEN")
    first = _run(["doctor", "--offline"], env)
    assert first.returncode == 1
    assert "[FAIL] database" in first.stdout and "photogen migrate" in first.stdout
    assert "[FAIL] discord: DISCORD_TOKEN is not set" in first.stdout
    assert "[FAIL] base model" in first.stdout and "model_index.json" in first.stdout
    assert "[ok  ] blobs" in first.stdout and "[ok  ] queues" in first.stdout
    migrated = _run(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    second = _run(["doctor", "--offline"], {**env, "BASE_MODEL": "tiny-sd"})
    assert "[ok  ] database" in second.stdout
    assert "[warn] base model: tiny-sd" in second.stdout and "draws noise" in second.stdout


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _run(["migrate"], {"QUEUE_URL": "redis://nope"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "QUEUE_URL" in result.stderr


async def test_photogen_all_connects_to_discord_and_stops_on_sigterm(tmp_path: Path) -> None:
    from photogen.discord_sim import DiscordSim

    async with DiscordSim() as sim:
        sim.add_channel(sim.add_guild("Readme"), "studio")
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path}/p.db",
            queue_url=f"sqlite:///{tmp_path}/q.db",
            blob_url=f"file://{tmp_path}/blobs",
            discord_api_base=sim.api_base,
            discord_gateway_url=sim.gateway_url,
            discord_token=SecretStr(sim.token),
            bot_http_port=0,
            agent_metrics_port=0,
            agent_work_dir=str(tmp_path / "agent"),
            model_cache_dir=str(tmp_path / "models"),
        )
        proc = subprocess.Popen(  # noqa: ASYNC220 - starts `photogen all` and returns; the test stops it
            [sys.executable, "-m", "photogen.cli", "all"],
            env={**os.environ, **settings.to_env()},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await sim.wait_for_bot(timeout=60)
            await sim.wait_until(lambda: sim.sync_count >= 1, timeout=30)
            await asyncio.sleep(2)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        assert "/healthz and /metrics on port" in text  # the agent started too
        assert sim.token not in text  # the token never reaches a log


def test_aws_commands_against_moto(moto_endpoint: str, unique_name: str) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    env = {
        "BLOB_URL": f"s3://{unique_name}",
        "QUEUE_URL": "sqs://",
        "QUEUE_PREFIX": unique_name,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "FLEET_NAME": unique_name,
        "FLEET_AMI_ID": ec2.describe_images()["Images"][0]["ImageId"],
        "FLEET_SUBNET_IDS": f'["{subnet}"]',
        "FLEET_AGENT_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/photogen-agent:0.1.0",
    }
    boot = _run(["aws", "bootstrap"], env)
    assert boot.returncode == 0, boot.stderr
    assert f"auto scaling group {unique_name}-train" in boot.stdout
    once = _run(["autoscaler", "--once"], env)
    assert once.returncode == 0, once.stderr
    assert "autoscaler train: hold 0" in once.stderr
    status = _run(["aws", "status"], env)
    assert status.returncode == 0 and "pool train: desired 0" in status.stdout, status.stdout + status.stderr


@pytest.mark.parametrize("argv", [["aws", "bootstrap"], ["autoscaler", "--once"]])
def test_aws_commands_refuse_without_s3(argv: list[str], tmp_path: Path) -> None:
    result = _run(argv, {"BLOB_URL": f"file://{tmp_path}/b", "QUEUE_URL": f"sqlite:///{tmp_path}/q.db"})
    assert result.returncode != 0
    assert "BLOB_URL must be s3://" in result.stderr


def test_teardown_without_yes_and_without_a_terminal_deletes_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "photogen.cli", "aws", "teardown"],
        cwd=ROOT,
        env={**os.environ, "BLOB_URL": "s3://nothing-here", "QUEUE_URL": "sqs://"},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "nothing deleted" in result.stdout


def test_demo_refuses_an_out_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("not the demo's")
    result = _run(["demo", "--out", str(tmp_path)], {})
    assert result.returncode != 0
    assert "was not made by the demo" in result.stderr
    assert (tmp_path / "data" / "precious.txt").read_text() == "not the demo's"
