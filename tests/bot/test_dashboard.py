"""The admin dashboard: its JSON figures against orders and events in a real SQLite store, cost accounting from real
Event messages, token protection over a real socket, the sampler on a real SQLite queue, the Prometheus collector."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from markupsafe import escape
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from bot import costs
from bot.dashboard import add_routes, auth, register_store_metrics, sample_once
from bot.dashboard.data import dashboard_data
from cloud.messages import ErrorInfo, Event
from cloud.queues import Queues, open_queues
from storage import metrics, migrate, open_engine, order_store, read_session, transaction
from storage.settings import Settings, load_settings

# 50 minutes into the hour before the current one: in the past (the HTTP side reads with the real clock) and
# fixed within an hour, so the per-hour buckets are known.
NOW = (time.time() // 3600) * 3600 - 3600 + 3000
TOKEN = "s3cret-dashboard-token-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/db.sqlite",
        queue_url=f"sqlite:///{tmp_path}/q.db",
        dashboard_token=TOKEN,
        self_hosted_gpu_price_per_hour=0.5,
    )


@pytest.fixture
def engine(settings: Settings):
    migrate(settings.database_url)
    eng = open_engine(settings.database_url)
    yield eng
    eng.dispose()


def _event(
    order_id: str,
    kind: str,
    *,
    job_kind: str = "render",
    seconds: float | None = 36.0,
    instance: str | None = "g5.xlarge",
    at: float = NOW - 600,
    agent: str = "agent-1",
    code: str | None = None,
) -> Event:
    return Event(
        job_id="job-" + order_id[:8],
        order_id=order_id,
        job_kind=job_kind,
        kind=kind,
        agent_id=agent,
        gpu_seconds=seconds,
        instance_type=instance,
        at=datetime.fromtimestamp(at, UTC),
        error=ErrorInfo(code=code, message="sorry") if code else None,
    )


def seed(engine: Engine, settings: Settings) -> dict[str, str]:
    """Two delivered renders, one trained-and-delivered training, one failed render; their done/failed events."""
    ids = {}
    with transaction(engine) as s:
        for name, kind, created in (
            ("r1", "render", NOW - 1800),
            ("r2", "render", NOW - 900),
            ("t1", "train", NOW - 3000),
            ("f1", "render", NOW - 1200),
        ):
            order = order_store.create_order(s, user_id=9, kind=kind)
            order.created_at = created
            ids[name] = order.id
    with transaction(engine) as s:
        for name, took in (("r1", 60), ("r2", 180), ("t1", 1500)):
            order_store.transition(s, ids[name], "delivered")
            order = order_store.get_order(s, ids[name])
            order.updated_at = order.created_at + took
        order_store.mark_failed(s, ids["f1"], "render_oom", "out of memory")
        events = [
            _event(ids["r1"], "done", seconds=36, at=NOW - 1740),  # g5.xlarge spot 0.42/h
            # A self-hosted agent (no instance type): SELF_HOSTED_GPU_PRICE_PER_HOUR, 0.5 here.
            _event(ids["r2"], "done", seconds=72, instance=None, at=NOW - 720, agent="home-box"),
            _event(ids["t1"], "done", job_kind="train", seconds=1200, at=NOW - 1500, agent="agent-2"),
            _event(ids["f1"], "failed", seconds=18, at=NOW - 1100, code="render_oom"),
            _event(ids["r1"], "progress", at=NOW - 1750),  # not a finished job: no usage
        ]
        for event in events:
            costs.record_event_cost(s, event, settings)
        assert not costs.record_event_cost(s, events[0], settings)  # the same event again: counted once
    with transaction(engine) as s:
        for k in range(5):
            at = NOW - 240 + 60 * k
            metrics.record_samples(
                s,
                [
                    ("queue_visible", {"queue": "render"}, k),
                    ("queue_in_flight", {"queue": "render"}, 1),
                    ("queue_dead_letters", {"queue": "render"}, 0),
                    ("fleet_agents", {}, 2),
                    ("fleet_desired", {"pool": "train"}, 1),
                    ("fleet_running", {"pool": "train"}, 1),
                ],
                at=at,
            )
    return ids


def test_event_costs_use_instance_prices_and_the_self_hosted_price(
    engine: Engine, settings: Settings
) -> None:
    ids = seed(engine, settings)
    with read_session(engine) as s:
        assert metrics.order_cost(s, ids["r1"]).cost_usd == pytest.approx(36 * 0.42 / 3600)
        assert metrics.order_cost(s, ids["r2"]).cost_usd == pytest.approx(72 * 0.5 / 3600)
        assert metrics.order_cost(s, ids["t1"]).cost_usd == pytest.approx(1200 * 0.42 / 3600)
        assert metrics.order_cost(s, ids["r1"]).jobs == 1
    assert costs.price_of(settings, "g4dn.xlarge").per_hour == 0.23
    assert costs.price_of(settings, "g4dn.xlarge", "on_demand").per_hour == 0.526
    unknown = costs.price_of(settings, "p5.48xlarge")
    assert unknown.per_hour == 0.5 and "unknown instance type" in unknown.source
    on_demand = load_settings(fleet_render_on_demand=True)
    assert (
        costs.market_of(on_demand, "render") == "on_demand" and costs.market_of(on_demand, "train") == "spot"
    )


def test_prices_file_setting_is_used(tmp_path: Path) -> None:
    table = tmp_path / "prices.json"
    table.write_text('{"instances": {"x.large": {"gpu": "X", "on_demand": 2.0, "spot": 1.5}}}')
    assert costs.price_of(load_settings(fleet_prices_file=str(table)), "x.large").per_hour == 1.5


def test_dashboard_json_figures(engine: Engine, settings: Settings) -> None:
    ids = seed(engine, settings)
    data = dashboard_data(engine, window_s=6 * 3600, now=NOW)
    assert data["jobs"] == {"finished": 4, "failed": 1}
    ttr = data["time_to_result"]
    assert ttr["render"] == {"count": 2, "p50_s": pytest.approx(120), "p95_s": pytest.approx(174)}
    assert ttr["train"] == {"count": 1, "p50_s": 1500, "p95_s": 1500}
    assert data["failures_by_code"] == {"render_oom": 1}
    hours = {h["hour"]: h for h in data["jobs_per_hour"]}
    this_hour, last_hour = NOW - NOW % 3600, NOW - NOW % 3600 - 3600
    assert (hours[this_hour]["render"], hours[this_hour]["train"], hours[this_hour]["failed"]) == (3, 1, 1)
    assert hours[last_hour]["render"] == 0 and len(hours) == 7
    cost = data["cost"]
    expected = (36 * 0.42 + 72 * 0.5 + 1200 * 0.42 + 18 * 0.42) / 3600
    assert cost["usd"] == pytest.approx(expected) and cost["jobs"] == 4 and cost["orders"] == 4
    assert cost["gpu_seconds"] == pytest.approx(36 + 72 + 1200 + 18)
    assert cost["mean_per_order_usd"]["train"] == pytest.approx(1200 * 0.42 / 3600)
    assert {row["order_id"] for row in cost["per_order"]} == set(ids.values())
    assert data["queue_depth"]["render"]["visible"] == [[NOW - 240 + 60 * k, k] for k in range(5)]
    assert data["fleet_size"]["agents"][-1] == [NOW, 2]
    assert data["fleet_size"]["train desired"][0] == [NOW - 240, 1]
    assert data["orders_by_status"] == {"render/delivered": 2, "render/failed": 1, "train/delivered": 1}


async def _client(settings: Settings, engine: Engine) -> TestClient:
    app = web.Application()
    add_routes(app, settings=settings, engine=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(settings: Settings, engine: Engine) -> AsyncIterator[TestClient]:
    seed(engine, settings)
    c = await _client(settings, engine)
    yield c
    await c.close()


async def test_no_token_configured_means_no_dashboard(
    tmp_path: Path, engine: Engine, settings: Settings
) -> None:
    off = settings.model_copy(update={"dashboard_token": None})
    c = await _client(off, engine)
    try:
        for path in ("/admin/dashboard", "/admin/dashboard.json", f"/admin/dashboard?token={TOKEN}"):
            resp = await c.get(path)
            assert resp.status == 404
            assert "set DASHBOARD_TOKEN" in await resp.text()
    finally:
        await c.close()


async def test_wrong_or_missing_token_is_refused(client: TestClient) -> None:
    resp = await client.get("/admin/dashboard.json")
    assert resp.status == 401 and "token required" in await resp.text()
    resp = await client.get("/admin/dashboard.json", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    resp = await client.get("/admin/dashboard.json", headers={"Authorization": f"Basic {TOKEN}"})
    assert resp.status == 401
    resp = await client.get("/admin/dashboard?token=nope", allow_redirects=False)
    assert resp.status == 403 and "set-cookie" not in resp.headers
    client.session.cookie_jar.update_cookies({"photogen_dashboard": TOKEN})  # the raw token is not the cookie
    assert (await client.get("/admin/dashboard.json")).status == 401


async def test_bearer_token_gives_json_and_page(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.get("/admin/dashboard.json", headers=auth)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert (await resp.json())["jobs"]["finished"] == 4
    resp = await client.get("/admin/dashboard", headers=auth)
    html = await resp.text()
    assert resp.status == 200 and "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert html.count('class="chart') == 8 and "<script" not in html
    assert (await client.get("/admin/dashboard.json?hours=abc", headers=auth)).status == 400


async def test_query_token_sets_an_httponly_cookie_and_redirects_without_it(client: TestClient) -> None:
    resp = await client.get(f"/admin/dashboard?token={TOKEN}&hours=2", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin/dashboard?hours=2"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    resp = await client.get("/admin/dashboard.json")  # the cookie jar now carries the session cookie
    assert resp.status == 200


def test_prometheus_collector_reads_the_store(engine: Engine, settings: Settings) -> None:
    seed(engine, settings)
    registry = CollectorRegistry()
    register_store_metrics(engine, registry, stale_after_s=86400)
    text = generate_latest(registry).decode()
    assert 'photogen_orders{kind="render",status="delivered"} 2.0' in text
    assert 'photogen_orders_failed{code="render_oom"} 1.0' in text
    assert 'photogen_jobs_finished_total{kind="render",outcome="failed"} 1.0' in text
    assert 'photogen_gpu_seconds_total{kind="train"} 1200.0' in text
    assert 'photogen_estimated_cost_usd_total{kind="train"} 0.14' in text
    assert 'photogen_queue_messages{queue="render",state="visible"} 4.0' in text
    assert "photogen_fleet_agents 2.0" in text
    # With the default staleness (10 min) the seeded samples (over 10 min old) are not reported as current.
    fresh_only = CollectorRegistry()
    register_store_metrics(engine, fresh_only)
    text = generate_latest(fresh_only).decode()
    assert "\nphotogen_queue_messages{" not in text and "\nphotogen_fleet_agents " not in text
    assert 'photogen_orders{kind="render",status="delivered"} 2.0' in text


def _queues(settings: Settings) -> Queues:
    return open_queues(settings)


def test_sampler_records_real_queue_depths_and_agents(engine: Engine, settings: Settings) -> None:
    queues = _queues(settings)
    try:
        queues.train.send("{}")
        queues.train.send("{}")
        queues.render.receive(1)  # nothing there
        lease = queues.events.send("{}") and queues.events.receive(1, lease_s=60)[0]
        queues.events.dead_letter(lease, "malformed")
        written = sample_once(
            settings, engine, queues, agents_seen={"live-agent": NOW, "gone": NOW - 3600}, now=NOW
        )
        assert written == 10
        with read_session(engine) as s:
            assert metrics.latest(s, "queue_visible")["queue=train"] == (NOW, 2.0)
            assert metrics.latest(s, "queue_dead_letters")["queue=events"] == (NOW, 1.0)
            assert metrics.latest(s, "fleet_agents") == {"": (NOW, 1.0)}
        # Samples past retention are deleted by a later round.
        sample_once(settings, engine, queues, now=NOW + settings.metrics_retention_days * 86400 + 1)
        with read_session(engine) as s:
            assert min(at for at, _ in metrics.series(s, "queue_visible", 0)["queue=train"]) > NOW
    finally:
        queues.close()


def test_admin_queue_text(engine: Engine, settings: Settings) -> None:
    seed(engine, settings)
    queues = _queues(settings)
    try:
        queues.render.send("{}")
        text = costs.queue_status_text(settings, engine, queues, {"agent-9": NOW - 10}, now=NOW)
    finally:
        queues.close()
    lines = text.splitlines()
    assert lines[0] == "train: 0 waiting, 0 in flight, 0 dead letters"
    assert lines[1] == "render: 1 waiting, 0 in flight, 0 dead letters"
    assert "agents active (last 5 min): 1 (agent-9)" in text
    today = (36 * 0.42 + 72 * 0.5 + 1200 * 0.42 + 18 * 0.42) / 3600
    assert f"cost today (UTC): ${today:.2f} for 4 jobs" in text
    assert "train $0.140" in text and "render $" in text


def test_long_windows_are_thinned_and_bucketed_by_day(engine: Engine, settings: Settings) -> None:
    from sqlalchemy import insert

    from bot.dashboard.data import MAX_POINTS
    from storage.models import MetricSample

    # Two days of 30 s samples with one spike: thinning keeps at most MAX_POINTS points, and the spike.
    rows = [
        {
            "at": NOW - 2 * 86400 + 30 * k,
            "name": "queue_visible",
            "labels": "queue=train",
            "value": 99.0 if k == 1234 else 1.0,
        }
        for k in range(2 * 2880)
    ]
    with transaction(engine) as s:
        s.execute(insert(MetricSample), rows)
    week = dashboard_data(engine, window_s=7 * 86400, now=NOW)
    points = week["queue_depth"]["train"]["visible"]
    assert len(points) <= MAX_POINTS and max(v for _, v in points) == 99.0
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    days = week["jobs_per_hour"]
    assert len(days) == 8 and days[1]["hour"] - days[0]["hour"] == 86400


async def test_hostile_error_codes_and_model_names_are_escaped_in_the_page(
    engine: Engine, settings: Settings
) -> None:
    """The page's template is autoescaped: an error code and a member's model name (the likeness chart's label)
    that are markup show as text, in the chart labels, the bar tooltips and nowhere as tags."""
    hostile_code, hostile_name = '<img src=x onerror="alert(1)">', "<script>alert(2)</script>"
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=3, kind="render")
        order_store.mark_failed(s, order.id, hostile_code, "nope")
        model = order_store.add_model(
            s, user_id=3, name=hostile_name, class_word="man", subject_token="sks", base_model="tiny-sd"
        )
        scored = order_store.create_order(s, user_id=3, kind="render", guild_id="7", model_id=model.id)
        order_store.add_image(
            s,
            scored.id,
            order_store.NewImage(
                blob_key=f"users/3/renders/{scored.id}/0.png",
                index=0,
                likeness_verdict="fair",
                likeness_score=0.5,
                likeness_tries=1,
            ),
        )
    c = await _client(settings, engine)
    try:
        html = await (await c.get("/admin/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})).text()
    finally:
        await c.close()
    assert "<img src=x" not in html and "<script" not in html
    assert str(escape(hostile_code[:14])) in html  # the x-axis label (first 14 characters)
    assert f"<title>{escape(hostile_code)}: 1</title>" in html  # the bar's tooltip, whole
    assert f"{escape(hostile_name[:18])} (median 0.50)" in html  # the likeness chart's label


async def test_a_sample_round_samples_and_refreshes_the_scrape_copy(
    engine: Engine, settings: Settings
) -> None:
    from bot.dashboard import sample_round

    registry = CollectorRegistry()
    collector = register_store_metrics(engine, registry)
    assert (
        "\nphotogen_orders{" not in generate_latest(registry).decode()
    )  # read now, and kept for next scrapes
    with transaction(engine) as s:
        order_store.create_order(s, user_id=4, kind="render")
    assert "\nphotogen_orders{" not in generate_latest(registry).decode()  # served from the copy
    queues = _queues(settings)
    try:
        await sample_round(settings, engine, queues, collector=collector)
        scraped = generate_latest(registry).decode()
        assert 'photogen_orders{kind="render",status="created"} 1.0' in scraped
        assert 'photogen_queue_messages{queue="train",state="visible"} 0.0' in scraped
    finally:
        queues.close()


def test_an_agent_clock_in_the_future_is_clamped_to_now(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=5, kind="render")
        assert costs.record_event_cost(s, _event(order.id, "done", at=time.time() + 86400), settings)
    with read_session(engine) as s:
        assert metrics.cost_summary(s, time.time() - 60, time.time()).jobs == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _login_cookie(resp) -> str:
    return resp.cookies[auth.COOKIE].value


async def test_sessions_are_random_and_expire(client: TestClient) -> None:
    clock = _Clock()
    client.app[auth.APP_KEY].clock = clock  # type: ignore[index]
    first = await client.get(f"/admin/dashboard?token={TOKEN}", allow_redirects=False)
    second = await client.get(f"/admin/dashboard?token={TOKEN}", allow_redirects=False)
    a, b = _login_cookie(first), _login_cookie(second)
    assert a != b and len(a) >= 40 and TOKEN not in a  # random ids, not a function of the token
    assert f"Max-Age={int(auth.SESSION_TTL_S)}" in first.headers["Set-Cookie"]
    assert (await client.get("/admin/dashboard.json")).status == 200
    clock.now += auth.SESSION_TTL_S + 1
    resp = await client.get("/admin/dashboard.json")
    assert resp.status == 401, "an expired session opens nothing"


async def test_failed_logins_are_throttled(client: TestClient) -> None:
    clock = _Clock()
    client.app[auth.APP_KEY].clock = clock  # type: ignore[index]
    for n in range(auth.MAX_FAILURES):
        resp = await client.get("/admin/dashboard.json", headers={"Authorization": f"Bearer guess-{n}"})
        assert resp.status == 401
    # Now even the right token waits: guessing gets a handful of tries per window.
    resp = await client.get("/admin/dashboard.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert (await client.get(f"/admin/dashboard?token={TOKEN}", allow_redirects=False)).status == 429
    clock.now += auth.FAILURE_WINDOW_S + 1
    resp = await client.get("/admin/dashboard.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
