"""/train over the real sockets: photos checked at the door (real face detection), stored as face crops, the
order recorded and charged, the TrainJob queued; the agent's events then deliver the result exactly once. Bad
uploads get a clear reply and leave nothing behind: no blobs, no order rows, no queue messages."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image, ImageOps
from studio import Studio, answer, order_rows, queued_messages, stored_user_blobs

from storage import order_store, read_session

DEMO = Path(__file__).resolve().parents[2] / "photogen" / "assets" / "demo_photos"


def good_photos(faces_dir: Path) -> list[tuple[str, bytes]]:
    """Five or more photos of one person that pass the checks: the shipped demo set when it exists, else
    different crops, zooms and mirror images of the astronaut portrait (not near-duplicates of each other)."""
    shipped = sorted(DEMO.glob("*.jpg"))
    if len(shipped) >= 5:
        return [(p.name, p.read_bytes()) for p in shipped]
    a = Image.open(faces_dir / "astronaut.png").convert("RGB")
    variants = [
        a,
        ImageOps.mirror(a),
        a.crop((50, 0, 450, 400)),
        ImageOps.mirror(a.crop((0, 0, 400, 300))).resize((500, 375)),
        a.crop((100, 0, 512, 412)).rotate(-6),
    ]
    return [(f"astronaut{i}.jpg", _jpeg(v)) for i, v in enumerate(variants)]


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def png_bomb_header(width: int = 50_000, height: int = 50_000) -> bytes:
    """A well-formed PNG whose IHDR claims width×height; the few bytes of pixel data never add up to that."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue", "green")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def zip_of(files: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files:
            zf.writestr(name, data)
    return out.getvalue()


async def _train(st: Studio, member, files: list[tuple[str, bytes]], name: str = "me"):
    inter = await st.sim.invoke_command(
        member, st.channel, "train", {"name": name, "class_word": "woman"}, attachments=files
    )
    response = await inter.wait_response()
    assert response.deferred, "the bot must defer before downloading or checking photos"
    return await answer(inter, timeout=60)


def _nothing_stored(st: Studio) -> None:
    assert stored_user_blobs(st.b) == []
    assert order_rows(st.b) == 0
    assert queued_messages(st.b) == 0


async def test_train_then_result_posted_exactly_once(studio: Studio, faces_dir: Path) -> None:
    st = studio
    photos = good_photos(faces_dir)
    report = await _train(st, st.alice, photos, name="holiday")
    embed = report.embeds[0]
    assert embed["title"] == "Training order accepted", embed
    assert "credits left" not in str(report.embeds).lower() and not report.ephemeral  # public: the order only
    balance = st.settings.starting_credits - st.settings.train_credit_cost
    await st.sim.wait_until(lambda: any(m.ephemeral for m in st.sim.messages(st.channel)), 10)
    (private,) = [m for m in st.sim.messages(st.channel) if m.ephemeral]
    assert private.content == f"{balance} credit(s) left."
    order_id = next(cid for cid in report.custom_ids() if cid.startswith("pg:cancel:")).split(":")[2]
    assert any("/attachments/" in r.path for r in st.sim.requests), "the photos came from the sim's CDN"
    job = await asyncio.to_thread(st.agent.take_train)
    assert (
        job.order_id == order_id and job.class_word == "woman" and job.params.steps == st.settings.train_steps
    )
    assert len(job.photo_keys) == len(photos)
    for key in job.photo_keys:
        crop = Image.open(io.BytesIO(st.b.blobs.get(key)))
        assert crop.format == "JPEG" and crop.size == (job.params.resolution,) * 2 == (512, 512)
        assert not crop.getexif(), "stored crops carry no metadata"
    assert st.credits(st.alice) == st.settings.starting_credits - st.settings.train_credit_cost

    await asyncio.to_thread(st.agent.finish_train, job)
    ready = await st.sim.wait_for_message(st.channel, lambda m: "trained and ready" in m.content, timeout=10)
    assert "holiday" in ready.content and len(ready.files) == 1
    await st.sim.wait_until(lambda: "delivered" in str(st.sim.all_messages[report.id].embeds), 5)
    await st.restart()
    await asyncio.sleep(0.5)
    assert len([m for m in st.sim.messages(st.channel) if "trained and ready" in m.content]) == 1
    choices = await st.sim.autocomplete(
        st.alice, st.channel, "imagine", {"prompt": "x", "model": "hol"}, "model"
    )
    assert choices == [{"name": "holiday", "value": job.model_id}]


async def test_bad_uploads_get_clear_replies_and_leave_nothing(studio: Studio, faces_dir: Path) -> None:
    st = studio
    good = good_photos(faces_dir)
    truncated = good[0][1][: len(good[0][1]) // 2]
    messi = Image.open(faces_dir / "messi5.jpg")
    two_people = [*good[:4], ("messi.jpg", _jpeg(messi)), ("messi2.jpg", _jpeg(ImageOps.mirror(messi)))]
    cases: list[tuple[str, list[tuple[str, bytes]], str]] = [
        ("text named .jpg", [("face.jpg", b"this is not a picture at all\n" * 20)], "not a picture"),
        ("0 bytes", [("empty.jpg", b"")], "not a picture"),
        ("truncated JPEG", [("cut.jpg", truncated)], "not a picture"),
        ("50,000 x 50,000 PNG header", [("bomb.png", png_bomb_header())], "more pixels"),
        ("animated GIF", [("moving.gif", animated_gif())], "not a picture"),
        ("30 MB file", [("huge.jpg", b"\xff\xd8\xff" + b"\0" * (30 * 1024 * 1024))], "limit is 20 MB"),
        (
            "25 photos",
            [("set.zip", zip_of([(f"{i}.jpg", good[i % len(good)][1]) for i in range(25)]))],
            "at most 20",
        ),
        ("two people", two_people, "refused"),
    ]
    for what, files, expected in cases:
        message = await _train(st, st.alice, files)
        text = str(message.embeds).lower() + message.content.lower()
        # Either the per-photo report or, for an upload refused as a whole (count, zip), one error line.
        assert message.embeds[0].get("title") in (None, "Photos refused — nothing was stored"), (what, text)
        assert expected.lower() in text, (what, text)
        assert not message.custom_ids(), what  # no Cancel button: there is no order
        assert message.ephemeral and st.sim.all_messages[message.id] is message, what  # the member's only
        assert all(m.ephemeral or m.deleted for m in st.sim.messages(st.channel) if m.interaction_id), what
        _nothing_stored(st)
    # The two-people report names the odd photos.
    assert "messi" in text
    with read_session(st.b.engine) as s:
        assert order_store.get_user(s, st.alice.id) is None  # not even a member row, let alone a charge


async def test_train_without_credits_refused_before_any_check(studio: Studio, faces_dir: Path) -> None:
    st = studio
    st.settings = st.settings.model_copy(update={"starting_credits": 3})
    await st.restart()
    message = await _train(st, st.bob, good_photos(faces_dir)[:1])
    assert "costs 10 credit(s) and you have 3" in str(message.embeds)
    assert message.ephemeral, "a member's balance is not the channel's business"
    # Refused before the download: the sim served no attachment to the bot.
    assert not [r for r in st.sim.requests if "/attachments/" in r.path]
    _nothing_stored(st)
