"""/train's intake never holds up the rest of the bot (issue 11, item 5), over the real discord.py client and the
sim: photo checks run on their own pool, one intake per member at a time, and an upload over the byte budget is
refused before anything is fetched, leaving nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from studio import Studio, answer, order_rows, queued_messages, stored_user_blobs
from test_intake_budget import zip_of

from bot.services import intake
from photogen.assets import demo_photos


class HeldIntake:
    """Holds every photo check at its start until released, then runs the real check. The hold stands in for
    a slow intake (a large upload on a loaded machine) so the test can look at the bot while intakes are in
    flight without timing anything."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.release = threading.Event()
        self.entered = 0
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            self.entered += 1
            self.threads.append(threading.current_thread().name)
        self.release.wait(120)
        return self.real(*args)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldIntake]:
    hold = HeldIntake(intake.check)
    monkeypatch.setattr(intake, "check", hold)
    try:
        yield hold
    finally:
        hold.release.set()  # never leave a bot thread waiting, whatever the test did


async def _start_train(st: Studio, member, files: list[tuple[str, bytes]]):
    return await st.sim.invoke_command(
        member, st.channel, "train", {"name": "me", "class_word": "woman"}, attachments=files
    )


async def test_other_commands_answer_while_many_intakes_are_in_flight(
    studio: Studio, held: HeldIntake
) -> None:
    st = studio
    # Nine intakes at once (one of them a zip of eight photos): before, their checks filled the 8 threads every
    # command shares, and /queue — answered within Discord's 3 seconds — waited behind them.
    st.settings = st.settings.model_copy(update={"intake_workers": 9})
    await st.restart()
    photos = demo_photos()
    members = [st.alice] + [st.sim.add_member(st.guild, f"member{n}") for n in range(8)]
    uploads = [[("all.zip", zip_of(photos))]] + [[photos[n % len(photos)]] for n in range(8)]
    trains = [await _start_train(st, m, files) for m, files in zip(members, uploads, strict=True)]
    for inter in trains:
        assert (await inter.wait_response()).deferred
    await st.sim.wait_until(lambda: held.entered >= 8, 30)  # every thread the old shared pool had is now held

    queue = await st.sim.invoke_command(st.bob, st.channel, "queue", {})
    queued = await queue.wait_response()  # the sim's 3-second interaction deadline
    assert queued.ephemeral and "Queue" in str(queued.embeds)
    assert not held.release.is_set() and held.entered >= 8  # answered while every intake was still in flight
    assert all(name.startswith("intake") for name in held.threads)

    held.release.set()
    for inter in trains:
        report = await answer(inter, timeout=120)  # a refusal is the member's alone: a private followup
        assert report.embeds, "every intake ends in a report"
    assert "8 of 8 photos are good" in str((await trains[0].wait_original(lambda m: not m.loading)).embeds)


async def test_a_second_train_by_the_same_member_waits_for_the_first(
    studio: Studio, held: HeldIntake
) -> None:
    st = studio
    photos = demo_photos()
    first = await _start_train(st, st.alice, photos[:5])
    assert (await first.wait_response()).deferred
    await st.sim.wait_until(lambda: held.entered == 1, 30)

    again = await _start_train(st, st.alice, photos[5:])
    refused = await again.wait_response()
    assert refused.ephemeral and "still being checked" in refused.content
    other = await _start_train(st, st.bob, photos[:1])  # another member is not held up by alice's intake
    assert (await other.wait_response()).deferred

    held.release.set()
    report = await first.wait_original(lambda m: not m.loading, timeout=120)
    assert "5 of 5 photos are good" in str(report.embeds)
    assert len(stored_user_blobs(st.b)) == 5 and order_rows(st.b) == 1  # the refused one stored nothing
    await answer(other, timeout=120)
    later = await _start_train(st, st.alice, photos[5:])  # the member is free again once the first answered
    assert (await later.wait_response()).deferred
    await answer(later, timeout=120)


async def test_an_upload_over_the_byte_budget_is_refused_before_any_download(studio: Studio) -> None:
    st = studio
    photos = demo_photos()
    st.settings = st.settings.model_copy(update={"intake_max_total_bytes": 200 * 1024})
    await st.restart()
    inter = await _start_train(
        st, st.alice, [(f"part{n}.zip", zip_of(photos[n : n + 2])) for n in range(0, 8, 2)]
    )
    refused = await inter.wait_response()
    assert refused.ephemeral, "a refusal says nothing to the channel"
    text = str(refused.embeds) + refused.content
    assert "more than 200 KB in all" in text and "Send fewer or smaller photos" in text
    assert not [r for r in st.sim.requests if "/attachments/" in r.path]
    assert stored_user_blobs(st.b) == [] and order_rows(st.b) == 0 and queued_messages(st.b) == 0
