"""Entry points behind `photogen autoscaler` and `photogen aws …`."""

from __future__ import annotations

import logging
import time
from typing import Any

import boto3

from cloud.fleet import aws
from cloud.fleet.pricing import load_prices
from cloud.fleet.scaling import LIVE_STATES, Pool, autoscale_once, policies
from storage.settings import Settings

log = logging.getLogger(__name__)
ROUND_S = 30.0


def _asg(settings: Settings) -> Any:
    return boto3.client(
        "autoscaling", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    )


def build_pools(settings: Settings) -> list[Pool]:
    """The auto scaling groups the autoscaler scales: training's only when trainings do not run on AWS Batch."""
    from cloud.queues import open_queues

    queues = open_queues(settings)
    names = aws.names_from(settings)
    pol = policies(settings)
    pools = [Pool(pol["render"], names.group("render"), queues.render)]
    if settings.fleet_train_backend == "autoscaling":
        pools.insert(0, Pool(pol["train"], names.group("train"), queues.train))
    return pools


def run_autoscaler(settings: Settings, once: bool = False, dry_run: bool = False) -> int:
    asg = _asg(settings)
    pools = build_pools(settings)
    batch = aws.client(settings, "batch") if settings.fleet_train_backend == "batch" else None
    train_queue = None
    if batch is not None:
        from cloud.queues import open_queues

        train_queue = open_queues(settings).train
    while True:
        started = time.monotonic()
        try:
            autoscale_once(asg, pools, dry_run=dry_run)
            if batch is not None and train_queue is not None and not dry_run:
                from cloud.fleet.batch import submit_backlog

                submit_backlog(batch, settings, train_queue)
        except Exception:
            log.exception("autoscaler round failed; trying again next round")
            if once:
                return 1
        if once:
            return 0
        time.sleep(max(0.0, ROUND_S - (time.monotonic() - started)))


def status_lines(settings: Settings) -> list[str]:
    from cloud.queues import open_queues

    names = aws.names_from(settings)
    queues = open_queues(settings)
    prices = load_prices()
    lines = []
    for q in (queues.train, queues.render, queues.events):
        d = q.depth()
        lines.append(
            f"queue {q.name}: {d.visible} waiting, {d.in_flight} in flight, {q.dead_letter_depth()} dead letters"
        )
    asg = _asg(settings)
    hourly = 0.0
    for pool in ("train", "render"):
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group(pool)])[
            "AutoScalingGroups"
        ]
        if not groups:
            lines.append(f"pool {pool}: no auto scaling group (run `photogen aws bootstrap`)")
            continue
        g = groups[0]
        live = [i for i in g.get("Instances", []) if i["LifecycleState"] in LIVE_STATES]
        for inst in live:
            price = prices.get(inst.get("InstanceType", ""))
            if price:
                market = "on_demand" if pool == "render" and settings.fleet_render_on_demand else "spot"
                hourly += price.on_demand if market == "on_demand" else price.spot
        activities = asg.describe_scaling_activities(AutoScalingGroupName=names.group(pool), MaxRecords=100)
        interruptions = sum(
            1
            for a in activities.get("Activities", [])
            if "spot" in (a.get("Cause", "") + a.get("Description", "")).lower()
            and "terminat" in (a.get("Cause", "") + a.get("Description", "")).lower()
        )
        lines.append(
            f"pool {pool}: desired {g['DesiredCapacity']}, running {len(live)}, busy "
            f"{sum(1 for i in live if i.get('ProtectedFromScaleIn'))}, spot interruptions (recent) {interruptions}"
        )
    lines.append(
        f"spend estimate: ${hourly:.2f}/hour now, ${hourly * 24:.2f}/day at this size (prices: cloud/fleet/prices.json)"
    )
    return lines


def run_aws(settings: Settings, action: str, yes: bool = False, batch: bool = False) -> int:
    if action == "bootstrap":
        report = aws.bootstrap(settings, batch=batch)
    elif action == "teardown":
        if not yes:
            try:
                answer = input(
                    f"Delete the {settings.fleet_name} agent groups, launch template and IAM role? [y/N] "
                )
            except EOFError:  # no terminal to ask: never delete without a yes
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        report = aws.teardown(settings)
    else:
        for line in status_lines(settings):
            print(line)
        return 0
    for line in report.lines:
        print(line)
    return 0
