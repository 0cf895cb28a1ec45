"""`photogen doctor` looks where the agent looks, says how to fix what it finds, and changes nothing; `photogen
bot|agent|migrate` stop with one line naming the setting, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from gpu_agent.engine.model_source import resolve_model_source, size_mismatch
from photogen import doctor
from storage.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/data/p.db",
        "QUEUE_URL": f"sqlite:///{tmp_path}/data/q.db",
        "BLOB_URL": f"file://{tmp_path}/data/blobs",
        "MODEL_CACHE_DIR": str(tmp_path / "data/models"),
        "AGENT_WORK_DIR": str(tmp_path / "data/agent"),
        "BOT_HTTP_PORT": "0",
        "AGENT_METRICS_PORT": "0",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    return env


def _run(
    argv: list[str], env: dict[str, str], *, as_nobody: bool = False, timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    prefix: list[str] = []
    if as_nobody and os.geteuid() == 0:  # root writes anywhere: the check runs as an ordinary user
        for path in (ROOT, Path(sys.prefix)):
            for folder in (path, *path.parents):
                if not folder.stat().st_mode & 0o001:
                    pytest.skip(
                        f"{folder} is closed to other users (a mktemp clone): the check cannot run as one"
                    )
        prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "photogen.cli", *argv],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.strip()
    assert result.returncode != 0
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]  # log lines aside
    assert len(lines) == 1, err
    return lines[0]


def _hub_cache(cache: Path, hub_id: str, class_name: str = "StableDiffusionPipeline") -> Path:
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    return snap


def test_doctor_changes_nothing_and_a_fresh_install_is_told_to_migrate(tmp_path: Path) -> None:
    result = _run(["doctor", "--offline"], _env(tmp_path, BASE_MODEL="tiny-sd"))
    assert _files(tmp_path) == []  # no database, queue file, blob folder or probe was created
    assert "[FAIL] database" in result.stdout and "run `photogen migrate`" in result.stdout
    assert "[ok  ] queues" in result.stdout and "created by the first bot or agent start" in result.stdout
    assert "[ok  ] blobs" in result.stdout


def test_doctor_finds_a_hub_model_in_the_model_cache_setting(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _hub_cache(cache, "acme/portrait-v1")
    settings = load_settings(model_cache_dir=str(cache), base_model="acme/portrait-v1")
    check = doctor.check_base_model(settings, offline=True)
    assert check.ok and not check.warning and str(cache) in check.detail
    missing = doctor.check_base_model(
        load_settings(model_cache_dir=str(cache), base_model="acme/other"), offline=True
    )
    assert not missing.ok
    assert f"hf download acme/other --cache-dir {cache}" in missing.fix  # puts it where the agent reads


def test_relative_folders_and_single_files_follow_the_engines_rule(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "model_index.json").write_text("{}")
    (tmp_path / "one.safetensors").write_bytes(b"x")
    assert resolve_model_source("models/base").kind == "folder"  # exists here, so a path, not a hub id
    assert resolve_model_source("acme/base").kind == "hub"
    assert doctor.check_base_model(load_settings(base_model="models/base"), offline=True).ok
    single = doctor.check_base_model(load_settings(base_model="one.safetensors"), offline=True)
    assert not single.ok and "single-file" in single.detail and "from_single_file" in single.fix


def test_sdxl_with_512_sizes_is_warned(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _hub_cache(cache, "acme/big", class_name="StableDiffusionXLPipeline")
    assert size_mismatch("acme/big", cache, 1024, 1024) is None
    warning = size_mismatch("acme/big", cache, 512, 512)
    assert warning is not None and "SDXL needs 1024" in warning
    check = doctor.check_sizes(
        load_settings(
            model_cache_dir=str(cache), base_model="acme/big", train_resolution=512, render_size=512
        )
    )
    assert check.ok and check.warning and "TRAIN_RESOLUTION" in check.fix
    assert size_mismatch("tiny-sdxl", cache, 64, 64) is None


def test_sizes_check_with_the_recipes_own_train_resolution(tmp_path: Path) -> None:
    """TRAIN_RESOLUTION unset (the recipe picks the family's size): only RENDER_SIZE is judged."""
    cache = tmp_path / "cache"
    _hub_cache(cache, "acme/big", class_name="StableDiffusionXLPipeline")
    fine = doctor.check_sizes(
        load_settings(model_cache_dir=str(cache), base_model="acme/big", render_size=1024)
    )
    assert fine.ok and not fine.warning
    small = size_mismatch("acme/big", cache, None, 512)
    assert small is not None and "RENDER_SIZE=512" in small


def test_the_agent_warns_at_start_up_when_sizes_do_not_suit_the_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _hub_cache(cache, "acme/big", class_name="StableDiffusionXLPipeline")
    # BLOB_URL names a folder inside a file: the agent stops right after the model check, and says why
    (tmp_path / "blocker").write_text("")
    env = _env(
        tmp_path,
        BASE_MODEL="acme/big",
        MODEL_CACHE_DIR=str(cache),
        TRAIN_RESOLUTION="512",
        RENDER_SIZE="512",
        BLOB_URL=f"file://{tmp_path}/blocker/blobs",
    )
    result = _run(["agent"], env)
    assert "SDXL needs 1024" in result.stderr
    assert "BLOB_URL" in _one_line(result)


def test_a_bot_only_host_is_not_told_to_install_the_ml_stack(tmp_path: Path, monkeypatch, capsys) -> None:
    # Stand-in: torch is installed in this environment, so its absence is what find_spec reports here.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    assert doctor.host_role() == "bot"
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/p.db",
        queue_url=f"sqlite:///{tmp_path}/q.db",
        blob_url=f"file://{tmp_path}/b",
        discord_token=SecretStr("abc.def.ghi"),
    )
    doctor.run_doctor(settings, offline=True)
    out = capsys.readouterr().out
    assert "checking this host as: bot" in out
    assert "[agent]" not in out and "torch" not in out.replace("no ML stack", "")
    assert "gpu" not in out and "base model" not in out
    doctor.run_doctor(settings, offline=True, role="agent")
    assert "pip install '.[agent]'" in capsys.readouterr().out  # an agent host is told


def test_a_pasted_bot_prefix_is_a_token_format_failure(tmp_path: Path) -> None:
    check = doctor.check_discord(load_settings(discord_token=SecretStr("Bot abc.def.ghi")), offline=True)
    assert not check.ok and "'Bot '" in check.fix


def test_an_empty_token_is_called_empty_not_malformed(tmp_path: Path) -> None:
    check = doctor.check_discord(load_settings(discord_token=SecretStr("")), offline=True)
    assert not check.ok and check.detail == "DISCORD_TOKEN is empty" and "developer portal" in check.fix


@pytest.mark.parametrize("mode", [0o555, 0o700])  # read-only; not even searchable by this user
def test_migrate_into_a_read_only_or_unreadable_folder_is_one_line(tmp_path: Path, mode: int) -> None:
    top = Path(tempfile.mkdtemp(prefix="photogen-ro-"))  # under /tmp: pytest's own folder is root's only
    try:
        top.chmod(0o755)
        ro = top / "data"
        ro.mkdir(mode=mode)
        line = _one_line(_run(["migrate"], {"DATABASE_URL": f"sqlite:///{ro}/p.db"}, as_nobody=True))
        assert "DATABASE_URL" in line and str(ro) in line and "chown" in line
    finally:
        shutil.rmtree(top)


def test_agent_with_a_missing_model_is_one_line(tmp_path: Path) -> None:
    line = _one_line(_run(["agent"], _env(tmp_path, BASE_MODEL=str(tmp_path / "no-model"))))
    assert "BASE_MODEL" in line and "no such folder" in line
    not_cached = _one_line(_run(["agent"], _env(tmp_path, BASE_MODEL="acme/portrait-v1")))
    assert "hf download acme/portrait-v1 --cache-dir" in not_cached


@pytest.mark.parametrize("setting", ["QUEUE_URL", "BLOB_URL"])
def test_unreachable_queue_or_bucket_is_one_line(tmp_path: Path, setting: str) -> None:
    env = _env(
        tmp_path,
        BASE_MODEL="tiny-sd",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_MAX_ATTEMPTS="1",
    )
    env.update({"QUEUE_URL": "sqs://"} if setting == "QUEUE_URL" else {"BLOB_URL": "s3://nowhere"})
    line = _one_line(_run(["agent"], env))
    assert setting in line and "cannot reach" in line


def test_bot_with_an_unmigrated_database_is_one_line(tmp_path: Path) -> None:
    line = _one_line(_run(["bot"], _env(tmp_path, DISCORD_TOKEN="abc.def.ghi")))
    assert "no database yet" in line and "photogen migrate" in line


async def test_bot_with_a_refused_token_is_one_line(tmp_path: Path) -> None:
    import asyncio

    from photogen.discord_sim import DiscordSim

    async with DiscordSim() as sim:
        env = _env(
            tmp_path,
            DISCORD_TOKEN="wrong.token.here",
            DISCORD_API_BASE=sim.api_base,
            DISCORD_GATEWAY_URL=sim.gateway_url,
        )
        assert (await asyncio.to_thread(_run, ["migrate"], env)).returncode == 0
        line = _one_line(await asyncio.to_thread(_run, ["bot"], env))
    assert "DISCORD_TOKEN" in line and "Reset Token" in line


def test_the_bot_creates_missing_sqs_queues_but_the_agent_is_told_to_bootstrap(
    tmp_path: Path, moto_endpoint: str, unique_name: str
) -> None:
    """The bot's start-up creates queues it does not find (as it always did); an agent's role may not, so its
    start-up stops with the bootstrap hint. Real checks against moto's SQS server."""
    from photogen.doctor import preflight
    from storage.settings import load_settings

    values = {
        "queue_url": "sqs://",
        "queue_prefix": unique_name,
        "aws_endpoint_url": moto_endpoint,
        "database_url": f"sqlite:///{tmp_path}/p.db",
        "blob_url": f"file://{tmp_path}/blobs",
        "agent_work_dir": str(tmp_path / "agent"),
        "model_cache_dir": str(tmp_path / "models"),
        "base_model": "tiny-sd",
        "discord_token": "abc.def.ghi",
    }
    settings = load_settings(**values)
    with pytest.raises(SystemExit, match=f"SQS queue {unique_name}-train does not exist"):
        preflight(settings, "agent")
    from storage import migrate

    migrate(values["database_url"])
    preflight(settings, "bot")  # creates them
    preflight(settings, "agent")  # and now the agent finds them
