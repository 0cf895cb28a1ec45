"""Argument types shared by the ML benchmarks: a bad value is one argparse line, not a traceback from a worker."""

from __future__ import annotations

import argparse


def count(minimum: int):
    """An int of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def device(text: str) -> str:
    """A torch device this machine has (the engine's own rules and message)."""
    from gpu_agent.engine.models import BaseModelError, pick_device

    try:
        pick_device(text)
    except BaseModelError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text
