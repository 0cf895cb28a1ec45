"""Instruction edits end to end, read as a member reads them: over the project's Discord-compatible server (the
real discord.py client), with the real GPU agent in a thread of this process (CPU, tiny models: the 8-channel
InstructPix2Pix really edits, NudeNet and the likeness check really run). Alice edits picture 2 of her /imagine
result through its Edit button and modal, then a photo of herself she uploads with /edit; both come back with the
usual buttons, each charged like a render. Bob cannot edit her pictures; a photo that is not of one person is
refused privately with nothing charged, and so is a photo of someone else than her model's person."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from studio import MANAGE_GUILD, Studio, bot_settings, private_answer

from bot.errors import NotAllowed, Refused
from bot.services import edit
from gpu_agent.agent import Agent
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.tiny import save_tiny_lora
from gpu_agent.photos.likeness import build_reference
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos
from photogen.discord_sim.models import SimMessage
from photogen.discord_sim.server import DiscordSim
from storage import keys, order_store, read_session, transaction


@pytest.fixture
async def studio(sim: DiscordSim, tmp_path: Path) -> AsyncIterator[Studio]:
    guild = sim.add_guild("Photo Club")
    channel = sim.add_channel(guild, "studio")
    admin_role = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    st = Studio(
        sim=sim,
        guild=guild,
        channel=channel,
        admin_role=admin_role,
        tmp=tmp_path,
        # 64 px face crops (the tiny models' size), so an uploaded photo is edited at the test size.
        settings=bot_settings(
            sim, tmp_path, bot_sync_guild_ids=[guild.id], base_model="tiny-sd", train_resolution=64
        ),
        alice=sim.add_member(guild, "alice"),
        bob=sim.add_member(guild, "bob"),
        admin=sim.add_member(guild, "ada", roles=[admin_role]),
    )
    await st.start()
    try:
        yield st
    finally:
        if st.bot is not None:
            await st.bot.close()


def _trained(st: Studio) -> str:
    """Alice's finished /train: a LoRA of the real format and her likeness reference, as the agent stores them."""
    model_id = f"m{st.alice.id}"
    lora = save_tiny_lora("tiny-sd", st.tmp / "loras" / f"{model_id}.safetensors", seed=7)
    st.b.blobs.put(keys.model_key(st.alice.id, model_id), lora.read_bytes())
    photos = [Image.open(io.BytesIO(data)).convert("RGB") for _, data in demo_photos()[:2]]
    reference = build_reference(photos, None)
    assert reference is not None
    st.b.blobs.put(keys.likeness_key(st.alice.id, model_id), reference.to_json())
    with transaction(st.b.engine) as s:
        order_store.add_model(
            s,
            user_id=st.alice.id,
            name="holiday",
            class_word="woman",
            subject_token="vqzk",
            base_model="tiny-sd",
            model_id=model_id,
        )
        order_store.mark_model_ready(s, model_id, keys.model_key(st.alice.id, model_id))
    return model_id


def _agent(st: Studio) -> Agent:
    settings = st.settings.model_copy(
        update={
            "agent_work_dir": str(st.tmp / "agent"),
            "model_cache_dir": str(st.tmp.parent / "models"),
            "device": "cpu",
            "imds_url": "",
            "agent_metrics_port": 0,
            "agent_poll_wait_s": 0.2,
            "agent_progress_every_s": 0,
            "edit_model": "tiny-ip2p",  # the tiny random InstructPix2Pix
        }
    )
    return Agent(settings, queues=st.b.queues, blobs=st.b.blobs)


def _order_of(status: SimMessage) -> str:
    return next(c.split(":")[2] for c in status.custom_ids() if c.startswith("pg:cancel:"))


def _result_of(order_id: str):
    return lambda m: f"pg:rr:{order_id}:0" in m.custom_ids() and not m.deleted


def _stored_picture(st: Studio, order_id: str) -> bytes:
    with read_session(st.b.engine) as s:
        images = order_store.images_of_order(s, order_id)
    assert len(images) == 1
    return st.b.blobs.get(images[0].blob_key)


async def test_edit_a_result_with_the_edit_button_and_an_uploaded_photo_with_slash_edit(
    studio: Studio,
) -> None:
    st = studio
    model_id = await asyncio.to_thread(_trained, st)  # (building the LoRA must not block the bot's loop)
    cost = st.settings.render_credit_cost
    agent = _agent(st)
    stop = threading.Event()
    worker = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    worker.start()
    try:
        # /imagine, two pictures: the result carries the Edit button beside U/V/🔄/🗑.
        inter = await st.sim.invoke_command(
            st.alice, st.channel, "imagine", {"prompt": "at the beach", "count": 2, "seed": 11}
        )
        first = _order_of(await inter.wait_original(lambda m: bool(m.embeds) and not m.loading))
        result = await st.sim.wait_for_message(st.channel, _result_of(first), timeout=120)
        assert f"pg:edit:{first}" in result.custom_ids()

        # Bob cannot edit Alice's pictures: told privately, no modal.
        click = await st.sim.click(st.bob, result, f"pg:edit:{first}")
        refusal = await private_answer(click)
        assert "belong to the member who made" in str(refusal.embeds)

        # Alice: Edit → a modal asking what to change and which picture.
        credits_before = st.credits(st.alice)
        click = await st.sim.click(st.alice, result, f"pg:edit:{first}")
        modal = await click.wait_response()
        assert modal.type == 9
        inputs = [c["components"][0] for c in modal.data["components"]]
        assert [i["custom_id"] for i in inputs] == ["instruction", "picture"]
        assert inputs[1]["label"] == "Which picture (1–2)"
        submit = await st.sim.submit_modal(st.alice, click, {"instruction": "make it night", "picture": "2"})
        await submit.wait_response()
        status = await submit.wait_original(lambda m: bool(m.embeds) and not m.loading)
        assert status.embeds[0]["title"] == "Edit of picture 2: make it night"
        edited = _order_of(status)
        assert st.credits(st.alice) == credits_before - cost, "charged like a one-picture render"

        edit_result = await st.sim.wait_for_message(st.channel, _result_of(edited), timeout=120)
        assert edit_result.content.startswith(f"<@{st.alice.id}>")
        embed = edit_result.embeds[0]
        assert embed["title"] == "Edit of picture 2: make it night"
        assert {f["name"]: f["value"] for f in embed["fields"]}["Model"] == "holiday"
        assert set(edit_result.files) == {"1.png"}
        assert {
            f"pg:up:{edited}:0",
            f"pg:var:{edited}:0",
            f"pg:rr:{edited}:0",
            f"pg:del:{edited}:0",
            f"pg:edit:{edited}",
        } <= set(edit_result.custom_ids())
        posted = edit_result.files["1.png"]
        params = read_png_params(posted)
        assert params.mode == "edit" and params.lora == model_id and params.base_model == "tiny-ip2p"
        assert params.prompt == "photo of vqzk woman, make it night"
        with read_session(st.b.engine) as s:
            order = order_store.get_order(s, edited)
            parent_images = order_store.images_of_order(s, first)
        assert order is not None and order.status == "delivered"
        job = order.params
        assert job["source_key"] == parent_images[1].blob_key, "picture 2 was edited"
        assert posted == _stored_picture(st, edited)

        # /edit with a photo that is not of one person: refused privately, nothing stored or charged.
        credits_before = st.credits(st.alice)
        blank = io.BytesIO()
        Image.new("RGB", (256, 256), (120, 160, 200)).save(blank, "JPEG")
        inter = await st.sim.invoke_command(
            st.alice,
            st.channel,
            "edit",
            {"instruction": "make it night", "photo": ("wall.jpg", blank.getvalue())},
        )
        refusal = await private_answer(inter, timeout=30)
        assert "could not find a face" in str(refusal.embeds) and "Nothing was stored" in str(refusal.embeds)
        assert st.credits(st.alice) == credits_before

        # /edit with a photo of someone else: her model's likeness reference says so; nothing charged.
        inter = await st.sim.invoke_command(
            st.alice,
            st.channel,
            "edit",
            {"instruction": "make it night", "photo": ("grace.jpg", OTHER_PERSON_PHOTO.read_bytes())},
        )
        refusal = await private_answer(inter, timeout=30)
        assert "does not look like the person your model was trained on" in str(refusal.embeds)
        assert st.credits(st.alice) == credits_before

        # /edit with a photo of herself: checked like a /train photo, edited with her model, posted with buttons.
        name, photo = demo_photos()[2]  # (a close-up: at the tests' 64 px crops a JPEG decodes reduced)
        inter = await st.sim.invoke_command(
            st.alice,
            st.channel,
            "edit",
            {"instruction": "give me a red scarf", "photo": (name, photo), "image_guidance": 2.0},
        )
        status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading, timeout=30)
        uploaded = _order_of(status)
        assert status.embeds[0]["title"] == "Edit: give me a red scarf"
        assert st.credits(st.alice) == credits_before - cost
        upload_result = await st.sim.wait_for_message(st.channel, _result_of(uploaded), timeout=120)
        assert {f"pg:up:{uploaded}:0", f"pg:edit:{uploaded}"} <= set(upload_result.custom_ids())
        picture = upload_result.files["1.png"]
        assert Image.open(io.BytesIO(picture)).size == (64, 64), "the face crop, at the training size"
        params = read_png_params(picture)
        assert params.mode == "edit" and params.sampler.endswith("image guidance 2")
        # The crop was stored under her own photos, without the upload's metadata.
        source = keys.photo_key(st.alice.id, uploaded, 0)
        assert st.b.blobs.exists(source)
        assert not Image.open(io.BytesIO(st.b.blobs.get(source))).info.get("exif")
    finally:
        stop.set()
        await asyncio.to_thread(worker.join, 60)


async def test_group_pictures_and_others_pictures_cannot_be_edited(studio: Studio) -> None:
    """Group results carry no Edit button (bot/group_views.py); a crafted click on one is refused all the same,
    for the caller too: the others agreed to that picture, not to changes of it. Someone pictured in it is not
    its owner either, and an unfinished result has nothing to edit yet."""
    st = studio
    with transaction(st.b.engine) as s:
        members = {"members": [str(st.alice.id), str(st.bob.id)]}
        group = order_store.create_order(
            s, user_id=st.alice.id, kind="render", guild_id=st.guild.id, params={"group": members}
        ).id
        order_store.mark_delivered(s, group)
        pending = order_store.create_order(
            s, user_id=st.alice.id, kind="render", guild_id=st.guild.id, params={"mode": "txt2img"}
        ).id
    with pytest.raises(Refused, match="Group pictures cannot be edited"):
        await asyncio.to_thread(edit.editable_order, st.b, group, st.alice.id)
    with pytest.raises(NotAllowed, match="belong to the member who made"):
        await asyncio.to_thread(edit.editable_order, st.b, group, st.bob.id)
    with pytest.raises(Refused, match="not finished"):
        await asyncio.to_thread(edit.editable_order, st.b, pending, st.alice.id)
