"""The project's habits stay wired: lint and types run before the tests in CI, the dev tools are pinned, and the
fast subset leaves out exactly what the slow rule names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.slow import SLOW_FOLDERS, is_slow_file

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_lint_and_types_before_the_tests() -> None:
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
    test = (ROOT / "scripts" / "test").read_text()
    full_run = test.split("\nfi\n", 1)[1]  # after the --fast branch
    assert full_run.index("./scripts/lint") < full_run.index("python -m pytest")
    lint = (ROOT / "scripts" / "lint").read_text()
    for step in ("ruff check .", "ruff format --check .", "python -m mypy"):
        assert step in lint, step


def test_dev_tools_are_pinned_and_the_rule_set_is_real() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    for tool in ("ruff", "mypy", "pre-commit"):
        assert any(re.fullmatch(rf"{tool}==[0-9.]+", spec) for spec in dev), tool
    selected = set(pyproject["tool"]["ruff"]["lint"]["select"])
    assert {"I", "B", "UP", "SIM", "ASYNC", "RUF"} <= selected
    assert set(pyproject["tool"]["mypy"]["files"]) == {"bot", "cloud", "gpu_agent", "storage", "photogen"}
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "repo: local" in hooks and "ruff" in hooks and "mypy" in hooks


def test_the_slow_rule_names_folders_and_keeps_the_rest_fast() -> None:
    tests = ROOT / "tests"
    for folder in SLOW_FOLDERS:
        assert (tests / folder).is_dir(), folder
        assert is_slow_file(tests / folder) and is_slow_file(tests / folder / "test_x.py")
    assert not is_slow_file(tests / "storage" / "test_blob_stores.py")
    assert not is_slow_file(ROOT / "bot" / "app.py")  # outside tests/: never
