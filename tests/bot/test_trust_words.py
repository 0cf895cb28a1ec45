"""Issue 11, "Trust" — words: blocked words seen through look-alikes, invisible characters and separators,
but on word boundaries; U/V/re-roll re-checked against the server's current list; refusals (a ban and its
reason, a balance) seen by the member alone; prompts echoed with markdown, mentions and control characters
neutralised."""

from __future__ import annotations

import asyncio

import pytest
from studio import Studio, order_rows, private_answer

from bot.checks import find_blocked_word
from bot.wording import neutralise
from storage import read_session, standing


@pytest.mark.parametrize(
    "prompt",
    [
        "a forbidden thing",
        "a FORBIDDEN thing",
        "a for\u200bbid\u200bden thing",  # zero-width spaces
        "a forbid\u00adden thing",  # soft hyphen
        "a \uff46\uff4f\uff52\uff42\uff49\uff44\uff44\uff45\uff4e thing",  # fullwidth
        "a f\u043erbi\u0501\u0501\u0435n thing",  # Cyrillic о, ԁ, е
        "a f-o-r-b-i-d-d-e-n thing",
        "a f.o.r.b.i.d.d.e.n thing",
        "a f o r b i d d e n thing",
        "a förbídden thing",  # accents
        "𝐟𝐨𝐫𝐛𝐢𝐝𝐝𝐞𝐧",  # mathematical bold
        "forbidden!",
    ],
)
def test_blocked_words_are_seen_through_disguises(prompt: str) -> None:
    assert find_blocked_word(prompt, ("Forbidden",)) == "Forbidden"


@pytest.mark.parametrize(
    ("prompt", "word"),
    [
        ("a class photo", "ass"),
        ("passport photo by the grass", "ass"),
        ("an assistant at work", "ass"),
        ("a scunthorpe street sign", "cunt"),
        ("a grapefruit", "rape"),
        ("the forbidden city", "bidden"),
    ],
)
def test_blocked_words_match_whole_words_only(prompt: str, word: str) -> None:
    assert find_blocked_word(prompt, (word,)) is None
    assert find_blocked_word(f"{prompt} {word}", (word,)) == word


async def _block(st: Studio, word: str) -> None:
    admin = await st.sim.invoke_command(st.admin, st.channel, "admin blocked add", {"word": word})
    await admin.wait_response()


async def test_disguised_blocked_word_is_refused_privately_and_nothing_is_charged(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    await _block(st, "Forbidden")
    for prompt in (
        "a f\u200borbidden thing",
        "a \uff46\uff4f\uff52\uff42\uff49\uff44\uff44\uff45\uff4e thing",
        "a f\u043erbidden thing",
        "a f-o-r-b-i-d-d-e-n thing",
    ):
        inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": prompt})
        msg = await private_answer(inter)
        assert "does not allow" in str(msg.embeds).lower(), prompt
    assert st.b.queues.render.depth().backlog == 0 and order_rows(st.b) == 0
    # A word that merely contains a blocked one is fine.
    await _block(st, "ass")
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "a class photo"})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    assert st.b.queues.render.depth().backlog == 1


@pytest.mark.parametrize("button", ["up", "var", "rr"])
async def test_follow_ups_are_rechecked_against_the_current_list(studio: Studio, button: str) -> None:
    st = studio
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "a red fox in the snow"})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:up:{job.order_id}:0" in m.custom_ids(), 10
    )
    with read_session(st.b.engine) as s:
        credits = standing.credits_of(s, st.guild.id, st.alice.id)
    # The admins block a word of that prompt after the pictures were made.
    await _block(st, "f\u200bOX")
    click = await st.sim.click(st.alice, result, f"pg:{button}:{job.order_id}:0")
    msg = await private_answer(click)
    assert "does not allow" in str(msg.embeds).lower()
    assert st.b.queues.render.depth().backlog == 0 and order_rows(st.b) == 1
    with read_session(st.b.engine) as s:
        assert standing.credits_of(s, st.guild.id, st.alice.id) == credits


async def test_a_ban_reason_and_a_balance_are_never_shown_in_the_channel(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    ban = await st.sim.invoke_command(
        st.admin, st.channel, "admin ban", {"member": st.alice, "reason": "posted private photos of others"}
    )
    await ban.wait_response()
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "a lighthouse"})
    msg = await private_answer(inter)
    assert "posted private photos of others" in str(msg.embeds)
    await (
        await st.sim.invoke_command(st.admin, st.channel, "admin unban", {"member": st.alice})
    ).wait_response()

    st.settings = st.settings.model_copy(update={"starting_credits": 0})
    await st.restart()
    st.seed_model(st.bob)
    inter = await st.sim.invoke_command(st.bob, st.channel, "imagine", {"prompt": "a lighthouse"})
    msg = await private_answer(inter)
    assert "you have 0" in str(msg.embeds)
    public = " ".join(m.content + str(m.embeds) for m in st.sim.messages(st.channel) if not m.ephemeral)
    assert "posted private photos" not in public and "you have" not in public


async def test_prompts_are_echoed_neutralised(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    prompt = "**huge** ~~gone~~ `code` # title\n> quote \u202eevil\u200b @everyone [link](https://x.example)"
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": prompt})
    status = await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(
        st.channel, lambda m: f"pg:up:{job.order_id}:0" in m.custom_ids(), 10
    )
    assert job.prompt.endswith(prompt)  # the engine gets the prompt as typed
    for shown in (status.embeds[0]["title"], result.embeds[0]["title"]):
        assert (
            "\u202e" not in shown
            and "\u200b" not in shown.replace("@\u200beveryone", "")
            and "\n" not in shown
        )
        assert "\\*\\*huge\\*\\*" in shown and "\\~\\~gone\\~\\~" in shown and "\\`code\\`" in shown, shown
        assert "@\u200beveryone" in shown and "\\[link](" in shown, shown  # no masked link


@pytest.mark.parametrize("text", ["*" * 900, "a_" * 600, "@everyone " * 200, "x" * 99 + "*" * 10])
def test_a_neutralised_prompt_stays_inside_its_limit(text: str) -> None:
    shown = neutralise(text, 100)
    assert len(shown) <= 100 and shown.endswith("…")
    body = shown.removesuffix("…")
    assert (len(body) - len(body.rstrip("\\"))) % 2 == 0  # no half escape before the ellipsis
    assert neutralise("short *one*", 100) == "short \\*one\\*"
