"""Order logic the cogs call: the gates every command passes, placing train/render orders (rows, credits,
blobs, queue message), cancelling, the member's views of their orders and models, forgetting a member.

The synchronous functions take the Backends and run in a worker thread (`bot.run_blocking`); the async ones are
thin and only touch Discord or the in-memory caches.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import discord

from bot.backends import Backends
from bot.checks import GuildRules, check_channel, check_not_paused, find_blocked_word, require_guild
from bot.embeds import clip, order_status_embed
from bot.errors import Busy, NotAllowed, NotFound, Refused
from bot.services import admin, deletion, jobs
from bot.services.purge import purge_member
from bot.services.records import CancelResult, Placed, QueueOverview, QueuePosition
from bot.wording import neutralise
from cloud.messages import BackdropStyle, RenderJob, encode, new_id
from storage import FINAL_STATUSES, keys, lifecycle
from storage.contracts import JobKind
from storage.lifecycle import LimitReached, Limits, ModelView, NewModel, OrderView
from storage.standing import ALL_GUILDS

if TYPE_CHECKING:
    from bot.app import PhotogenBot

log = logging.getLogger(__name__)

FINAL = FINAL_STATUSES

# --- gates ---------------------------------------------------------------------------------------------------

_RULES_TTL_S = (
    30.0  # the bot is the only writer and drops the entry on every admin change; the TTL is a backstop
)


async def load_rules(bot: PhotogenBot, guild_id: int | None) -> GuildRules:
    if guild_id is None:
        return GuildRules(guild_id=0)
    hit = bot.rules_cache.get(guild_id)
    if hit is not None and time.monotonic() - hit[0] < _RULES_TTL_S:
        return hit[1]
    rules = await bot.run_blocking(admin.guild_rules, bot.backends, guild_id)
    bot.rules_cache[guild_id] = (time.monotonic(), rules)
    return rules


def forget_cached_rules(bot: PhotogenBot, guild_id: int | None) -> None:
    if guild_id is not None:
        bot.rules_cache.pop(guild_id, None)


async def gate_member(bot: PhotogenBot, interaction: discord.Interaction) -> GuildRules:
    """Every member command: a guild, an allowed channel, not banned, inside the rate limit."""
    guild_id = require_guild(interaction)
    rules = await load_rules(bot, guild_id)
    check_channel(interaction, rules)
    wait = bot.limiter.hit(interaction.user.id)
    if wait:
        raise Busy(f"Slow down a little: try again in {int(wait) + 1} s.")
    banned = await bot.run_blocking(admin.ban_reason, bot.backends, guild_id, interaction.user.id)
    if banned is not None:
        raise NotAllowed(
            "You are banned from using Photogen here." + (f" Reason: {clip(banned, 200)}" if banned else "")
        )
    return rules


async def gate_new_order(
    bot: PhotogenBot, interaction: discord.Interaction, *, kind: str, text: str | None = None
) -> GuildRules:
    """A new order: also the pause switch and the blocked words (limits and credits are re-checked atomically
    when the order row is written)."""
    rules = await gate_member(bot, interaction)
    check_not_paused(rules)
    if text is not None:
        refuse_blocked_words(text, rules)
    return rules


def refuse_blocked_words(text: str, rules: GuildRules) -> None:
    """Refuse a prompt holding one of the server's blocked words (new orders and U/V/re-roll alike)."""
    if find_blocked_word(text, rules.blocked_words) is not None:
        raise Refused(
            "Your prompt contains a word this server does not allow. Nothing was queued or charged."
        )


AGENT_FRESH_S = 600.0  # an agent heard from this recently counts as online


@contextmanager
def _limits_refused() -> Iterator[None]:
    """The order store's limit refusals as the member sees them."""
    try:
        yield
    except LimitReached as err:
        raise (NotAllowed if err.banned else Busy)(err.message) from None


def _limits(b: Backends, rules: GuildRules) -> Limits:
    s = b.settings
    return Limits(
        max_concurrent=rules.max_concurrent_orders or s.bot_max_concurrent_orders,
        daily_quota=rules.daily_quota or s.bot_daily_order_quota,
        starting_credits=s.starting_credits,
    )


def precheck_train(b: Backends, user_id: int, rules: GuildRules) -> None:
    with _limits_refused():
        lifecycle.precheck_order(
            b.engine, rules.guild_id, user_id, _limits(b, rules), b.settings.train_credit_cost
        )


# --- placing orders -----------------------------------------------------------------------------------------


def place_train_order(
    b: Backends,
    *,
    guild_id: int | None,
    channel_id: int | None,
    user_id: int,
    name: str,
    class_word: str,
    crops: list[bytes],
    rules: GuildRules,
) -> Placed:
    """Rows and credits first (refused atomically if over a limit), then the photos, then the TrainJob.
    A failure after the rows marks the order failed, refunds and deletes the photos: nothing half-done stays."""
    deletion.refuse_while_forgetting(b, user_id)
    s = b.settings
    order_id, job_id, model_id = new_id(), new_id(), new_id()
    photo_keys = [keys.photo_key(user_id, order_id, n) for n in range(len(crops))]
    # Each model its own word, so two members' models can share a picture.
    token = lifecycle.new_subject_token(b.engine)
    job = jobs.train_job(
        s,
        job_id=job_id,
        order_id=order_id,
        user_id=user_id,
        model_id=model_id,
        photo_keys=photo_keys,
        token=token,
        class_word=class_word,
    )
    with _limits_refused():
        credits_left = lifecycle.create_order(
            b.engine,
            order_id=order_id,
            job_id=job_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            kind=JobKind.TRAIN,
            cost=s.train_credit_cost,
            params={
                "title": f"Training: {neutralise(name, 100)}",
                "name": name,
                "class_word": class_word,
                "photos": len(crops),
            },
            job=job.model_dump(mode="json"),
            limits=_limits(b, rules),
            model=NewModel(
                model_id, name, class_word, token, s.base_model, keys.model_key(user_id, model_id)
            ),
        )

    def send() -> None:
        for key, data in zip(photo_keys, crops, strict=True):
            b.blobs.put(key, data, content_type="image/jpeg")
        b.queues.train.send(encode(job))

    return jobs.enqueue(
        b,
        order_id,
        job_id,
        credits_left,
        send,
        undo=lambda: b.blobs.delete_prefix(keys.photos_prefix(user_id, order_id)),
    )


_enqueue = jobs.enqueue  # (bot/services/group.py places its orders through it too)


def place_render_order(
    b: Backends,
    *,
    guild_id: int | None,
    channel_id: int | None,
    user_id: int,
    model_id: str | None,
    prompt: str,
    negative_prompt: str,
    count: int,
    width: int,
    height: int,
    seed: int,
    guidance: float,
    mode: str,
    source_key: str | None,
    rules: GuildRules,
    parent_order_id: str | None = None,
    face_detail: bool = False,
    words: str | None = None,
    label: str | None = None,
    style: str | None = None,
    backdrop: BackdropStyle | None = None,
) -> Placed:
    """``words``: the member's own words, what the status and result messages are headed with (default: the
    prompt), after ``label`` ('Upscale of picture 2') for a follow-up; ``style``: the preset's name, shown beside
    the seed and the model."""
    deletion.refuse_while_forgetting(b, user_id)
    model = _own_ready_model(b, user_id, model_id)
    s = b.settings
    order_id, job_id = new_id(), new_id()
    job = jobs.render_job(
        s,
        model,
        job_id=job_id,
        order_id=order_id,
        user_id=user_id,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        count=count,
        width=width,
        height=height,
        guidance=guidance,
        mode=mode,
        source_key=source_key,
        face_detail=face_detail,
        backdrop=backdrop,
    )
    params = {
        "title": result_title(f"{label}: {words or prompt}" if label else words or prompt),
        "words": result_title(words or prompt),
        "style": style,
        "model_name": model.name,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "count": count,
        "width": width,
        "height": height,
        "seed": seed,
        "guidance": guidance,
        "mode": mode,
        "source_key": source_key,
        "parent_order_id": parent_order_id,
        "face_detail": face_detail,
        "backdrop": backdrop,
    }
    credits_left = create_render_order(
        b,
        order_id=order_id,
        job=job,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        params=params,
        rules=rules,
        model_id=model.id,
    )
    return jobs.enqueue(b, order_id, job_id, credits_left, lambda: b.queues.render.send(encode(job)))


def create_render_order(
    b: Backends,
    *,
    order_id: str,
    job: RenderJob,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    params: dict[str, Any],
    rules: GuildRules,
    model_id: str | None,
) -> int:
    """A render order's row and job, charged ``count`` renders, within the member's limits (LimitReached →
    the member's refusal); the credits left."""
    with _limits_refused():
        return lifecycle.create_order(
            b.engine,
            order_id=order_id,
            job_id=job.job_id,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            kind=JobKind.RENDER,
            cost=b.settings.render_credit_cost * job.count,
            params=params,
            job=job.model_dump(mode="json"),
            limits=_limits(b, rules),
            model_id=model_id,
        )


def place_followup_render(
    b: Backends,
    parent_id: str,
    n: int,
    action: str,
    *,
    user_id: int,
    channel_id: int | None,
    rules: GuildRules,
) -> Placed:
    """U (upscale picture n), V (variations of picture n) or 🔄 (same prompt, new seed)."""
    import secrets

    parent = _own_order(b, parent_id, user_id)
    if parent.kind != "render" or parent.status != "delivered":
        raise Refused("Those pictures are not finished yet.")
    if action == "rr" and parent.params.get("mode") == "edit":
        from bot.services import edit  # (it imports this module)

        return edit.reroll_edit(b, parent_id, user_id=user_id, channel_id=channel_id, rules=rules)
    p = parent.params
    # The server's list may have grown since the pictures were made: a follow-up is a new order.
    refuse_blocked_words(f"{p['prompt']}\n{p.get('negative_prompt', '')}", rules)
    base: dict[str, Any] = {
        "guild_id": int(parent.guild_id) if parent.guild_id else None,
        "channel_id": channel_id,
        "user_id": user_id,
        "model_id": parent.model_id,
        "prompt": p["prompt"],
        "negative_prompt": p.get("negative_prompt", ""),
        "guidance": p.get("guidance", 7.0),
        "rules": rules,
        "parent_order_id": parent_id,
        "style": p.get("style"),
    }
    # A new seed or a variation is a new picture, finished like its parent; an upscale keeps its faces.
    face_detail = bool(p.get("face_detail", False))
    words = p.get("words") or p.get("title") or "your pictures"
    if action == "rr":
        return place_render_order(
            b,
            **base,
            count=p["count"],
            width=p["width"],
            height=p["height"],
            seed=secrets.randbelow(2**31 - 1),
            mode="txt2img",
            source_key=None,
            face_detail=face_detail,
            words=words,
        )
    image_keys = lifecycle.image_keys(b.engine, parent_id)
    if n >= len(image_keys):
        raise NotFound(f"There is no picture {n + 1} in that result.")
    if action == "up" and p.get("mode") == "upscale":
        raise Refused("That picture is already upscaled.")
    if not b.blobs.exists(image_keys[n]):
        raise NotFound(f"Picture {n + 1} of that result was not posted, so it cannot be reused.")
    if action == "up":
        w, h = min(p["width"] * 2, 2048), min(p["height"] * 2, 2048)
        return place_render_order(
            b,
            **base,
            count=1,
            width=w - w % 8,
            height=h - h % 8,
            seed=p["seed"] + n,
            mode="upscale",
            source_key=image_keys[n],
            words=words,
            label=f"Upscale of picture {n + 1}",
        )
    return place_render_order(
        b,
        **base,
        count=p["count"],
        width=p["width"],
        height=p["height"],
        seed=secrets.randbelow(2**31 - 1),
        mode="variation",
        source_key=image_keys[n],
        face_detail=face_detail,
        words=words,
        label=f"Variations of picture {n + 1}",
    )


def result_title(words: str) -> str:
    """A result's heading from the member's words: never a template placeholder such as {subject}; markdown,
    mentions and invisible characters neutralised (bot.wording.neutralise)."""
    text = " ".join(words.replace("{subject}", "you").split())
    return neutralise(text, 200) if text else "Your pictures"


def _own_order(b: Backends, order_id: str, user_id: int) -> OrderView:
    order = lifecycle.get_order(b.engine, order_id)
    # Another member's order reads as "not found": ids are not secrets, but nothing about it is shown either.
    if order is None or str(order.user_id) != str(user_id):
        raise NotFound(f"No order `{clip(order_id, 64)}` of yours.")
    return order


def _own_ready_model(b: Backends, user_id: int, model_id: str | None) -> ModelView:
    models = [m for m in lifecycle.list_models(b.engine, user_id) if m.status == "ready"]
    if model_id is None:
        if not models:
            raise Refused("You have no trained model yet: start with /train.")
        return models[0]
    for m in models:  # the id autocomplete fills in, or the name typed by hand
        if m.id == model_id or m.name.casefold() == model_id.casefold():
            return m
    raise NotFound("That is not one of your trained models (see /models list).")


# --- reading, cancelling, forgetting ---------------------------------------------------------------------------


def cancel_order(
    b: Backends, order_id: str, *, actor_id: int, as_admin: bool, guild_id: int | None = None
) -> CancelResult:
    order = lifecycle.get_order(b.engine, order_id)
    if order is None:
        raise NotFound(f"No order `{clip(order_id, 64)}`.")
    if as_admin:
        # An admin acts in their own server only; an order placed elsewhere (or nowhere) reads as unknown.
        if guild_id is None or str(order.guild_id) != str(guild_id):
            raise NotFound(f"No order `{clip(order_id, 64)}` in this server.")
    elif str(order.user_id) != str(actor_id):
        raise NotAllowed("That order is not yours to cancel.")
    if order.status in FINAL:
        raise Refused(f"That order is already {order.status}.")
    refunded = lifecycle.cancel_order(b.engine, order_id, by=str(actor_id))
    if refunded is None:
        raise Refused("That order just finished; it can no longer be cancelled.")
    deletion.order_cancelled(b, order)  # the agent working on it stops and uploads nothing more
    if order.kind == "train":
        b.blobs.delete_prefix(keys.photos_prefix(order.user_id, order_id))
    return CancelResult(refunded)


def delete_model(b: Backends, user_id: int, model_id: str) -> str:
    name = lifecycle.delete_model(b.engine, user_id, model_id)
    if name is None:
        raise NotFound("That is not one of your models (see /models list).")
    deletion.model_deleted(b, user_id, model_id)  # stops (and refunds) a training of it in flight
    from bot.services import group_privacy  # (it imports this module)

    group_privacy.model_withdrawn(b, user_id, model_id)  # and others' open group pictures of it
    b.blobs.delete_prefix(keys.model_prefix(user_id, model_id))
    return name


def delete_render(b: Backends, order_id: str, user_id: int) -> int:
    order = _own_order(b, order_id, user_id)
    deleted = lifecycle.delete_images(b.engine, order.id)
    job_id = lifecycle.job_id_of(b.engine, order.id)
    if job_id:
        b.blobs.delete_prefix(keys.render_prefix(user_id, job_id))
    return deleted


def queue_overview(b: Backends, user_id: int) -> QueueOverview:
    train, render = b.queues.train.depth(), b.queues.render.depth()
    mine = []
    for o in lifecycle.list_orders(b.engine, user_id, limit=10, active_only=True):
        position, eta = lifecycle.queue_position(b.engine, o.id)
        mine.append(QueuePosition(o.id, o.status, position, eta))
    return QueueOverview(
        train.visible + train.delayed, render.visible + render.delayed, agents_online(b), mine
    )


def agents_online(b: Backends) -> int:
    """Agents whose events arrived in the last AGENT_FRESH_S (the delivery service notes them)."""
    cutoff = time.time() - AGENT_FRESH_S
    return sum(1 for seen in b.agents_seen.values() if seen >= cutoff)


def forget_user(b: Backends, user_id: int) -> dict[str, int]:
    """Everything of the member, in every server: agents told first (they drop the member's jobs and upload
    nothing more of theirs), then blobs (the personal data), then rows, and the prefix once more when the work in
    flight has settled; the receipt counts files and rows. Their standing stays (bot/services/purge.py,
    docs/PRIVACY.md)."""
    deletion.member_forgotten(b, user_id)
    receipt = purge_member(b, user_id, ALL_GUILDS, by="forget-me")
    deletion.resweep_member(b, user_id)
    return receipt


# --- the status message ----------------------------------------------------------------------------------------


async def refresh_status_message(bot: PhotogenBot, order_id: str) -> None:
    """Edit the order's status message to its current state (bot token: works after the interaction expired)."""
    from bot.views import status_view

    order = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, order_id)
    if order is None or not order.status_message_id or not order.channel_id:
        return
    files: list[discord.File] = []
    preview_url = None
    if order.preview_key and order.status not in FINAL:
        try:
            data = await bot.run_blocking(bot.backends.blobs.get, order.preview_key)
            files.append(discord.File(io.BytesIO(data), filename="preview.jpg"))
            preview_url = "attachment://preview.jpg"
        except Exception:
            log.debug("preview %s not available", order.preview_key)
    position = None
    if order.status in ("created", "queued"):
        position, _ = await bot.run_blocking(lifecycle.queue_position, bot.backends.engine, order_id)
    embed = order_status_embed(
        title=order.params.get("title", "Order"),
        order_id=order.id,
        status=order.status,
        step=order.step,
        total=order.total,
        eta_s=order.eta_s,
        queue_position=position,
        error=order.error_message,
        preview_url=preview_url,
        notice=order.notice,
    )
    message = bot.get_partial_messageable(int(order.channel_id)).get_partial_message(
        int(order.status_message_id)
    )
    view = None if order.status in FINAL else status_view(order.id)
    try:
        await message.edit(embed=embed, view=view, attachments=files)
    except discord.NotFound:
        log.info("status message of order %s is gone", order_id)
