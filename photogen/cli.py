"""`photogen` — one command for every process of the system.

photogen bot | agent | api | api-keys {create,revoke,list} | all | demo | migrate | doctor | healthcheck URL
         | autoscaler | aws {bootstrap,status,teardown}
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from storage.settings import Settings, load_settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    import discord

    from bot import run_bot
    from photogen.doctor import preflight

    if args.migrate:
        cmd_migrate(settings, args)
    preflight(settings, "bot")
    try:
        run_bot(settings)
    except discord.LoginFailure:
        raise SystemExit(
            "photogen bot: Discord refused DISCORD_TOKEN — fix: developer portal → your application "
            "→ Bot → Reset Token; put the new one in .env"
        ) from None
    return 0


def cmd_agent(settings: Settings, args: argparse.Namespace) -> int:
    from photogen.doctor import preflight

    preflight(settings, "agent")
    from gpu_agent.agent import run_agent

    return run_agent(settings, once_wait_s=args.wait if args.once else None)


def cmd_all(settings: Settings, args: argparse.Namespace) -> int:
    """Bot and one agent on this host, as two supervised child processes sharing the embedded backends: a child
    that dies is restarted (backoff 1 s doubling to 30 s) and the bot's /healthz answers 503 while one is down."""
    from photogen.supervisor import Child, Supervisor
    from storage.db import database_path

    cmd_migrate(settings, args)
    state = Path(
        settings.supervisor_state_file or database_path(settings.database_url).parent / "photogen-all.json"
    )
    children = [Child(name, [sys.executable, "-m", "photogen.cli", name]) for name in ("bot", "agent")]
    return Supervisor(children, state, env={"SUPERVISOR_STATE_FILE": str(state.absolute())}).run()


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from photogen.demo import run_demo

    return run_demo(out_dir=args.out, base_model=args.base_model, settings=settings)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from photogen.doctor import check_folder
    from storage import migrate
    from storage.db import database_path

    problem = check_folder("DATABASE_URL", database_path(settings.database_url))
    if problem is not None:
        raise SystemExit(f"photogen migrate: {problem.detail} — fix: {problem.fix}")
    try:
        migrate(settings.database_url)
    except Exception as err:
        raise SystemExit(
            f"photogen migrate: DATABASE_URL {settings.database_url}: {type(err).__name__}: "
            f"{str(err).splitlines()[0]}"
        ) from None
    print(f"database schema is up to date: {settings.database_url}")
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from photogen.doctor import run_doctor

    return run_doctor(settings, offline=args.offline, role=args.role)


def cmd_healthcheck(settings: Settings | None, args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as resp:
            ok = 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError) as err:  # ValueError: not a URL at all
        print(f"unhealthy: {args.url}: {err}", file=sys.stderr)
        return 1
    print("healthy" if ok else f"unhealthy: {args.url}")
    return 0 if ok else 1


def cmd_autoscaler(settings: Settings, args: argparse.Namespace) -> int:
    from cloud.fleet.cli import run_autoscaler

    return run_autoscaler(settings, once=args.once, dry_run=args.dry_run)


def cmd_aws(settings: Settings, args: argparse.Namespace) -> int:
    from cloud.fleet import cli as fleet_cli

    return fleet_cli.run_aws(settings, args.action, yes=args.yes, batch=args.batch)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from bot.api.server import run_api

    if args.migrate:
        cmd_migrate(settings, args)
    return run_api(settings)


def cmd_api_keys(settings: Settings, args: argparse.Namespace) -> int:
    from bot.api.keys_cli import run_api_keys

    return run_api_keys(
        settings,
        args.action,
        tenant=args.tenant,
        scopes=args.scopes,
        label=args.label,
        key_id=args.key_id,
        tenant_name=args.tenant_name,
    )


def _seconds(text: str) -> float:
    """A number of seconds for an option: 0 or more, at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 86400 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="photogen", description="Photogen: a Discord photo studio.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bot = sub.add_parser("bot", help="run the Discord bot")
    bot.add_argument(
        "--migrate",
        action="store_true",
        help="create or upgrade the order store's schema first (the bot image does)",
    )
    bot.set_defaults(func=cmd_bot)
    agent = sub.add_parser("agent", help="run a GPU agent")
    agent.add_argument(
        "--once",
        action="store_true",
        help="take one job, finish it and exit: 0 done (or no job), 75 handed back, 1 failed "
        "(an AWS Batch job; Batch retries a non-zero exit)",
    )
    agent.add_argument(
        "--wait",
        type=_seconds,
        default=120.0,
        metavar="S",
        help="with --once: how long to wait for a job before exiting 0 (default 120)",
    )
    agent.set_defaults(func=cmd_agent)
    sub.add_parser("all", help="bot and one agent on this host (embedded backends)").set_defaults(
        func=cmd_all
    )

    api = sub.add_parser("api", help="run the HTTP API (docs/API.md) beside the bot, on API_HOST:API_PORT")
    api.add_argument(
        "--migrate", action="store_true", help="create or upgrade the order store's schema first"
    )
    api.set_defaults(func=cmd_api)
    keys = sub.add_parser("api-keys", help="create, revoke or list API keys (operators only)")
    keys.add_argument("action", choices=["create", "revoke", "list"])
    keys.add_argument("key_id", nargs="?", default=None, help="revoke: the key's id")
    keys.add_argument("--tenant", default=None, help="create: the tenant (made if new); list: only its keys")
    keys.add_argument("--tenant-name", default=None, help="create: a new tenant's display name")
    keys.add_argument(
        "--scopes",
        default=None,
        help="create: comma-separated scopes (default all): models:write, models:delete, renders:write, "
        "orders:read, subjects:delete, webhooks:write, webhooks:read",
    )
    keys.add_argument("--label", default=None, help="create: a note to recognise the key by")
    keys.set_defaults(func=cmd_api_keys)

    demo = sub.add_parser(
        "demo", help="offline end-to-end demo: local Discord server, bot, agent, HTML report"
    )
    demo.add_argument(
        "--out", default="demo-out", help="folder for report.html and the images (default demo-out)"
    )
    demo.add_argument(
        "--base-model",
        default=None,
        help="hub id or local path of a real base model (default: tiny test model)",
    )
    demo.set_defaults(func=cmd_demo)

    sub.add_parser("migrate", help="create or upgrade the order store's schema").set_defaults(
        func=cmd_migrate
    )

    doctor = sub.add_parser(
        "doctor", help="check settings, database, queues, blobs, Discord, GPU and base model"
    )
    doctor.add_argument("--offline", action="store_true", help="skip the checks that need the internet")
    doctor.add_argument(
        "--role",
        choices=["bot", "agent", "all"],
        default=None,
        help="what this host runs (default: all where torch is installed, else bot)",
    )
    doctor.set_defaults(func=cmd_doctor)

    health = sub.add_parser("healthcheck", help="exit 0 if URL answers 2xx (container healthchecks)")
    health.add_argument("url")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(func=cmd_healthcheck, needs_settings=False)

    auto = sub.add_parser("autoscaler", help="scale the AWS agent pools on queue depth")
    auto.add_argument("--once", action="store_true", help="one decision round, then exit")
    auto.add_argument("--dry-run", action="store_true", help="decide and log, change nothing")
    auto.set_defaults(func=cmd_autoscaler)

    aws = sub.add_parser("aws", help="create, inspect or remove the AWS infrastructure")
    aws.add_argument("action", choices=["bootstrap", "status", "teardown"])
    aws.add_argument("--yes", action="store_true", help="teardown without asking")
    aws.add_argument(
        "--batch",
        action="store_true",
        help="bootstrap: also AWS Batch for training (spot compute environment, job queue, job "
        "definition running `photogen agent --once`); see FLEET_TRAIN_BACKEND",
    )
    aws.set_defaults(func=cmd_aws)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):
        return args.func(None, args)
    settings = load_settings()  # a bad setting exits here with one line naming it
    _configure_logging(settings)
    return args.func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
