"""Which tests are slow: a rule over folders, files and fixtures, applied by tests/conftest.py.

Slow tests train or render tiny models, run the agent, start processes, a browser or the bot against the
Discord sim. CI (./scripts/test, .ci/run) runs everything; ``./scripts/test --fast`` (``pytest -m "not slow"``)
runs the rest in about a minute. A new test that takes more than about a second belongs here: add its file or fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Folders whose every test is slow: the engine trains and renders tiny models; the agent runs them; e2e runs all;
# the fleet tests drive moto's EC2 and auto scaling; the bench tests run a faulty proxy under load.
SLOW_FOLDERS = ("e2e", "gpu_agent/engine", "gpu_agent/agent", "cloud/fleet", "bench")

# Files whose every test is slow (paths under tests/): measured with --durations, seconds a test.
SLOW_FILES = (
    "bot/test_likeness.py",  # an agent thread scores and re-rolls renders
    "bot/test_credits_ledger_random.py",  # a hundred random orders, cancels and expiries through the services
    "bot/test_dashboard_aws.py",  # the sampler against moto's SQS and auto scaling
    "bot/test_dashboard_browser.py",  # headless Chromium
    "bot/test_budget_dashboard.py",  # headless Chromium
    "photogen/test_supervisor.py",  # `photogen all` processes, killed and restarted
    "photogen/test_readme_commands.py",  # the README's commands as processes
    "gpu_agent/test_photos_agreement.py",  # door and agent checks over whole photo sets
    "storage/test_order_store_processes.py",  # several processes on one database
    "photogen/test_doctor.py",  # `photogen doctor|bot|agent|migrate` as processes
    "cloud/test_queue_contract.py",  # waits out leases, delays and long polls, on SQLite and moto's SQS
    "cloud/test_queue_sqlite.py",  # several processes on one queue file, long polls
    "api/test_api_imports.py",  # a fresh interpreter importing the whole API package
    "api/test_api_process.py",  # `photogen api` and `photogen api-keys` as processes
    "api/test_api_models.py",  # the face detector reads real photos
    "api/test_api_schemathesis.py",  # schemathesis against the live API
)

# Fixtures that make any test using them slow: they start the bot against the Discord sim, or hand over the real
# test photos that the face detector then reads (one to three seconds a test).
SLOW_FIXTURES = frozenset({"studio", "run_bot", "faces_dir"})


def _relative(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None


def is_slow_file(path: Path) -> bool:
    """True for a folder or file under tests/ whose every test is slow."""
    rel = _relative(path)
    if rel is None:
        return False
    return rel in SLOW_FILES or any(rel == f or rel.startswith(f + "/") for f in SLOW_FOLDERS)


def is_slow_item(item: pytest.Item) -> bool:
    return is_slow_file(item.path) or bool(SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())))
