"""Slash-command options declared from a list rather than one hand-written parameter each.

discord.py builds a command's options from ``inspect.signature(callback)`` (which honours ``__signature__``)
and the descriptions from ``app_commands.describe``; it calls the callback with every option as a keyword
argument. So a callback that takes ``**values`` and carries a signature naming the options gets exactly the
options (and the synced payload) that hand-written parameters would give, in the same order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from discord import app_commands

F = TypeVar("F", bound=Callable[..., Any])


def numbered(prefix: str, count: int) -> list[str]:
    """``prefix1`` … ``prefix{count}``."""
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def options(
    names: Sequence[str], annotation: Any, *, required: int, descriptions: Sequence[str]
) -> Callable[[F], F]:
    """Declare ``names`` as options of type ``annotation`` on a callback that takes them as ``**kwargs``: the
    first ``required`` are required, the rest optional (``None`` when not given). Apply below
    ``@app_commands.command``."""
    if len(descriptions) != len(names):
        raise ValueError("one description per option")

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if len(params) == len(signature.parameters):
            raise TypeError(f"{func.__qualname__} must take the options as **kwargs")
        for i, name in enumerate(names):
            is_required = i < required
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=annotation if is_required else annotation | None,
                    default=inspect.Parameter.empty if is_required else None,
                )
            )
        func.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return app_commands.describe(**dict(zip(names, descriptions, strict=True)))(func)

    return decorate
