"""What a member sees: results headed with their own words (never the preset's prompt, never a raw {subject}), one
grid with seed, model and style, a full grid of 4 by default, the singles on request or through U; /train offers
people only."""

from __future__ import annotations

import asyncio

from studio import Studio


def _result_of(order_id: str):
    return lambda m: any(cid.startswith(f"pg:rr:{order_id}:") for cid in m.custom_ids())


def _seen(message) -> str:
    return f"{message.content} {message.embeds}"


async def test_a_styled_result_reads_well(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice, name="holiday")
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "imagine", {"prompt": "in a navy suit", "style": "headshot", "seed": 42}
    )
    status = await inter.wait_original(lambda m: not m.loading and bool(m.embeds))
    assert status.embeds[0]["title"] == "in a navy suit", status.embeds
    job = await asyncio.to_thread(st.agent.take_render)
    assert job.count == st.settings.render_default_count == 4, "no count given: a full grid"
    assert "{subject}" in job.prompt and "in a navy suit" in job.prompt  # the engine fills the preset in

    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(st.channel, _result_of(job.order_id), timeout=10)
    assert set(result.files) == {"grid.jpg"}, "one grid, not the grid and every single too"
    embed = result.embeds[0]
    assert embed["title"] == "in a navy suit"
    assert embed["image"]["url"] == "attachment://grid.jpg"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {
        "Seed": "42 (pictures 1–4: 42–45)",
        "Model": "holiday",
        "Style": "Professional headshot",
    }
    assert "{subject}" not in _seen(result) and "headshot photo of" not in _seen(result)
    oid = job.order_id
    assert {f"pg:up:{oid}:3", f"pg:var:{oid}:0", f"pg:one:{oid}:0", f"pg:del:{oid}:0"} <= set(
        result.custom_ids()
    )

    # The singles on request, for the member alone.
    click = await st.sim.click(st.alice, result, f"pg:one:{oid}:0")
    assert (await click.wait_response()).ephemeral
    singles = await click.wait_followup()
    assert sorted(singles.files) == ["1.png", "2.png", "3.png", "4.png"]
    click = await st.sim.click(st.bob, result, f"pg:one:{oid}:0")
    assert "belong" in str((await click.wait_response()).embeds).lower()

    # U2: one picture, headed with what it is and the member's words; no grid, no Singles button.
    click = await st.sim.click(st.alice, result, f"pg:up:{oid}:1")
    await click.wait_response()
    upscale = await asyncio.to_thread(st.agent.take_render)
    up_status = await click.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert up_status.embeds[0]["title"] == "Upscale of picture 2: in a navy suit"
    await asyncio.to_thread(st.agent.finish_render, upscale)
    single = await st.sim.wait_for_message(st.channel, _result_of(upscale.order_id), timeout=10)
    assert set(single.files) == {"1.png"} and single.embeds[0]["image"]["url"] == "attachment://1.png"
    assert single.embeds[0]["title"] == "Upscale of picture 2: in a navy suit"
    assert {f["name"]: f["value"] for f in single.embeds[0]["fields"]}["Seed"] == "43"
    assert not any(cid.startswith("pg:one:") for cid in single.custom_ids())

    # A follow-up of a follow-up is headed with what it is and the member's words, not a chain of labels.
    click = await st.sim.click(st.alice, single, f"pg:var:{upscale.order_id}:0")
    await click.wait_response()
    await asyncio.to_thread(st.agent.take_render)
    var_status = await click.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert var_status.embeds[0]["title"] == "Variations of picture 1: in a navy suit"


async def test_a_plain_prompt_with_subject_never_shows_the_placeholder(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice, name="me")
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "imagine", {"prompt": "{subject} on a bike", "count": 2}
    )
    await inter.wait_original(lambda m: not m.loading and bool(m.embeds))
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(st.channel, _result_of(job.order_id), timeout=10)
    assert result.embeds[0]["title"] == "you on a bike" and "{subject}" not in _seen(result)
    fields = {f["name"]: f["value"] for f in result.embeds[0]["fields"]}
    assert fields["Style"] == "your own prompt" and fields["Model"] == "me"


async def test_train_offers_people_only(studio: Studio) -> None:
    st = studio
    commands = {c["name"]: c for c in st.sim.commands_for(st.guild.id)}
    option = next(o for o in commands["train"]["options"] if o["name"] == "class_word")
    assert {c["value"] for c in option["choices"]} == {
        "man",
        "woman",
        "person",
    }  # adults: no pets, no children
    for word in ("dog", "child"):
        inter = await st.sim.invoke_command(
            st.alice,
            st.channel,
            "train",
            {"name": "rex", "class_word": word},
            attachments=[("rex.jpg", b"woof")],
        )
        response = await inter.wait_response()
        assert response.ephemeral and "not one of the choices" in str(response.embeds), response
    assert not any("/attachments/" in r.path for r in st.sim.requests), "refused before any download"
