"""/group (a picture of 2-4 members, each asked for consent), /group-requests, the consent buttons and the
group result's buttons. The logic is in bot/services/group.py; consent rows in storage/consent.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.app import PhotogenBot
from bot.embeds import BLUE, order_status_embed
from bot.errors import NotAllowed
from bot.group_presets import GROUP_PRESETS
from bot.group_views import GROUP_DYNAMIC_ITEMS, consent_view
from bot.services import delivery, group, group_privacy, orders
from bot.views import status_view

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()


def _ping(user_id: int) -> discord.AllowedMentions:
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)]
    )


def _picked(interaction: discord.Interaction, user: discord.User | discord.Member) -> group.Picked:
    in_server = isinstance(user, discord.Member) and user.guild.id == interaction.guild_id
    return group.Picked(user.id, bool(user.bot), in_server)


def _request_text(user_id: int, caller_id: int, req: group.Requested) -> str:
    return (
        f"{group.mention(user_id)}, {group.mention(caller_id)} would like a group picture with you: "
        f"**{req.title}**. It is made with your newest trained model, and only if you accept before "
        f"<t:{int(req.expires_at)}:t>. You can turn such requests off with /group-requests."
    )


class Group(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        self._expiry: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._expiry = asyncio.create_task(self._run_expiry(), name="photogen-group-consent")

    async def cog_unload(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry

    @app_commands.command(
        name="group", description="A picture of you with 1-3 other members, each asked first"
    )
    @app_commands.guild_only()
    @app_commands.describe(
        member2="A member to picture with you (they are asked to accept)",
        member3="Another member",
        member4="Another member",
        prompt="The scene, e.g. 'hiking in the Alps'",
        preset="A group scene",
        model="Your trained model (default: your newest); the others' newest on the same base is used",
        count="How many pictures (1–4)",
        seed="Seed for reproducible results",
    )
    @app_commands.choices(
        preset=[app_commands.Choice(name=p.title, value=p.id) for p in GROUP_PRESETS.values()]
    )
    async def group_cmd(
        self,
        interaction: discord.Interaction,
        member2: discord.User,
        member3: discord.User | None = None,
        member4: discord.User | None = None,
        prompt: app_commands.Range[str, 1, 900] | None = None,
        preset: app_commands.Choice[str] | None = None,
        model: str | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, group.MAX_SEED] | None = None,
    ) -> None:
        metrics.COMMANDS.labels(command="group").inc()
        await interaction.response.defer(thinking=True)
        rules = await orders.gate_new_order(self.bot, interaction, kind="render", text=prompt)
        picked = [_picked(interaction, u) for u in (member2, member3, member4) if u is not None]
        group.check_picked(interaction.user.id, picked)
        assert interaction.guild_id is not None
        req = await self.bot.run_blocking(
            group.request_group,
            self.bot.b,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            caller_id=interaction.user.id,
            others=[p.user_id for p in picked],
            model_id=model,
            preset_id=preset.value if preset else None,
            prompt=prompt,
            count=count or self.bot.settings.render_default_count,
            seed=seed,
            rules=rules,
        )
        embed = discord.Embed(
            title=req.title,
            description=f"Waiting for {', '.join(group.mention(u) for u in req.asked)} to accept, until "
            f"<t:{int(req.expires_at)}:t>. Nobody is pictured without their consent; {req.cost} credit(s) "
            "are charged once everyone accepted.",
            colour=BLUE,
        )
        embed.add_field(name="Order", value=f"`{req.order_id}`")
        message = await interaction.edit_original_response(embed=embed, view=status_view(req.order_id))
        await self.bot.run_blocking(orders.set_status_message, self.bot.b, req.order_id, message.id)
        channel = self.bot.get_partial_messageable(interaction.channel_id or 0)
        for user_id in req.asked:
            sent = await channel.send(
                content=_request_text(user_id, interaction.user.id, req),
                view=consent_view(req.order_id, user_id),
                allowed_mentions=_ping(user_id),
            )
            await self.bot.run_blocking(group.set_request_message, self.bot.b, req.order_id, user_id, sent.id)

    @group_cmd.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        from bot.views import model_choices

        models = await self.bot.run_blocking(orders.list_models, self.bot.b, interaction.user.id)
        return model_choices(models, current, ready_only=True)

    @app_commands.command(
        name="group-requests", description="Allow or turn off requests to be in group pictures"
    )
    @app_commands.guild_only()
    @app_commands.describe(allow="False: nobody can ask you into a group picture in this server")
    async def group_requests(self, interaction: discord.Interaction, allow: bool) -> None:
        metrics.COMMANDS.labels(command="group-requests").inc()
        await orders.gate_member(self.bot, interaction)
        assert interaction.guild_id is not None
        await self.bot.run_blocking(
            group.set_takes_requests, self.bot.b, interaction.guild_id, interaction.user.id, allow
        )
        text = (
            "Members can ask you into group pictures here again."
            if allow
            else "Nobody can ask you into a group picture in this server any more."
        )
        await interaction.response.send_message(text, ephemeral=True)

    # --- consent buttons ---------------------------------------------------------------------------------
    async def on_consent(
        self, interaction: discord.Interaction, order_id: str, asked_id: int, answer: str
    ) -> None:
        user_id = interaction.user.id
        if user_id != asked_id:
            raise NotAllowed("This request is for the member it names, not for you.")
        if answer == "w":
            outcome = await self.bot.run_blocking(group.withdraw, self.bot.b, order_id, user_id)
        else:
            outcome = await self.bot.run_blocking(
                group.answer_request, self.bot.b, order_id, user_id, answer == "a"
            )
        if not outcome.changed:
            await interaction.response.send_message(
                f"This request is already {outcome.status}.", ephemeral=True
            )
            return
        said = {
            "accepted": "✅ {who} accepted.",
            "refused": "❌ {who} declined.",
            "revoked": "↩️ {who} withdrew their consent.",
        }[outcome.status]
        keep_withdraw = outcome.status == "accepted" and not outcome.ended
        await interaction.response.edit_message(
            content=said.format(who=interaction.user.mention),
            view=consent_view(order_id, user_id, accepted=True) if keep_withdraw else None,
            allowed_mentions=NO_PINGS,
        )
        if outcome.ended or outcome.placed is not None:
            await self._settle(order_id)

    async def _settle(self, order_id: str) -> None:
        """The order started or ended: its status message shows it; an ended order's requests lose their
        buttons."""
        await orders.refresh_status_message(self.bot, order_id)
        reason = await self.bot.run_blocking(group.end_reason, self.bot.b, order_id)
        if reason is None:
            return
        for req in await self.bot.run_blocking(group.request_messages, self.bot.b, order_id):
            if not req.channel_id or not req.message_id:
                continue
            message = self.bot.get_partial_messageable(int(req.channel_id)).get_partial_message(
                int(req.message_id)
            )
            try:
                await message.edit(
                    content=f"This group picture request ended: {reason}",
                    view=None,
                    allowed_mentions=NO_PINGS,
                )
            except discord.HTTPException:
                log.info("request message %s of order %s is gone", req.message_id, order_id)

    async def _run_expiry(self) -> None:
        """Requests past GROUP_CONSENT_TIMEOUT_S end their orders; the deadline is in the rows, so a request
        made before a restart expires after it."""
        await self.bot.wait_until_ready()
        interval = max(0.2, min(30.0, self.bot.settings.group_consent_timeout_s / 4))
        while True:
            try:
                for order_id in await self.bot.run_blocking(group.expire_due, self.bot.b):
                    await self._settle(order_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("group consent expiry round failed; trying again next round")
            await asyncio.sleep(interval)

    # --- group result buttons ----------------------------------------------------------------------------
    async def on_image_button(
        self, interaction: discord.Interaction, action: str, order_id: str, n: int
    ) -> None:
        if action == "del":
            deleted = await self.bot.run_blocking(
                group_privacy.delete_post, self.bot.b, order_id, interaction.user.id
            )
            await interaction.response.send_message(f"Deleted {deleted} picture(s).", ephemeral=True)
            if interaction.message is not None:
                try:
                    await interaction.message.delete()
                except discord.HTTPException:
                    log.warning("could not delete group result message %s", interaction.message.id)
            return
        if action == "one":
            members = await self.bot.run_blocking(group.pictured, self.bot.b, order_id)
            if str(interaction.user.id) not in members:
                raise NotAllowed("These buttons belong to the members in the picture.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            pictures = await self.bot.run_blocking(delivery.single_pictures, self.bot.b, order_id)
            await interaction.followup.send(
                f"{len(pictures)} picture(s), one by one." if pictures else "These pictures were deleted.",
                ephemeral=True,
                files=[discord.File(io.BytesIO(data), filename=name) for name, data in pictures],
            )
            return
        parent = await self.bot.run_blocking(orders.get_order, self.bot.b, order_id)
        if parent is None or parent.user_id != str(interaction.user.id):  # before the public "thinking…"
            raise NotAllowed("Only the member who made this group picture can make more of it.")
        rules = await orders.gate_new_order(self.bot, interaction, kind="render")
        await interaction.response.defer(thinking=True)
        req = await self.bot.run_blocking(
            group.place_followup,
            self.bot.b,
            order_id,
            n,
            action,
            user_id=interaction.user.id,
            channel_id=interaction.channel_id,
            rules=rules,
        )
        placed, _ = await self.bot.run_blocking(group.start_if_ready, self.bot.b, req.order_id)
        order = await self.bot.run_blocking(orders.get_order, self.bot.b, req.order_id)
        embed = order_status_embed(
            title=req.title,
            order_id=req.order_id,
            status=order.status if order else "failed",
            queue_position=placed.queue_position if placed else None,
            eta_s=placed.eta_s if placed else None,
            error=order.error_message if order else None,
        )
        message = await interaction.edit_original_response(
            embed=embed, view=status_view(req.order_id) if placed else None
        )
        await self.bot.run_blocking(orders.set_status_message, self.bot.b, req.order_id, message.id)


async def setup(bot: PhotogenBot) -> None:
    bot.add_dynamic_items(*GROUP_DYNAMIC_ITEMS)
    await bot.add_cog(Group(bot))
