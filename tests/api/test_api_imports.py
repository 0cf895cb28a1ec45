"""The HTTP API package never imports discord.py (it is a front door of its own, beside the bot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_api_package_imports_no_discord() -> None:
    code = (
        "import sys, pkgutil, importlib, bot.api\n"
        "for m in pkgutil.iter_modules(bot.api.__path__): importlib.import_module('bot.api.' + m.name)\n"
        "assert 'discord' not in sys.modules, sorted(k for k in sys.modules if k.startswith('discord'))\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
