"""The files a newcomer looks for: LICENSE as pyproject says, CONTRIBUTING, CHANGELOG, the self-hoster's and
the guides; every file they name is in the repository and none of them sends the reader elsewhere."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEW_DOCS = [
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "docs/SELF_HOSTING.md",
    "docs/MEMBER_GUIDE.md",
    "docs/ADMIN_GUIDE.md",
]
# md5 of the Apache Software Foundation's LICENSE-2.0.txt, the text projects ship unchanged
APACHE_2_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def test_license_is_the_full_apache_text_pyproject_names() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.md5(text).hexdigest() == APACHE_2_MD5  # a fingerprint, not security
    assert b"END OF TERMS AND CONDITIONS" in text


def test_changelog_keeps_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "Keep a Changelog" in text
    unreleased = text.split("## [Unreleased]", 1)[1]
    assert "### Added" in unreleased and "photogen doctor" in unreleased


def test_contributing_covers_setup_tests_style_and_layout() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for heading in ("## Set up", "## Tests", "## Style", "## Where things live"):
        assert heading in text
    for folder in re.findall(r"^\| `([a-z_/]+)/` \|", text, re.MULTILINE):
        assert (ROOT / folder).is_dir(), folder
    assert "./scripts/test" in text and (ROOT / "scripts/test").exists()


def test_self_hosting_names_hardware_model_backups_and_upgrades() -> None:
    text = (ROOT / "docs/SELF_HOSTING.md").read_text()
    for needle in (
        "VRAM",
        "driver",
        "GB",
        "MODEL_CACHE_DIR",
        "hf download",
        "1024",
        "WAL",
        ".backup",
        "BLOB_URL_SECRET",
        "url-secret",
        "## Upgrades",
        "photogen migrate",
        "/admin/dashboard",
    ):
        assert needle in text, needle
    readme = (ROOT / "README.md").read_text()
    assert "/admin/dashboard" in readme and "docs/SELF_HOSTING.md" in readme


def test_docs_name_only_files_in_the_repository() -> None:
    for name in [*NEW_DOCS, "README.md"]:
        text = (ROOT / name).read_text()
        if name != "README.md":  # the README keeps Discord's invite address, which the reader needs
            assert not re.search(r"https?://(?!127\.0\.0\.1)", text), name
        named = set(re.findall(r"\]\(([^)#]+)\)", text)) | set(
            re.findall(
                r"\b((?:docs|bot|photogen|gpu_agent|"
                r"storage|cloud|tests)/[\w./-]+\.\w+)",
                text,
            )
        )
        for ref in named:
            assert (ROOT / ref).exists(), f"{name} names {ref}, which is not in the repository"
