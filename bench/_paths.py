"""Imported first by every benchmark: `python bench/X.py` puts bench/ at the head of sys.path, where
bench/queue.py and bench/bot.py would shadow the standard `queue` module and the `bot` package. The repository
goes first and bench/ last (spawned worker processes still find this module there)."""

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))
sys.path.append(str(_BENCH))
