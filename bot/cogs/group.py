"""/group (a picture of 2-4 members, each asked for consent), /group-requests, the consent buttons and the
group result's buttons. The logic is in bot/services/group.py; consent rows in storage/consent.py."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import budget_gate, gate, presets
from bot.app import PhotogenBot
from bot.embeds import BLUE
from bot.group_presets import GROUP_PRESETS
from bot.group_views import GROUP_DYNAMIC_ITEMS, consent_view
from bot.periodic import periodic, start, stop
from bot.services import group, group_actions
from bot.views import status_view
from storage import lifecycle
from storage.budget import JobShape

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

    async def cog_load(self) -> None:
        interval = max(0.2, min(30.0, self.bot.settings.group_consent_timeout_s / 4))
        start(self.expire_requests, seconds=interval, after=self.bot.wait_until_ready)

    async def cog_unload(self) -> None:
        await stop(self.expire_requests)

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
        rules = gate.order_rules(
            interaction, text=prompt
        )  # the member gate itself ran in the tree (bot/gate.py)
        await interaction.response.defer(thinking=True)
        picked = [_picked(interaction, u) for u in (member2, member3, member4) if u is not None]
        group.check_picked(interaction.user.id, picked)
        assert interaction.guild_id is not None
        pictures = count or self.bot.settings.render_default_count
        scene = (
            GROUP_PRESETS.get(preset.value) if preset else None
        )  # its size, as group.request_group picks it
        width, height = presets.size_for(scene.aspect if scene else "3:2", self.bot.settings.render_size)
        shape = JobShape(
            "render", "group", pictures, width, height, self.bot.settings.render_steps, people=len(picked) + 1
        )
        if not await budget_gate.approve(self.bot, interaction, shape):
            return
        req = await self.bot.run_blocking(
            group.request_group,
            self.bot.backends,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            caller_id=interaction.user.id,
            others=[p.user_id for p in picked],
            model_id=model,
            preset_id=preset.value if preset else None,
            prompt=prompt,
            count=pictures,
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
        await self.bot.run_blocking(
            lifecycle.set_status_message, self.bot.backends.engine, req.order_id, message.id
        )
        channel = self.bot.get_partial_messageable(interaction.channel_id or 0)
        for user_id in req.asked:
            sent = await channel.send(
                content=_request_text(user_id, interaction.user.id, req),
                view=consent_view(req.order_id, user_id),
                allowed_mentions=_ping(user_id),
            )
            await self.bot.run_blocking(
                group.set_request_message, self.bot.backends, req.order_id, user_id, sent.id
            )

    @group_cmd.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        from bot.views import model_choices

        models = await self.bot.run_blocking(
            lifecycle.list_models, self.bot.backends.engine, interaction.user.id
        )
        return model_choices(models, current, ready_only=True)

    @app_commands.command(
        name="group-requests", description="Allow or turn off requests to be in group pictures"
    )
    @app_commands.guild_only()
    @app_commands.describe(allow="False: nobody can ask you into a group picture in this server")
    async def group_requests(self, interaction: discord.Interaction, allow: bool) -> None:
        assert interaction.guild_id is not None
        await self.bot.run_blocking(
            group.set_takes_requests, self.bot.backends, interaction.guild_id, interaction.user.id, allow
        )
        text = (
            "Members can ask you into group pictures here again."
            if allow
            else "Nobody can ask you into a group picture in this server any more."
        )
        await interaction.response.send_message(text, ephemeral=True)

    @periodic("group consent expiry")
    async def expire_requests(self) -> None:
        """Requests past GROUP_CONSENT_TIMEOUT_S end their orders; the deadline is in the rows, so a request
        made before a restart expires after it."""
        for order_id in await self.bot.run_blocking(group.expire_due, self.bot.backends):
            await group_actions.settle(self.bot, order_id)


async def setup(bot: PhotogenBot) -> None:
    bot.add_dynamic_items(*GROUP_DYNAMIC_ITEMS)
    await bot.add_cog(Group(bot))
