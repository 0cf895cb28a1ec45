"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1 that a test flips to "terminate".

It stands in for what cannot exist here (a real spot interruption). It enforces IMDSv2 like the real one: a
metadata GET without a token from ``PUT /latest/api/token`` (with the TTL header) gets 401.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """An agent that exits (drained) mid-poll closes its socket; that is not the fake's error."""


class FakeImds:
    def __init__(self, instance_type: str = "g5.xlarge", instance_id: str | None = None) -> None:
        self.instance_type = instance_type
        self.instance_id = instance_id
        self.action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.unauthorized = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token" or not ttl or not ttl.isdigit():
                    self._reply(400, "missing or bad X-aws-ec2-metadata-token-ttl-seconds")
                    return
                token = secrets.token_urlsafe(24)
                fake.tokens.add(token)
                self._reply(200, token)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
                    fake.unauthorized += 1
                    self._reply(401, "")
                    return
                path = self.path.removeprefix("/latest/meta-data/")
                body: Any = None
                if path == "spot/instance-action":
                    body = fake.action
                elif path == "events/recommendations/rebalance":
                    body = fake.rebalance
                elif path == "instance-type":
                    body = fake.instance_type
                elif path == "instance-id":
                    body = fake.instance_id
                if body is None:
                    self._reply(404, "Not Found")
                else:
                    self._reply(200, body if isinstance(body, str) else json.dumps(body))

            def _reply(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeImds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def terminate(self, in_s: int = 120) -> None:
        """Post a spot interruption notice, as AWS does two minutes before the end."""
        when = datetime.now(UTC) + timedelta(seconds=in_s)
        self.action = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def recommend_rebalance(self) -> None:
        self.rebalance = {"noticeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
