"""`photogen doctor`: check every dependency of a Photogen process and say how to fix what is wrong."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.settings import Settings

TINY_MODELS = ("tiny-sd", "tiny-sdxl")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def check_database(settings: Settings) -> Check:
    from storage import current_revision, head_revision, open_engine

    engine = open_engine(settings.database_url)
    current, head = current_revision(engine), head_revision()
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    if current != head:
        return Check("database", False, f"{settings.database_url}: schema at {current or 'empty'}, code expects {head}",
                     "run `photogen migrate`")
    return Check("database", True, f"{settings.database_url}: schema {head}, journal {mode}")


def check_queues(settings: Settings) -> Check:
    from cloud.queues import open_queues

    queues = open_queues(settings)
    parts = []
    for q in (queues.train, queues.render, queues.events):
        d = q.depth()
        parts.append(f"{q.name} {d.visible}+{d.in_flight} (dlq {q.dead_letter_depth()})")
    dead = sum(q.dead_letter_depth() for q in (queues.train, queues.render, queues.events))
    if dead:
        return Check("queues", True, "; ".join(parts), f"{dead} dead letters: inspect them with /admin queue",
                     warning=True)
    return Check("queues", True, "; ".join(parts))


def check_blobs(settings: Settings) -> Check:
    from storage.blobs import open_blob_store

    store = open_blob_store(settings)
    key = f"doctor/probe-{uuid.uuid4().hex}"
    store.put(key, b"photogen doctor")
    try:
        if store.get(key) != b"photogen doctor":
            return Check("blobs", False, f"{settings.blob_url}: read back different bytes", "check the store's health")
    finally:
        store.delete(key)
    return Check("blobs", True, f"{settings.blob_url}: write, read and delete work")


def check_discord(settings: Settings, offline: bool) -> Check:
    if settings.discord_token is None:
        return Check("discord", False, "DISCORD_TOKEN is not set",
                     "create an application at the Discord developer portal → Bot → Reset Token, put it in .env")
    if offline:
        return Check("discord", True, "token set (not verified: --offline)", warning=True)
    req = urllib.request.Request(
        settings.discord_api_base.rstrip("/") + "/users/@me",
        headers={"Authorization": f"Bot {settings.discord_token.get_secret_value()}",
                 "User-Agent": "DiscordBot (photogen doctor, 0.1)"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the configured Discord API
            me = json.loads(resp.read())
        return Check("discord", True, f"{settings.discord_api_base}: logged in as {me.get('username')} ({me.get('id')})")
    except urllib.error.HTTPError as err:
        if err.code == 401:
            return Check("discord", False, "Discord refused the token (401)", "reset the bot token and update DISCORD_TOKEN")
        return Check("discord", False, f"{settings.discord_api_base} answered HTTP {err.code}", "try again later")
    except (urllib.error.URLError, OSError) as err:
        return Check("discord", False, f"cannot reach {settings.discord_api_base}: {getattr(err, 'reason', err)}",
                     "check the network, or DISCORD_API_BASE")


def check_gpu(settings: Settings) -> Check:
    try:
        import torch
    except ImportError:
        return Check("gpu", True, "torch not installed (fine for a bot-only host)", "install .[agent] on agents",
                     warning=True)
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("gpu", True, f"CUDA {torch.version.cuda}: {names}")
    if settings.device == "cuda":
        return Check("gpu", False, "DEVICE=cuda but no CUDA GPU is visible",
                     "install the NVIDIA driver / container toolkit, or set DEVICE=auto")
    return Check("gpu", True, "no GPU visible: an agent here trains and renders on the CPU (very slow)",
                 "run agents on a machine with an NVIDIA GPU", warning=True)


def check_base_model(settings: Settings, offline: bool) -> Check:
    model = settings.base_model
    if model in TINY_MODELS:
        return Check("base model", True, f"{model}: built-in tiny random test model — it draws noise, not people",
                     "set BASE_MODEL to a hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or a local path",
                     warning=True)
    path = Path(model).expanduser()
    if path.is_absolute() or model.startswith("."):
        if (path / "model_index.json").is_file():
            return Check("base model", True, f"{path}: a diffusers pipeline folder")
        return Check("base model", False, f"{path}: no model_index.json there",
                     "point BASE_MODEL at a folder saved with save_pretrained, or use a hub id")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return Check("base model", False, "huggingface_hub missing", "install .[agent]")
    cached = try_to_load_from_cache(model, "model_index.json", cache_dir=None)
    if isinstance(cached, str):
        return Check("base model", True, f"{model}: in the local Hugging Face cache")
    if offline:
        return Check("base model", False, f"{model}: not in the local cache and --offline",
                     f"run `hf download {model}` on a machine with internet")
    from huggingface_hub import file_exists

    try:
        exists = file_exists(model, "model_index.json")
    except Exception as err:  # noqa: BLE001 - any hub/network failure is reported, not raised
        return Check("base model", False, f"{model}: cannot reach the hub ({type(err).__name__})",
                     f"check the network, or run `hf download {model}` where there is internet")
    if not exists:
        return Check("base model", False, f"{model}: no such diffusers model on the hub", "check BASE_MODEL")
    return Check("base model", True, f"{model}: on the hub; the agent downloads it on first use", warning=True)


def run_checks(settings: Settings, offline: bool = False) -> list[Check]:
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("database", lambda: check_database(settings)),
        ("queues", lambda: check_queues(settings)),
        ("blobs", lambda: check_blobs(settings)),
        ("discord", lambda: check_discord(settings, offline)),
        ("gpu", lambda: check_gpu(settings)),
        ("base model", lambda: check_base_model(settings, offline)),
    ]
    results = []
    for name, step in steps:
        try:
            results.append(step())
        except Exception as err:  # noqa: BLE001 - the doctor reports every failure and goes on
            results.append(Check(name, False, f"{type(err).__name__}: {err}", "see the message above"))
    return results


def run_doctor(settings: Settings, offline: bool = False) -> int:
    results = run_checks(settings, offline)
    for c in results:
        mark = "ok  " if c.ok and not c.warning else ("warn" if c.ok else "FAIL")
        print(f"[{mark}] {c.name}: {c.detail}")
        if c.fix and (not c.ok or c.warning):
            print(f"       fix: {c.fix}")
    problems = [c for c in results if not c.ok]
    print(f"{len(problems)} problem(s)" if problems else "all checks passed")
    return 1 if problems else 0
