"""The shared names (storage/contracts.py): enum members equal the literals rows and queued messages hold."""

from __future__ import annotations

import json

import pytest

from storage import ORDER_FLOW, keys
from storage.contracts import EventKind, JobKind, OrderStatus, is_id


def test_enum_values_are_the_literals_older_rows_and_messages_hold() -> None:
    assert [s.value for s in OrderStatus] == [
        "created",
        "queued",
        "training",
        "trained",
        "rendering",
        "delivered",
        "failed",
        "cancelled",
    ]
    assert [k.value for k in JobKind] == ["train", "render"]
    assert [k.value for k in EventKind] == [
        "started",
        "progress",
        "checkpoint",
        "done",
        "failed",
        "preempted",
    ]
    # A member is its string: compared, hashed, stored and dumped as one.
    assert OrderStatus("queued") is OrderStatus.QUEUED and OrderStatus.QUEUED == "queued"
    assert {"train": 1}[JobKind.TRAIN] == 1
    assert json.dumps([EventKind.DONE]) == '["done"]'
    assert ORDER_FLOW[0] == "created" and ORDER_FLOW[-1] == "delivered"


@pytest.mark.parametrize(
    "value", ["a", "0123456789abcdef0123456789abcdef", "123456789012345678", "a_b-C", "x" * 64]
)
def test_the_one_id_pattern_accepts_ids(value: str) -> None:
    assert is_id(value)
    assert keys.user_prefix(value) == f"users/{value}/"


@pytest.mark.parametrize("value", ["", "x" * 65, "a/b", "a b", "..", "é", None, 12])
def test_the_one_id_pattern_refuses_anything_else(value: object) -> None:
    assert not is_id(value)
