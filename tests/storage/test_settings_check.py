"""The start-up check: a bad setting stops with one line naming it, never echoing a secret; every setting is
documented in .env.example and docs/SETTINGS.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from storage import settings_docs
from storage.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTIz.secret-token-value.do-not-print"


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's .env in the checkout must not change these results


@pytest.mark.parametrize(
    ("env", "name", "why"),
    [
        ({"QUEUE_URL": "redis://x"}, "QUEUE_URL", "sqlite:///PATH or sqs://"),
        ({"AGENT_LEASE_S": "-1"}, "AGENT_LEASE_S", "greater than or equal to 5"),
        ({"DATABASE_URL": "postgresql://u:pw@db/x"}, "DATABASE_URL", "sqlite:///PATH"),
        ({"BLOB_URL": "ftp://x"}, "BLOB_URL", "file://DIR or s3://"),
        ({"BOT_OWNER_IDS": "12,34"}, "BOT_OWNER_IDS", "not valid JSON"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "'DEBUG'"),
    ],
)
def test_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str, why: str
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DASHBOARD_TOKEN", TOKEN)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"photogen: bad setting {name}: ")
    assert why in line
    assert TOKEN not in line and "pw@" not in line


def test_bad_secret_is_named_but_not_echoed() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(discord_token=["not", TOKEN])
    assert str(err.value).startswith("photogen: bad setting DISCORD_TOKEN:")
    assert TOKEN not in str(err.value)


def test_start_up_exits_with_only_that_line(tmp_path: Path) -> None:
    # A real process: SettingsError is a SystemExit, so start-up prints the one line and no traceback.
    code = "from storage.settings import load_settings; load_settings()"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "QUEUE_URL": "redis://x", "DISCORD_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "photogen: bad setting QUEUE_URL: must be sqlite:///PATH or sqs:// (got 'redis://x')"
    ]


def test_defaults_load() -> None:
    s = load_settings()
    assert (s.database_url, s.queue_url, s.blob_url) == (
        "sqlite:///data/photogen.db",
        "sqlite:///data/queue.db",
        "file://data/blobs",
    )


def _documented(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text, flags=re.MULTILINE))


def test_every_setting_is_documented_in_env_example_and_settings_md() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    hint = "run `python -m storage.settings_docs` to regenerate"
    env_names = _documented((ROOT / ".env.example").read_text(), r"^#? ?([A-Z][A-Z0-9_]+)=")
    md_names = _documented((ROOT / "docs" / "SETTINGS.md").read_text(), r"^\| `([A-Z][A-Z0-9_]+)` \|")
    assert env_names == fields, f".env.example differs from Settings ({hint})"
    assert md_names == fields, f"docs/SETTINGS.md differs from Settings ({hint})"
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name.upper()} has no description"


def test_generated_docs_are_current() -> None:
    assert settings_docs.main(["--check"]) == 0, "run `python -m storage.settings_docs` to regenerate"
