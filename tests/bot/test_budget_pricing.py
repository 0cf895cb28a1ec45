"""The price of an estimate: the pool that will run the job, at today's price table and market
(bot/services/budget.pool_price), and the wording of amounts and follow-up shapes."""

from __future__ import annotations

from bot.services import budget
from storage.budget import JobShape, Measured
from storage.settings import load_settings

NEVER_RAN = Measured(10.0, 0, False, None)


def test_pool_price_follows_the_pool_that_ran_the_kind_last_else_the_fleet_else_self_hosted() -> None:
    home = load_settings(self_hosted_gpu_price_per_hour=0.25)
    assert budget.pool_price(home, "render", NEVER_RAN).per_hour == 0.25  # no fleet: a self-hosted agent
    fleet = load_settings(fleet_agent_image="img:1", fleet_render_on_demand=True)
    # Nothing ran yet: the dearest type of the pool (any may be picked), on the pool's market.
    assert budget.pool_price(fleet, "render", NEVER_RAN).source == "g5.xlarge on_demand"
    assert budget.pool_price(fleet, "train", NEVER_RAN).source == "g5.2xlarge spot"  # training is spot
    ran_on_g4dn = Measured(10.0, 3, True, "g4dn.xlarge")
    assert budget.pool_price(fleet, "train", ran_on_g4dn).per_hour == 0.23
    assert budget.pool_price(fleet, "render", ran_on_g4dn).per_hour == 0.526
    ran_at_home = Measured(10.0, 3, True, None)
    assert budget.pool_price(fleet, "render", ran_at_home).source == "self-hosted"


def test_quote_amounts_and_followup_shapes() -> None:
    quote = budget.Quote(JobShape("train"), 1800.0, 0.42, "g5.xlarge spot", 3)
    assert quote.amount("usd") == 0.21 and quote.amount("gpu_hours") == 0.5
    assert (budget.fmt(4.1, "usd"), budget.fmt(0.004, "usd"), budget.fmt(1.25, "gpu_hours")) == (
        "$4.10",
        "$0.004",
        "1.25 GPU-hours",
    )
    settings = load_settings(render_steps=30)
    parent = {"mode": "txt2img", "count": 4, "width": 768, "height": 1280}
    up = budget.followup_shape(settings, parent, "up")
    assert (up.mode, up.count, up.width, up.height) == ("upscale", 1, 1536, 2048)
    var = budget.followup_shape(settings, parent, "var")
    assert (var.mode, var.count, var.width) == ("variation", 4, 768)
    group = budget.followup_shape(settings, {**parent, "mode": "group", "group": {"people": 3}}, "var")
    assert (group.mode, group.people, group.count) == ("group", 3, 4)
    assert budget.describe(up) == "upscale" and budget.describe(var) == "set of 4 pictures"
