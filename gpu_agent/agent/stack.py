"""The agent's ML stack check: an agent that cannot train or render refuses to start instead of taking jobs
and failing every one of them."""

from __future__ import annotations

import importlib

ML_MODULES = ("torch", "diffusers", "peft", "transformers")


class MissingMLStack(SystemExit):
    """Stops the agent with one line naming what is missing."""


def require_ml_stack(modules: tuple[str, ...] = ML_MODULES) -> None:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except (ImportError, OSError):  # not installed, or a wheel whose native libraries cannot load
            missing.append(name)
    if missing:
        raise MissingMLStack(
            f"photogen agent: the ML stack is missing ({', '.join(missing)} cannot be imported): install the "
            "agent extra (pip install 'photogen[agent]', torch first) or run the agent image; not starting."
        )
