"""`photogen doctor`: check every dependency of a Photogen process and say how to fix what is wrong."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpu_agent.engine.model_source import (
    cached_hub_snapshot,
    download_command,
    resolve_model_source,
    size_mismatch,
)
from storage.db import database_path
from storage.settings import Settings

Role = Literal["bot", "agent", "all"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def host_role() -> Role:
    """What this host can run: "all" where the agent's ML stack (torch) is installed, "bot" elsewhere."""
    return "all" if importlib.util.find_spec("torch") is not None else "bot"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:  # a folder above is not searchable by this user
        return False


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not _exists(path) and path != path.parent:
        path = path.parent
    return path


def _writable_fix(folder: Path, setting: str) -> str:
    return (
        f"let this user write there (`sudo chown -R $(id -u):$(id -g) {folder}`) "
        f"or point {setting} at a writable folder"
    )


def check_folder(setting: str, path: Path) -> Check | None:
    """None when ``path`` (a file or folder a process creates) can be made and written by this user."""
    existing = _nearest_existing(path)
    if existing.exists() and not existing.is_dir() and existing != path.absolute():
        return Check(
            "data folders",
            False,
            f"{setting}: {existing} is a file, not a folder",
            f"point {setting} somewhere else",
        )
    target = existing if existing.is_dir() else existing.parent
    if not os.access(target, os.W_OK | os.X_OK) or (
        existing.is_file() and not os.access(existing, os.R_OK | os.W_OK)
    ):
        return Check(
            "data folders",
            False,
            f"{setting}: {existing} is not writable by this user",
            _writable_fix(target, setting),
        )
    return None


def check_data_folders(settings: Settings, role: Role) -> Check:
    """The files and folders the processes write; nothing is created here."""
    places = [("DATABASE_URL", database_path(settings.database_url))]
    if settings.queue_url.startswith("sqlite:///"):
        places.append(("QUEUE_URL", Path(settings.queue_url.removeprefix("sqlite:///"))))
    if settings.blob_url.startswith("file://"):
        places.append(("BLOB_URL", Path(settings.blob_url.removeprefix("file://"))))
    if role != "bot":
        places += [
            ("MODEL_CACHE_DIR", Path(settings.model_cache_dir).expanduser()),
            ("AGENT_WORK_DIR", Path(settings.agent_work_dir).expanduser()),
        ]
    for setting, path in places:
        problem = check_folder(setting, path)
        if problem is not None:
            return problem
    return Check("data folders", True, ", ".join(f"{s} {p}" for s, p in places) + ": writable")


def check_database(settings: Settings) -> Check:
    """The schema revision, read without creating or changing anything."""
    from storage import head_revision

    path = database_path(settings.database_url)
    head = head_revision()
    if not path.is_file():
        return Check("database", False, f"{path}: no database yet", "run `photogen migrate` (it creates it)")
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(
            "database",
            False,
            f"DATABASE_URL: {path} is not readable and writable by this user",
            _writable_fix(path.parent, "DATABASE_URL"),
        )
    conn = sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name='alembic_version'").fetchone()
        current = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] if has_table else None
    except sqlite3.DatabaseError as err:
        return Check(
            "database",
            False,
            f"DATABASE_URL: {path} is not a readable SQLite database ({err})",
            "restore it from a backup (docs/SELF_HOSTING.md) or point DATABASE_URL elsewhere",
        )
    finally:
        conn.close()
    if current != head:
        return Check(
            "database",
            False,
            f"{path}: schema at {current or 'empty'}, code expects {head}",
            "run `photogen migrate`",
        )
    return Check("database", True, f"{path}: schema {head}, journal {mode}")


def _aws_failure(setting: str, what: str, err: Exception) -> Check:
    """A failed call to SQS or S3, with the fix that matches the kind of failure."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, PartialCredentialsError

    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return Check(
            what,
            False,
            f"{setting}: no AWS credentials found",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in .env, or give the instance an IAM role",
        )
    if isinstance(err, EndpointConnectionError):
        return Check(
            what,
            False,
            f"{setting}: cannot reach {getattr(err, 'kwargs', {}).get('endpoint_url', 'the endpoint')}",
            "start the service or fix AWS_ENDPOINT_URL / the network",
        )
    text = str(err)
    if "does not exist" in text or "NoSuchBucket" in text or "NonExistentQueue" in text:
        return Check(
            what,
            False,
            f"{setting}: {text}",
            "run `photogen aws bootstrap` (it creates the queues and bucket)",
        )
    if "AccessDenied" in text or "Forbidden" in text or "403" in text:
        return Check(
            what,
            False,
            f"{setting}: access denied ({text})",
            "give these credentials the photogen policy (`photogen aws bootstrap` creates it)",
        )
    return Check(
        what, False, f"{setting}: {type(err).__name__}: {text}", "check the endpoint and credentials"
    )


def check_queues(settings: Settings, *, create: bool = False) -> Check:
    """``create``: missing SQS queues are created (the bot's start-up does so anyway; the doctor and agents,
    whose role may not create queues, only look)."""
    if settings.queue_url.startswith("sqlite:///"):
        path = Path(settings.queue_url.removeprefix("sqlite:///"))
        if not path.is_file():
            return Check("queues", True, f"{path}: created by the first bot or agent start")
    from cloud.queues import Queues

    try:
        if settings.queue_url == "sqs://":
            from cloud.queues.sqs import SqsQueue, make_client

            client = make_client(settings.aws_region, settings.sqs_endpoint_url or settings.aws_endpoint_url)
            queues = Queues(
                *(
                    SqsQueue(
                        client, f"{settings.queue_prefix}-{k}", settings.queue_max_receives, create=create
                    )
                    for k in ("train", "render", "events")
                )
            )
        else:
            from cloud.queues import open_queues

            queues = open_queues(settings)
        parts = []
        for q in queues.all():
            d = q.depth()
            parts.append(f"{q.name} {d.visible}+{d.in_flight} (dlq {q.dead_letter_depth()})")
        dead = sum(q.dead_letter_depth() for q in queues.all())
        queues.close()
    except Exception as err:
        if settings.queue_url == "sqs://":
            return _aws_failure("QUEUE_URL", "queues", err)
        return Check("queues", False, f"QUEUE_URL: {type(err).__name__}: {err}", "check QUEUE_URL")
    if dead:
        return Check(
            "queues",
            True,
            "; ".join(parts),
            f"{dead} dead letters: inspect them with /admin queue",
            warning=True,
        )
    return Check("queues", True, "; ".join(parts))


def check_blobs(settings: Settings) -> Check:
    """Local: the folder is writable (data folders); S3: the bucket answers a read. Nothing is written."""
    if settings.blob_url.startswith("file://"):
        path = Path(settings.blob_url.removeprefix("file://"))
        problem = check_folder("BLOB_URL", path)
        if problem is not None:
            return Check("blobs", False, problem.detail, problem.fix)
        return Check(
            "blobs", True, f"{path}: writable" + ("" if path.is_dir() else " (created on first use)")
        )
    from storage.blobs import open_blob_store

    try:
        open_blob_store(settings).exists("doctor/probe")
    except Exception as err:
        return _aws_failure(
            "BLOB_URL", "blobs", err.__cause__ if isinstance(err.__cause__, Exception) else err
        )
    return Check("blobs", True, f"{settings.blob_url}: the bucket answers")


def check_discord(settings: Settings, offline: bool) -> Check:
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        return Check(
            "discord",
            False,
            "DISCORD_TOKEN is not set" if settings.discord_token is None else "DISCORD_TOKEN is empty",
            "create an application at the Discord developer portal → Bot → Reset Token, put it in .env",
        )
    token = settings.discord_token.get_secret_value()
    if token != token.strip() or token[:1] in "\"'" or token.lower().startswith("bot "):
        return Check(
            "discord",
            False,
            "DISCORD_TOKEN is malformed (quotes, spaces or a 'Bot ' prefix)",
            "put only the token itself in .env: DISCORD_TOKEN=MTE... (no quotes, no 'Bot ')",
        )
    if offline:
        return Check("discord", True, "token set (not verified: --offline)", warning=True)
    req = urllib.request.Request(
        settings.discord_api_base.rstrip("/") + "/users/@me",
        headers={"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (photogen doctor, 0.1)"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            me = json.loads(resp.read())
        return Check(
            "discord",
            True,
            f"{settings.discord_api_base}: logged in as {me.get('username')} ({me.get('id')})",
        )
    except urllib.error.HTTPError as err:
        if err.code == 401:
            return Check(
                "discord",
                False,
                "Discord refused DISCORD_TOKEN (401)",
                "developer portal → your application → Bot → Reset Token; put the new one in .env",
            )
        return Check(
            "discord", False, f"{settings.discord_api_base} answered HTTP {err.code}", "try again later"
        )
    except (urllib.error.URLError, OSError) as err:
        return Check(
            "discord",
            False,
            f"cannot reach {settings.discord_api_base}: {getattr(err, 'reason', err)}",
            "check the network, or DISCORD_API_BASE",
        )


def check_gpu(settings: Settings) -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check(
            "gpu",
            False,
            "the agent's ML stack (torch) is not installed on this host",
            "install it where agents run: `pip install '.[agent]'` (a bot-only host needs none: "
            "`photogen doctor --role bot`)",
        )
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("gpu", True, f"CUDA {torch.version.cuda}: {names}")
    if settings.device == "cuda":
        return Check(
            "gpu",
            False,
            "DEVICE=cuda but no CUDA GPU is visible",
            "install the NVIDIA driver / container toolkit, or set DEVICE=auto",
        )
    return Check(
        "gpu",
        True,
        "no GPU visible: an agent here trains and renders on the CPU (very slow)",
        "run agents on a machine with an NVIDIA GPU (docs/SELF_HOSTING.md)",
        warning=True,
    )


def check_base_model(settings: Settings, offline: bool, ask_hub: bool = True) -> Check:
    """BASE_MODEL by the agent's own rule (gpu_agent.engine.model_source), in MODEL_CACHE_DIR."""
    model, cache = settings.base_model, settings.model_cache_dir
    source = resolve_model_source(model)
    if source.kind == "tiny":
        return Check(
            "base model",
            True,
            f"{model}: built-in tiny random test model — it draws noise, not people",
            "set BASE_MODEL to a hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or a local path",
            warning=True,
        )
    if source.kind == "invalid":
        return Check(
            "base model",
            False,
            f"BASE_MODEL {model!r} is neither tiny-sd/tiny-sdxl, a path, nor a hub id",
            "set BASE_MODEL to a hub id like org/name or a folder path (./models/x or /abs/path)",
        )
    if source.kind == "file":
        return Check(
            "base model",
            False,
            f"BASE_MODEL {source.path}: a single-file checkpoint; the agent loads diffusers folders",
            'convert it once: `python -c "from diffusers import '
            f"StableDiffusionPipeline as P; P.from_single_file('{source.path}').save_pretrained('models/base')\"` "
            "and set BASE_MODEL=./models/base",
        )
    if source.kind == "folder":
        assert source.path is not None
        if not source.path.is_dir():
            return Check(
                "base model",
                False,
                f"BASE_MODEL {source.path}: no such folder (from {Path.cwd()})",
                "point BASE_MODEL at a diffusers folder (with model_index.json, as save_pretrained "
                "writes it), or use a hub id",
            )
        if not (source.path / "model_index.json").is_file():
            return Check(
                "base model",
                False,
                f"BASE_MODEL {source.path}: no model_index.json there",
                "point BASE_MODEL at a folder saved with save_pretrained, or use a hub id",
            )
        return Check("base model", True, f"{source.path}: a diffusers pipeline folder")
    if cached_hub_snapshot(model, cache) is not None:
        return Check("base model", True, f"{model}: in the model cache {cache}")
    fetch = download_command(model, cache)
    if offline:
        return Check(
            "base model",
            False,
            f"BASE_MODEL {model}: not in the model cache {cache} (--offline)",
            f"run `{fetch}` (here, or where there is internet, then copy {cache} here)",
        )
    if not ask_hub:
        return Check(
            "base model",
            True,
            f"{model}: not yet in {cache}; the agent downloads it on first use",
            f"download it now: `{fetch}`",
            warning=True,
        )
    try:
        from huggingface_hub import file_exists

        exists = file_exists(model, "model_index.json")
    except Exception as err:
        return Check(
            "base model",
            False,
            f"BASE_MODEL {model}: not in {cache} and the hub cannot be asked ({type(err).__name__})",
            f"run `{fetch}` where there is internet, then copy {cache} here",
        )
    if not exists:
        return Check(
            "base model",
            False,
            f"BASE_MODEL {model}: no such diffusers model on the hub",
            "check the id (org/name) on the hub",
        )
    return Check(
        "base model",
        True,
        f"{model}: on the hub, not yet in {cache}; the agent downloads it "
        "on first use (SD 1.5 ≈ 5 GB, SDXL ≈ 7 GB)",
        f"download it now: `{fetch}`",
        warning=True,
    )


def check_sizes(settings: Settings) -> Check:
    """TRAIN_RESOLUTION and RENDER_SIZE against the base model's family (SDXL: 1024; SD 1.x: 512)."""
    mismatch = size_mismatch(
        settings.base_model, settings.model_cache_dir, settings.train_resolution, settings.render_size
    )
    if mismatch is None:
        return Check(
            "sizes", True, f"TRAIN_RESOLUTION={settings.train_resolution}, RENDER_SIZE={settings.render_size}"
        )
    return Check(
        "sizes",
        True,
        mismatch,
        "set TRAIN_RESOLUTION and RENDER_SIZE to match the model (SDXL: 1024, SD 1.x: 512)",
        warning=True,
    )


def run_checks(settings: Settings, offline: bool = False, role: Role | None = None) -> list[Check]:
    role = role or host_role()
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("data folders", lambda: check_data_folders(settings, role)),
        ("database", lambda: check_database(settings)),
        ("queues", lambda: check_queues(settings)),
        ("blobs", lambda: check_blobs(settings)),
    ]
    if role != "agent":
        steps.append(("discord", lambda: check_discord(settings, offline)))
    if role != "bot":
        steps += [
            ("gpu", lambda: check_gpu(settings)),
            ("base model", lambda: check_base_model(settings, offline)),
            ("sizes", lambda: check_sizes(settings)),
        ]
    results = []
    for name, step in steps:
        try:
            results.append(step())
        except Exception as err:
            results.append(Check(name, False, f"{type(err).__name__}: {err}", "see the message above"))
    return results


def run_doctor(settings: Settings, offline: bool = False, role: Role | None = None) -> int:
    """Print every check and its fix; changes nothing (run `photogen migrate` first on a new install)."""
    role = role or host_role()
    print(
        f"checking this host as: {role}"
        + (
            ""
            if role != "bot" or importlib.util.find_spec("torch")
            else " (no ML stack here: agent checks skipped)"
        )
    )
    results = run_checks(settings, offline, role)
    for c in results:
        mark = "ok  " if c.ok and not c.warning else ("warn" if c.ok else "FAIL")
        print(f"[{mark}] {c.name}: {c.detail}")
        if c.fix and (not c.ok or c.warning):
            print(f"       fix: {c.fix}")
    problems = [c for c in results if not c.ok]
    print(f"{len(problems)} problem(s)" if problems else "all checks passed")
    return 1 if problems else 0


def preflight(settings: Settings, command: str) -> None:
    """Before `photogen bot|agent` start: the first fatal problem stops the process with one line that names
    the setting and the fix (no traceback). Warnings are logged."""
    import logging

    checks: list[Callable[[], Check]] = []
    if command == "agent":
        checks += [
            lambda: check_base_model(settings, offline=_hub_offline(), ask_hub=False),
            lambda: check_sizes(settings),
        ]
    checks.append(lambda: check_data_folders(settings, "bot" if command == "bot" else "agent"))
    if command == "bot":
        checks += [lambda: check_database(settings), lambda: check_discord(settings, offline=True)]
    checks += [lambda: check_queues(settings, create=command == "bot"), lambda: check_blobs(settings)]
    for run in checks:
        c = run()
        if not c.ok:
            raise SystemExit(f"photogen {command}: {c.detail} — fix: {c.fix}")
        if c.warning:
            logging.getLogger("photogen").warning("%s — %s", c.detail, c.fix)


def _hub_offline() -> bool:
    """The agent only fetches from the hub when it is online; offline, a model missing from the cache is fatal."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)
