"""The agent's ML stack check: an agent that cannot train or render refuses to start instead of taking jobs
and failing every one of them.

It asks the import system whether the packages are installed (``find_spec``, milliseconds) rather than
importing torch and diffusers (seconds): the agent loads them with its first job, and a start must stay fast
enough for SIGTERM-driven supervisors (``photogen all``, docker stop).
"""

from __future__ import annotations

import importlib.util

ML_MODULES = ("torch", "diffusers", "peft", "transformers")


class MissingMLStack(SystemExit):
    """Stops the agent with one line naming what is missing."""


def missing_ml_modules(modules: tuple[str, ...] = ML_MODULES) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it, or a broken half-installed package
            found = False
        if not found:
            missing.append(name)
    return missing


def require_ml_stack(modules: tuple[str, ...] = ML_MODULES) -> None:
    missing = missing_ml_modules(modules)
    if missing:
        raise MissingMLStack(
            f"photogen agent: the ML stack is missing ({', '.join(missing)} not installed): install the "
            "agent extra (pip install 'photogen[agent]', torch first) or run the agent image; not starting."
        )
