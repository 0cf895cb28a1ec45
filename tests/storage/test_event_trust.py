"""forged_reason: an agent's event may name blobs under the order owner's prefix only (previews included)."""

from __future__ import annotations

from cloud.messages import Event, Progress
from storage import keys
from storage.lifecycle import forged_reason


def _progress(preview_key: str) -> Event:
    return Event(
        job_id="job1",
        order_id="order1",
        job_kind="train",
        kind="progress",
        progress=Progress(step=2, total=8, preview_key=preview_key),
    )


def test_a_preview_under_the_owners_prefix_is_accepted() -> None:
    event = _progress(keys.preview_key("111", "job1", 2))
    assert forged_reason(event, "111", "train", {"job1"}) is None


def test_a_preview_under_another_members_prefix_is_refused() -> None:
    event = _progress(keys.preview_key("222", "job1", 2))
    reason = forged_reason(event, "111", "train", {"job1"})
    assert reason is not None and "outside the owner's" in reason
