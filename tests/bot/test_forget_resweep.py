"""/forget-me reaches work in flight: the tombstone agents check, and the second deletion once that work has
settled, which a bot restart does not lose."""

from __future__ import annotations

from studio import Studio

from storage import keys, tombstones


async def test_forget_me_sweeps_again_after_a_restart(studio: Studio) -> None:
    st = studio
    await st.bot.close()  # type: ignore[union-attr]
    st.settings = st.settings.model_copy(update={"deletion_resweep_s": 5.0})
    await st.start()
    model_id = st.seed_model(st.alice)
    st.b.blobs.put(keys.model_key(st.alice.id, model_id), b"weights")

    inter = await st.sim.invoke_command(st.alice, st.channel, "forget-me")
    await inter.wait_response()
    confirm = await inter.wait_original(lambda m: True)
    click = await st.sim.click(st.alice, confirm, f"pg:forget:{st.alice.id}")
    await click.wait_followup()
    assert list(st.b.blobs.list(keys.user_prefix(st.alice.id))) == []
    assert tombstones.is_forgotten(st.b.blobs, st.alice.id)  # agents drop the member's jobs from now on
    assert not tombstones.is_forgotten(st.b.blobs, st.bob.id)
    sweeps = list(st.b.blobs.list(keys.SWEEPS_PREFIX))
    assert sweeps == [keys.sweep_key(f"member-{st.alice.id}")]

    await st.bot.close()  # type: ignore[union-attr]
    # No GPU agent runs in the bot's tests: this put stands in for an agent's upload that was already under
    # way when the member was forgotten and landed after the receipt.
    late = keys.render_key(st.alice.id, "jlate", 0)
    st.b.blobs.put(late, b"\x89PNG late")
    await st.start()
    await st.sim.wait_until(lambda: not st.b.blobs.exists(late), 15)
    await st.sim.wait_until(lambda: not list(st.b.blobs.list(keys.SWEEPS_PREFIX)), 5)
    assert list(st.b.blobs.list("users/")) == []
    assert tombstones.is_forgotten(st.b.blobs, st.alice.id)
