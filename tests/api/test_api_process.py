"""`photogen api` as its own process: migrates, serves the document on 127.0.0.1 (the default bind address),
answers a key made by `photogen api-keys create`, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_photogen_api_serves_on_loopback_and_stops_on_sigterm(tmp_path: Path) -> None:
    assert Settings.model_fields["api_host"].default == "127.0.0.1"
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/photogen.db",
        "QUEUE_URL": f"sqlite:///{tmp_path}/queue.db",
        "BLOB_URL": f"file://{tmp_path}/blobs",
        "API_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("API_HOST", None)
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "photogen.cli",
            "api-keys",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "orders:read",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([sys.executable, "-m", "photogen.cli", "api", "--migrate"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=2) as resp:
                    assert resp.status == 200 and b'"openapi": "3.1.0"' in resp.read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "photogen api did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/webhooks/deliveries", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("an orders:read key listed the deliveries")
        except urllib.error.HTTPError as err:
            assert err.code == 403 and b"missing_scope" in err.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
