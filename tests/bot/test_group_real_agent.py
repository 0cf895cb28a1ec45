"""/group end to end with the real GPU agent: three members over the project's Discord-compatible server, the
two others asked and accepting, then the real agent (in a thread of this process, CPU, tiny models: the pose
ControlNet, CLIPSeg and the per-member inpainting passes really run) renders the picture with each member's own
LoRA file, and the bot posts it to everyone pictured. The members' LoRAs are random ones of the real format
(``save_tiny_lora``), as a finished /train would have stored them."""

from __future__ import annotations

import asyncio
import io
import threading

from PIL import Image
from studio import Studio

from gpu_agent.agent import Agent
from gpu_agent.engine.tiny import save_tiny_lora
from photogen.discord_sim.models import SimMember
from storage import consent, keys, order_store, read_session, transaction


def _trained(st: Studio, member: SimMember, token: str, seed: int) -> str:
    model_id = f"m{member.id}{token}"
    lora = save_tiny_lora("tiny-sd", st.tmp / "loras" / f"{model_id}.safetensors", seed=seed)
    st.b.blobs.put(
        keys.model_key(member.id, model_id), lora.read_bytes(), content_type="application/octet-stream"
    )
    with transaction(st.b.engine) as s:
        order_store.add_model(
            s,
            user_id=member.id,
            name="me",
            class_word="person",
            subject_token=token,
            base_model="tiny-sd",
            model_id=model_id,
        )
        order_store.mark_model_ready(s, model_id, keys.model_key(member.id, model_id))
    return model_id


async def test_three_members_accept_and_the_real_agent_renders_the_group_picture(studio: Studio) -> None:
    st = studio
    carol = st.sim.add_member(st.guild, "carol")
    for n, (member, token) in enumerate([(st.alice, "vqzk"), (st.bob, "bdfg"), (carol, "lmnp")]):
        _trained(st, member, token, seed=n + 1)
    agent = Agent(
        st.settings.model_copy(
            update={
                "agent_work_dir": str(st.tmp / "agent"),
                "model_cache_dir": str(st.tmp.parent / "models"),
                "device": "cpu",
                "imds_url": "",
                "agent_metrics_port": 0,
                "agent_poll_wait_s": 0.2,
                "agent_progress_every_s": 0,
                "render_size": 64,
                "render_steps": 2,
                "group_controlnet_model": "tiny-controlnet",
                "group_segmenter_model": "tiny-clipseg",  # tiny test models
            }
        ),
        queues=st.b.queues,
        blobs=st.b.blobs,
    )
    stop = threading.Event()
    worker = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    worker.start()
    try:
        inter = await st.sim.invoke_command(
            st.alice, st.channel, "group", {"member2": st.bob, "member3": carol, "preset": "band", "count": 1}
        )
        status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
        order_id = next(c.split(":")[2] for c in status.custom_ids() if c.startswith("pg:cancel:"))
        for member in (st.bob, carol):
            request = await st.sim.wait_for_message(
                st.channel, lambda m, who=member: f"pg:gc:{order_id}:{who.id}:a" in m.custom_ids(), timeout=10
            )
            await (await st.sim.click(member, request, f"pg:gc:{order_id}:{member.id}:a")).wait_response()
        with read_session(st.b.engine) as s:
            assert {r.status for r in consent.consents(s, order_id)} == {"accepted"}

        result = await st.sim.wait_for_message(
            st.channel, lambda m: f"pg:gdel:{order_id}:0" in m.custom_ids(), timeout=240
        )
        mentioned = {int(u) for u in (result.allowed_mentions or {}).get("users", [])}
        assert mentioned == {st.alice.id, st.bob.id, carol.id}
        assert result.attachments, "the group picture is attached"
        with read_session(st.b.engine) as s:
            order = order_store.get_order(s, order_id)
            images = order_store.images_of_order(s, order_id)
        assert order is not None and order.status == "delivered"
        assert len(images) == 1
        picture = Image.open(io.BytesIO(st.b.blobs.get(images[0].blob_key)))
        assert picture.size[0] >= 64 and picture.getextrema() != (
            (0, 0),
            (0, 0),
            (0, 0),
        )  # not a black square
    finally:
        stop.set()
        await asyncio.to_thread(worker.join, 60)
