"""Fixtures of the HTTP API tests (the rig is tests/api/rig.py)."""

from tests.api.rig import api

__all__ = ["api"]
