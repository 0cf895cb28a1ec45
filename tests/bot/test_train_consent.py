"""/train states plainly that the photos must be of yourself: in the command's description and in its first
reply (accepted or not), through the real discord.py client and the sim."""

from __future__ import annotations

from pathlib import Path

from studio import Studio, private_answer

from bot.cogs.train import CONSENT

DEMO = Path(__file__).resolve().parents[2] / "photogen" / "assets" / "demo_photos"


async def test_train_says_photos_must_be_of_yourself(studio: Studio) -> None:
    st = studio
    command = st.sim.find_command(st.channel, "train")
    assert command is not None and "only photos of you" in command["description"]
    photo1 = next(o for o in command["options"] if o["name"] == "photo1")
    assert "only you" in photo1["description"]

    one = (DEMO / "01-portrait.jpg").read_bytes()  # one real photo: refused (too few), still told
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "train", {"name": "me", "class_word": "woman"}, attachments=[("1.jpg", one)]
    )
    reply = await private_answer(
        inter, timeout=60
    )  # a refusal is the member's alone, the consent line with it
    assert reply.content == CONSENT and "of **you**" in reply.content and "anyone else" in reply.content
    assert reply.embeds and "accepted" not in reply.embeds[0]["title"].lower()

    photos = [(p.name, p.read_bytes()) for p in sorted(DEMO.glob("*.jpg"))[:6]]
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "train", {"name": "me", "class_word": "woman"}, attachments=photos
    )
    reply = await inter.wait_original(lambda m: not m.loading, timeout=120)
    assert reply.embeds[0]["title"] == "Training order accepted", reply.embeds
    assert reply.content == CONSENT
