"""Issue 11, "Trust", for the agent. Off EC2 it leaves the instance-metadata address alone unless told to poll
one, `python -m gpu_agent --help` prints help, and an agent without the ML stack refuses to start in one line;
a member never reads where the operators keep the base model."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_testkit import AgentThread, EventLog, agent_env, render_job

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent import Agent
from gpu_agent.agent.spot import EC2_IMDS_URL, imds_url_for, on_ec2
from storage.settings import Settings
from tests.gpu_agent.fake_imds import FakeImds


def _sys_file(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("sys/hypervisor/uuid", "ec2e1916-9099-7caf-fd21-012345abcdef", True),  # Xen instances
        ("sys/class/dmi/id/product_uuid", "EC2E1916-9099-7CAF-FD21-012345ABCDEF", True),  # Nitro
        ("sys/class/dmi/id/board_asset_tag", "i-0123456789abcdef0", True),
        ("sys/class/dmi/id/sys_vendor", "Amazon EC2", True),
        ("sys/class/dmi/id/sys_vendor", "QEMU", False),
        ("sys/class/dmi/id/product_uuid", "4c4c4544-0042-3510-8050-b4c04f4e4332", False),
    ],
)
def test_ec2_is_detected_from_sys(tmp_path: Path, relative: str, text: str, expected: bool) -> None:
    # A stand-in /sys tree: this machine is not an EC2 instance, so what one shows is written by the test.
    assert on_ec2(_sys_file(tmp_path, relative, text)) is expected
    assert on_ec2(tmp_path / "empty") is False


def test_the_ec2_address_is_polled_only_on_ec2(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    default = make_settings(imds_url=EC2_IMDS_URL)
    ec2_root = _sys_file(tmp_path / "ec2", "sys/class/dmi/id/sys_vendor", "Amazon EC2")
    assert imds_url_for(default, root=tmp_path / "laptop") == ""
    assert imds_url_for(default, root=ec2_root) == EC2_IMDS_URL
    forced = make_settings(imds_url=EC2_IMDS_URL, imds_mode="on")
    assert imds_url_for(forced, root=tmp_path / "laptop") == EC2_IMDS_URL
    assert imds_url_for(make_settings(imds_url=EC2_IMDS_URL, imds_mode="off"), root=ec2_root) == ""


def test_an_agent_off_ec2_never_calls_the_metadata_address(make_settings: Callable[..., Settings]) -> None:
    # This test machine is not EC2 (checked first, so the test means what it says).
    assert not on_ec2()
    agent = Agent(make_settings(imds_url=EC2_IMDS_URL))
    assert agent.spot.client is None
    assert agent.protection.imds is None and agent.protection.target() is None
    agent.start_services()
    try:
        assert not agent.spot._thread.is_alive()
    finally:
        agent.spot.stop()
        assert agent.health is not None
        agent.health.stop()


def test_a_configured_metadata_service_is_polled_and_off_turns_it_off(
    fake_imds: FakeImds, make_settings: Callable[..., Settings]
) -> None:
    polled = Agent(make_settings(imds_url=fake_imds.url, imds_poll_s=0.05))
    silent = Agent(make_settings(imds_url=fake_imds.url, imds_poll_s=0.05, imds_mode="off"))
    silent.spot.start()
    time.sleep(0.3)
    assert fake_imds.requests == []
    polled.spot.start()
    try:
        deadline = time.monotonic() + 5
        while polled.spot.instance_type is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert polled.spot.instance_type == "g5.xlarge"
    finally:
        polled.spot.stop()
        silent.spot.stop()


def test_help_prints_help_instead_of_starting_an_agent(tmp_path: Path, settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpu_agent", "--help"],
        check=False,
        env=agent_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m gpu_agent")
    assert "QUEUE_URL" in done.stdout and "SIGTERM" in done.stdout
    assert not (Path(settings.agent_work_dir)).exists()  # no agent started


def test_an_agent_without_the_ml_stack_refuses_to_start_in_one_line(
    tmp_path: Path, settings: Settings
) -> None:
    # Stand-in for a machine without torch (it cannot be uninstalled from the shared test environment): a
    # sitecustomize first on the path whose import finder answers "no module named torch", as a missing one
    # does.
    shadow = tmp_path / "no-torch"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n\n\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n\n\n"
        "sys.meta_path.insert(0, NoTorch())\n"
    )
    env = agent_env(settings)
    env["PYTHONPATH"] = f"{shadow}:{env['PYTHONPATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "gpu_agent"],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("photogen agent: the ML stack is missing (torch")
    assert "Traceback" not in done.stderr and not Path(settings.agent_work_dir).exists()


def test_a_missing_base_model_tells_the_member_nothing_of_the_machine(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    queues: Queues,
    events: EventLog,
    run_agent_thread: Callable[..., AgentThread],
) -> None:
    settings = make_settings(queue_max_receives=1)
    agent = run_agent_thread(settings, queues=queues)
    secret_path = str(tmp_path / "srv" / "operator-models" / "base")
    job = render_job(base_model=secret_path)
    queues.render.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 60, "failed")
    assert failed.error is not None and failed.error.code == "base_model"
    assert "operator-models" not in failed.error.message and "/" not in failed.error.message
    assert "could not load its base model" in failed.error.message
    agent.stop()
