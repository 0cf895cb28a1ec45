"""/admin …: moderation and studio control. Hidden from members by default_permissions and re-checked in code
against the guild's configured admin role. Every action is written to the audit log and, if configured, posted
to the admin log channel."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import costs
from bot.app import PhotogenBot
from bot.checks import GuildRules, is_bot_owner
from bot.embeds import BLUE, clip
from bot.errors import Refused
from bot.gate import Access, access, rules_of
from bot.services import admin as admin_svc
from bot.services import budget as budget_svc
from bot.services import credits as credits_svc
from bot.services import deadletters as deadletters_svc
from bot.services import member_orders
from bot.services.purge import purge_member

log = logging.getLogger(__name__)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(
    commands.GroupCog,
    group_name="admin",
    group_description="Photogen administration",
    group_extras=access(Access.ADMIN),  # the tree's gate: this server's Photogen admins (bot/gate.py)
):
    blocked = app_commands.Group(name="blocked", description="Blocked words in prompts")
    channels = app_commands.Group(name="channels", description="Channels Photogen may be used in")
    budget = app_commands.Group(
        name="budget", description="This server's monthly GPU budget and price checks"
    )
    deadletters = app_commands.Group(
        name="deadletters",
        description="Jobs and events that could not be processed",
        extras=access(Access.ADMIN_OR_OWNER),  # a bot owner sees every server's
    )

    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        super().__init__()

    async def _done(
        self,
        interaction: discord.Interaction,
        rules: GuildRules,
        action: str,
        target: str,
        detail: str,
        reply: str,
    ) -> None:
        """Audit row first (the record must exist even if Discord is down), then the answer and the log post."""
        await self.bot.run_blocking(
            admin_svc.audit,
            self.bot.backends,
            interaction.guild_id,
            interaction.user.id,
            action,
            target,
            detail,
        )
        member_orders.forget_cached_rules(self.bot, interaction.guild_id)
        if interaction.response.is_done():
            await interaction.followup.send(reply, ephemeral=True)
        else:
            await interaction.response.send_message(reply, ephemeral=True)
        if rules.admin_log_channel_id:
            channel = self.bot.get_channel(rules.admin_log_channel_id) or self.bot.get_partial_messageable(
                rules.admin_log_channel_id
            )
            try:
                await channel.send(  # type: ignore[union-attr]
                    f"🛡️ <@{interaction.user.id}> **{action}** {clip(target, 100)} {clip(detail, 300)}".strip()
                )
            except discord.HTTPException:
                log.warning("could not post to the admin log channel %s", rules.admin_log_channel_id)

    # --- configuration -------------------------------------------------------------------------
    @app_commands.command(name="config", description="Admin role, log channel and limits")
    @app_commands.describe(
        admin_role="Members with this role may use /admin",
        log_channel="Where admin actions are posted",
        max_concurrent="Open orders one member may have",
        daily_quota="Orders one member may place a day",
    )
    async def config(
        self,
        interaction: discord.Interaction,
        admin_role: discord.Role | None = None,
        log_channel: discord.TextChannel | None = None,
        max_concurrent: app_commands.Range[int, 1, 100] | None = None,
        daily_quota: app_commands.Range[int, 1, 100000] | None = None,
    ) -> None:
        rules = rules_of(interaction)
        changes = {
            k: v
            for k, v in {
                "admin_role_id": admin_role.id if admin_role else None,
                "admin_log_channel_id": log_channel.id if log_channel else None,
                "max_concurrent_orders": max_concurrent,
                "daily_quota": daily_quota,
            }.items()
            if v is not None
        }
        if not changes:
            raise Refused("Nothing to change: give at least one option.")
        await self.bot.run_blocking(
            admin_svc.update_guild, self.bot.backends, interaction.guild_id, **changes
        )
        detail = ", ".join(f"{k}={v}" for k, v in changes.items())
        await self._done(interaction, rules, "config", "guild", detail, f"Updated: {detail}")

    # --- members -------------------------------------------------------------------------------
    @app_commands.command(name="ban", description="Stop a member from using Photogen in this server")
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        reason: app_commands.Range[str, 0, 200] = "",
    ) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.set_banned, self.bot.backends, interaction.guild_id, member.id, True, reason
        )
        await self._done(
            interaction, rules, "ban", f"<@{member.id}>", reason, f"<@{member.id}> is banned in this server."
        )

    @app_commands.command(name="unban", description="Let a banned member use Photogen in this server again")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.set_banned, self.bot.backends, interaction.guild_id, member.id, False, ""
        )
        await self._done(
            interaction, rules, "unban", f"<@{member.id}>", "", f"<@{member.id}> is unbanned in this server."
        )

    @app_commands.command(name="credits", description="Grant credits to a member (usable in this server)")
    async def credits(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        amount: app_commands.Range[int, 1, 100000],
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        rules = rules_of(interaction)
        balance = await self.bot.run_blocking(
            admin_svc.grant_credits,
            self.bot.backends,
            interaction.guild_id,
            member.id,
            amount,
            actor_id=interaction.user.id,
            reason=reason,
        )
        await self._done(
            interaction,
            rules,
            "credits",
            f"<@{member.id}>",
            f"+{amount}" + (f" {reason}" if reason else ""),
            f"Granted {amount} credit(s) to <@{member.id}>; balance in this server {balance}.",
        )

    @app_commands.command(
        name="ledger", description="A member's credits in this server and their last entries"
    )
    async def ledger(self, interaction: discord.Interaction, member: discord.User) -> None:
        # This server's entries only: the gate made the caller an admin of interaction.guild_id, nothing more.
        assert interaction.guild_id is not None  # guild_only
        got = await self.bot.run_blocking(
            credits_svc.ledger_of, self.bot.backends, interaction.guild_id, member.id
        )
        embed = credits_svc.ledger_embed(got, title=f"Credits of {member.display_name}", for_admin=True)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="quota", description="A member's daily order quota here (0 = server default)")
    async def quota(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        daily: app_commands.Range[int, 0, 100000],
    ) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.set_quota, self.bot.backends, interaction.guild_id, member.id, daily or None
        )
        shown = str(daily) if daily else "server default"
        await self._done(
            interaction, rules, "quota", f"<@{member.id}>", shown, f"Daily quota of <@{member.id}>: {shown}."
        )

    @app_commands.command(
        name="purge", description="Delete a member's photos, models and orders made in this server"
    )
    async def purge(self, interaction: discord.Interaction, member: discord.User) -> None:
        rules = rules_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        receipt = await self.bot.run_blocking(
            purge_member, self.bot.backends, member.id, interaction.guild_id or 0, by="admin purge"
        )
        detail = ", ".join(f"{k}={v}" for k, v in receipt.items())
        await self._done(
            interaction,
            rules,
            "purge",
            f"<@{member.id}>",
            detail,
            f"Purged <@{member.id}> in this server: {detail}",
        )

    # --- orders and the studio -----------------------------------------------------------------
    @app_commands.command(name="cancel", description="Cancel an order of this server (credits refunded)")
    async def cancel(self, interaction: discord.Interaction, order: app_commands.Range[str, 1, 64]) -> None:
        rules = rules_of(interaction)
        result = await self.bot.run_blocking(
            member_orders.cancel_order,
            self.bot.backends,
            order,
            actor_id=interaction.user.id,
            as_admin=True,
            guild_id=interaction.guild_id,
        )
        await self._done(
            interaction,
            rules,
            "cancel",
            order,
            f"refunded {result.refunded}",
            f"Order `{clip(order, 64)}` cancelled; {result.refunded} credit(s) refunded.",
        )
        await member_orders.refresh_status_message(self.bot, order)

    @app_commands.command(name="pause", description="Stop taking new orders (running ones carry on)")
    async def pause(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.update_guild, self.bot.backends, interaction.guild_id, paused=True
        )
        await self._done(interaction, rules, "pause", "studio", "", "New orders are paused.")

    @app_commands.command(name="resume", description="Take new orders again")
    async def resume(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.update_guild, self.bot.backends, interaction.guild_id, paused=False
        )
        await self._done(interaction, rules, "resume", "studio", "", "New orders are open again.")

    @app_commands.command(name="status", description="Queue depths, dead letters, agents and cost")
    async def status(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        b = self.bot.backends
        if is_bot_owner(self.bot.settings, interaction.user.id):
            text = await self.bot.run_blocking(
                costs.queue_status_text, self.bot.settings, b.engine, b.queues, b.agents_seen
            )
        else:  # a server's admins see the waiting lines members see; cost, dead letters and hosts are the operators'
            text = await self.bot.run_blocking(costs.queue_waiting_text, b.queues)
        embed = discord.Embed(title="Studio status", description=clip(text, 4000), colour=BLUE)
        embed.add_field(name="Paused", value="yes" if rules.paused else "no", inline=True)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name="sync",
        description="Re-sync slash commands with Discord (bot owners only)",
        extras=access(Access.OWNER),
    )
    async def sync(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        scopes = await self.bot.force_sync()
        await interaction.followup.send(f"Synced: {', '.join(scopes)}", ephemeral=True)

    @app_commands.command(
        name="safety", description="Flagged pictures: this server's policy and blocked count"
    )
    @app_commands.describe(policy="Change the policy (leave empty to only see it)")
    @app_commands.choices(
        policy=[
            app_commands.Choice(name="block: never post flagged pictures", value="block"),
            app_commands.Choice(name="age-restricted channels only", value="age_restricted_only"),
        ]
    )
    async def safety(self, interaction: discord.Interaction, policy: str | None = None) -> None:
        from bot.services import safety as safety_svc

        rules = rules_of(interaction)
        gid = interaction.guild_id
        assert gid is not None  # a guild-only command
        if policy is not None:
            await self.bot.run_blocking(safety_svc.set_policy, self.bot.backends, gid, policy)
        current = await self.bot.run_blocking(safety_svc.policy_of, self.bot.backends, gid)
        count = await self.bot.run_blocking(safety_svc.blocked_in, self.bot.backends, gid)
        text = (
            f"Policy: **{current}** ({safety_svc.POLICY_TEXT[current]}). "
            f"Pictures blocked here so far: {count}."
        )
        if policy is None:
            await interaction.response.send_message(text, ephemeral=True)
        else:
            await self._done(interaction, rules, "safety policy", current, "", text)

    # --- blocked words -------------------------------------------------------------------------
    @blocked.command(name="add", description="Refuse prompts containing this word")
    async def blocked_add(
        self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 64]
    ) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.edit_blocked_words, self.bot.backends, interaction.guild_id, add=word
        )
        await self._done(
            interaction, rules, "blocked add", "word", "(hidden)", "Word added to the blocked list."
        )

    @blocked.command(name="remove", description="Allow this word again")
    async def blocked_remove(
        self, interaction: discord.Interaction, word: app_commands.Range[str, 1, 64]
    ) -> None:
        rules = rules_of(interaction)
        removed = await self.bot.run_blocking(
            admin_svc.edit_blocked_words, self.bot.backends, interaction.guild_id, remove=word
        )
        if not removed:
            raise Refused("That word is not on the blocked list.")
        await self._done(
            interaction, rules, "blocked remove", "word", "(hidden)", "Word removed from the list."
        )

    @blocked.command(name="list", description="Show the blocked words")
    async def blocked_list(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        words = ", ".join(f"`{w}`" for w in rules.blocked_words) or "none"
        await interaction.response.send_message(f"Blocked words: {clip(words, 1900)}", ephemeral=True)

    # --- channels ------------------------------------------------------------------------------
    @channels.command(
        name="allow", description="Allow Photogen in this channel (the list starts empty = anywhere)"
    )
    async def channels_allow(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.edit_channels, self.bot.backends, interaction.guild_id, add=channel.id
        )
        await self._done(
            interaction, rules, "channels allow", f"<#{channel.id}>", "", f"Allowed in <#{channel.id}>."
        )

    @channels.command(name="remove", description="Stop allowing Photogen in this channel")
    async def channels_remove(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(
            admin_svc.edit_channels, self.bot.backends, interaction.guild_id, remove=channel.id
        )
        await self._done(
            interaction,
            rules,
            "channels remove",
            f"<#{channel.id}>",
            "",
            f"Removed <#{channel.id}> from the list.",
        )

    @channels.command(name="list", description="Channels Photogen may be used in")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        shown = ", ".join(f"<#{c}>" for c in sorted(rules.allowed_channel_ids)) or "any channel"
        await interaction.response.send_message(f"Photogen may be used in: {shown}", ephemeral=True)

    # --- the monthly budget (bot/services/budget.py) ---------------------------------------------
    @budget.command(
        name="set", description="A monthly budget, and the price above which members confirm first"
    )
    @app_commands.describe(
        amount="The month's budget (orders that would pass it are refused)",
        unit="Dollars, or GPU-hours if the GPUs cost you nothing per hour",
        confirm_above="Members confirm the price of orders estimated above this (same unit; 0: every order)",
    )
    @app_commands.choices(
        unit=[
            app_commands.Choice(name="dollars", value="usd"),
            app_commands.Choice(name="GPU-hours", value="gpu_hours"),
        ]
    )
    async def budget_set(
        self,
        interaction: discord.Interaction,
        amount: app_commands.Range[float, 0.0, 1_000_000.0] | None = None,
        unit: str | None = None,
        confirm_above: app_commands.Range[float, 0.0, 1_000_000.0] | None = None,
    ) -> None:
        rules = rules_of(interaction)
        now = await self.bot.run_blocking(
            budget_svc.set_budget,
            self.bot.backends,
            interaction.guild_id,
            limit=amount,
            unit=unit,
            confirm_above=confirm_above,
        )
        detail = ", ".join(
            f"{k}={v}"
            for k, v in {"amount": amount, "unit": unit, "confirm_above": confirm_above}.items()
            if v is not None
        )
        await self._done(interaction, rules, "budget set", "guild", detail, budget_svc.budget_text(now))

    @budget.command(name="show", description="This month's spend against the budget")
    async def budget_show(self, interaction: discord.Interaction) -> None:
        rules_of(interaction)
        now = await self.bot.run_blocking(budget_svc.budget_of, self.bot.backends, interaction.guild_id)
        await interaction.response.send_message(budget_svc.budget_text(now), ephemeral=True)

    @budget.command(name="clear", description="No budget and no price checks any more")
    async def budget_clear(self, interaction: discord.Interaction) -> None:
        rules = rules_of(interaction)
        await self.bot.run_blocking(budget_svc.clear_budget, self.bot.backends, interaction.guild_id)
        await self._done(
            interaction, rules, "budget clear", "guild", "", "Budget cleared: no limit and no price checks."
        )

    # --- dead letters: this server's (bot owners: every server's) --------------------------------------
    def _deadletters_caller(self, interaction: discord.Interaction) -> tuple[GuildRules, bool]:
        """(rules, everyone): a bot owner sees every server's dead letters; a server admin only their own."""
        return rules_of(interaction), is_bot_owner(self.bot.settings, interaction.user.id)

    @deadletters.command(name="list", description="Dead letters of this server's orders (bot owners: all)")
    async def deadletters_list(self, interaction: discord.Interaction) -> None:
        _, everyone = self._deadletters_caller(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        views = await self.bot.run_blocking(
            deadletters_svc.list_dead_letters, self.bot.backends, interaction.guild_id, everyone=everyone
        )
        lines = [
            f"`{v.message_id}` · {v.queue} · order `{v.order_id or '?'}` ({v.order_status or 'unknown'})"
            f" · {clip(v.reason or 'no reason recorded', 120)}"
            for v in views[:25]
        ]
        if len(views) > 25:
            lines.append(f"… and {len(views) - 25} more")
        embed = discord.Embed(
            title=f"Dead letters: {len(views)}",
            description=clip("\n".join(lines) or "None: every job and event was processed.", 4000),
            colour=BLUE,
        )
        await interaction.followup.send(embed=embed, ephemeral=True)

    @deadletters.command(name="redrive", description="Send one dead letter back to its queue")
    @app_commands.describe(message="The dead letter's id, from /admin deadletters list")
    async def deadletters_redrive(
        self, interaction: discord.Interaction, message: app_commands.Range[str, 1, 100]
    ) -> None:
        rules, everyone = self._deadletters_caller(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = await self.bot.run_blocking(
            deadletters_svc.redrive_dead_letter,
            self.bot.backends,
            message,
            interaction.guild_id,
            everyone=everyone,
        )
        await self._done(
            interaction,
            rules,
            "deadletters redrive",
            message,
            f"order {view.order_id} ({view.queue})",
            f"Redriven: the dead letter of order `{view.order_id}` is back on the {view.queue} queue.",
        )


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Admin(bot))
