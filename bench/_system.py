"""The whole system across processes for bench/chaos.py: moto's server behind a fault-injecting HTTP proxy, a
fake instance-metadata service per agent (spot notices), and the `photogen bot` / `photogen agent` processes.

Stand-ins only for what cannot exist here: moto for S3/SQS (real HTTP, real boto3 with its standard retry
mode), the proxy for AWS's 5xx/throttling answers, the fake IMDS for EC2's spot interruption notice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
from aiohttp import web

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "content-encoding",
    "upgrade",
}


def start_moto() -> tuple[object, str]:
    """moto's ThreadedMotoServer on 127.0.0.1 (an ephemeral port) and its URL."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto accepts any; the processes inherit them
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _fault_body(kind: str, json_protocol: bool, s3: bool) -> tuple[int, str, str]:
    """(status, content type, body) of a retryable AWS error the SDK recognises."""
    request_id = secrets.token_hex(8)
    if kind == "throttle":
        code, status, message = (
            ("SlowDown", 503, "Please reduce your request rate.")
            if s3
            else ("ThrottlingException", 400, "Rate exceeded")
        )
    else:
        status = 500 if kind == "500" else 503
        code = "InternalError" if s3 else ("InternalFailure" if status == 500 else "ServiceUnavailable")
        message = "We encountered an internal error. Please try again."
    if json_protocol:
        return (
            status,
            "application/x-amz-json-1.0",
            json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}),
        )
    if s3:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId></Error>"
        )
    else:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return status, "text/xml", body


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of moto that answers a share of requests with an AWS error
    instead of forwarding them: HTTP 500, 503, or throttling (S3 ``SlowDown`` 503, SQS
    ``ThrottlingException``). Seeded, so the sequence of decisions is reproducible. Runs its own event loop in
    a thread."""

    KINDS = ("500", "503", "throttle")

    def __init__(self, target: str, share: float, seed: int) -> None:
        self.target = target.rstrip("/")
        self.share = share
        self._rng = random.Random(seed)
        self.faults: Counter[str] = Counter()
        self.forwarded = 0
        self.enabled = True
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            json_protocol = "x-amz-json" in request.headers.get("Content-Type", "")
            s3 = (
                not json_protocol
                and "X-Amz-Target" not in request.headers
                and not _is_sqs_query(body, request)
            )
            if self.enabled and self._rng.random() < self.share:
                kind = self._rng.choice(self.KINDS)
                self.faults[f"{'s3' if s3 else 'sqs'}_{kind}"] += 1
                status, ctype, text = _fault_body(kind, json_protocol, s3)
                return web.Response(
                    status=status,
                    body=text.encode(),
                    content_type=None,
                    headers={"Content-Type": ctype, "x-amz-request-id": "chaos"},
                )
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
                )
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            async with self._session.request(
                request.method,
                self.target + request.path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                data = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
                if "Content-Encoding" in upstream.headers:
                    out["Content-Encoding"] = upstream.headers["Content-Encoding"]
            self.forwarded += 1
            return web.Response(status=upstream.status, body=data, headers=out)

        async def start() -> None:
            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            self._runner = runner
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


def _is_sqs_query(body: bytes, request: web.Request) -> bool:
    return (
        request.method == "POST"
        and b"Action=" in body[:200]
        and "Version=" in body[:400].decode(errors="ignore")
    )


class SpotImds:
    """A minimal EC2 instance-metadata service (IMDSv2: token first) for one agent; ``interrupt()`` posts the
    spot interruption notice AWS gives two minutes before the end."""

    def __init__(self) -> None:
        self.action: dict[str, str] | None = None
        self._tokens: set[str] = set()
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path != "/latest/api/token" or not self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    return self._reply(400, "bad token request")
                token = secrets.token_urlsafe(16)
                imds._tokens.add(token)
                self._reply(200, token)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") not in imds._tokens:
                    return self._reply(401, "")
                if self.path == "/latest/meta-data/spot/instance-action" and imds.action is not None:
                    return self._reply(200, json.dumps(imds.action))
                self._reply(404, "Not Found")

            def _reply(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def interrupt(self, in_s: int = 120) -> None:
        when = datetime.now(UTC) + timedelta(seconds=in_s)
        self.action = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    imds: SpotImds | None = None

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            os.killpg(self.popen.pid, sig)


@dataclass
class Processes:
    """`photogen` processes started with one environment (the settings' own env form)."""

    env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    _n: Counter[str] = field(default_factory=Counter)

    def spawn(self, kind: str, imds: SpotImds | None = None, **extra: str) -> Proc:
        self._n[kind] += 1
        name = f"{kind}{self._n[kind]}"
        log = self.tmp / f"{name}.log"
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
        if imds is not None:
            env["IMDS_URL"] = imds.url
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "photogen.cli", kind],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, imds)
        self.procs.append(proc)
        return proc

    def live(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(kind) and p.alive]

    def stop_all(self, timeout: float = 20) -> None:
        for proc in self.procs:
            if proc.alive:
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill(signal.SIGKILL)
                proc.popen.wait()
            if proc.imds is not None:
                proc.imds.stop()
