"""Progress and delivery: a background consumer of the events queue, the outbox poster and the reconciler of
orders left without a live job.

Events are applied idempotently (storage records each event id once); a result to post becomes an outbox row in
the same transaction. The poster claims a row, posts it with a nonce derived from the row id and
enforce_nonce=True, then marks it sent: after a crash between the post and the mark, the resend carries the same
nonce and Discord returns the message it already has instead of posting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import discord
from discord.ext import commands

from bot import metrics
from bot.app import PhotogenBot
from bot.periodic import periodic, start, stop
from bot.services import delivery as svc
from bot.services import media, member_orders
from storage import lifecycle

log = logging.getLogger(__name__)

OUTBOX_SWEEP_S = 5.0


class _PostedNotMarked(Exception):
    """The post reached Discord but the outbox row could not be marked sent."""


class Delivery(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        # The long poll parks a thread for up to bot_event_wait_s: give it its own so it never starves the
        # pool that serves commands.
        self._poll_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photogen-events")
        self._outbox_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_edit: dict[str, float] = {}
        self._edit_pending: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._urgent: set[str] = set()
        self._outbox_lock = asyncio.Lock()

    async def cog_load(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume_events(), name="photogen-events"),
            asyncio.create_task(self._run_outbox(), name="photogen-outbox"),
        ]
        start(
            self.reconcile_orders,
            seconds=self.bot.settings.reconcile_interval_s,
            after=self.bot.wait_until_ready,
        )

    async def cog_unload(self) -> None:
        await stop(self.reconcile_orders)
        for task in [*self._tasks, *self._edit_pending.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._edit_pending.values(), return_exceptions=True)
        self._poll_executor.shutdown(wait=False, cancel_futures=True)

    # --- events ------------------------------------------------------------------------------
    async def _consume_events(self) -> None:
        await self.bot.wait_until_ready()
        loop = asyncio.get_running_loop()
        wait_s = self.bot.settings.bot_event_wait_s
        while True:
            try:
                pairs = await loop.run_in_executor(
                    self._poll_executor, svc.receive_events, self.bot.backends, wait_s
                )
                for lease, event in pairs:
                    outcome = await self.bot.run_blocking(svc.apply_event, self.bot.backends, event)
                    await self.bot.run_blocking(self.bot.backends.queues.events.ack, lease)
                    if outcome.duplicate:
                        metrics.EVENTS_DUPLICATE.inc()
                        continue
                    metrics.EVENTS_APPLIED.labels(kind=event.kind).inc()
                    if outcome.order_id:
                        self.schedule_status_edit(outcome.order_id, final=outcome.final)
                    if outcome.outbox:
                        self._outbox_wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bad row or a queue hiccup must not kill delivery: the lease expires and the event comes back.
                log.exception("event consumer round failed")
                await asyncio.sleep(1.0)

    # --- status message edits (throttled) --------------------------------------------------------
    def schedule_status_edit(self, order_id: str, *, final: bool = False) -> None:
        """At most one edit per order per bot_progress_edit_interval_s, and the latest state always shown:
        a change that arrives while an edit runs marks the order dirty again and the loop edits once more."""
        self._dirty.add(order_id)
        if final:
            self._urgent.add(order_id)
        task = self._edit_pending.get(order_id)
        if task is None or task.done():
            self._edit_pending[order_id] = asyncio.create_task(self._edit_loop(order_id))

    async def _edit_loop(self, order_id: str) -> None:
        interval = self.bot.settings.bot_progress_edit_interval_s
        try:
            while order_id in self._dirty:
                wait = self._last_edit.get(order_id, 0.0) + interval - time.monotonic()
                if wait > 0 and order_id not in self._urgent:
                    await asyncio.sleep(wait)
                final = order_id in self._urgent
                self._dirty.discard(order_id)
                self._urgent.discard(order_id)
                self._last_edit[order_id] = time.monotonic()
                try:
                    await member_orders.refresh_status_message(self.bot, order_id)
                except discord.HTTPException as err:
                    log.warning("status edit of order %s failed: HTTP %s", order_id, err.status)
                if final and order_id not in self._dirty:
                    self._last_edit.pop(order_id, None)  # nothing more will change: keep the map small
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("status edit of order %s failed", order_id)
        finally:
            if self._edit_pending.get(order_id) is asyncio.current_task():
                del self._edit_pending[order_id]

    # --- outbox -------------------------------------------------------------------------------
    async def _run_outbox(self) -> None:
        await self.bot.wait_until_ready()
        while True:
            try:
                await self.flush_outbox()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), timeout=OUTBOX_SWEEP_S)
            self._outbox_wake.clear()

    async def flush_outbox(self) -> int:
        """Post every pending row (also those left by a crash: same nonce, so no double post)."""
        async with self._outbox_lock:
            rows = await self.bot.run_blocking(lifecycle.pending_outbox, self.bot.backends.engine)
            metrics.OUTBOX_PENDING.set(len(rows))
            posted = 0
            for row in rows:
                try:
                    await self._post(row)
                    posted += 1
                except (discord.NotFound, discord.Forbidden) as err:
                    # The channel is gone or the bot lost access: retrying cannot help.
                    log.warning("outbox row %s dropped: HTTP %s from Discord", row.id, err.status)
                    await self.bot.run_blocking(
                        lifecycle.mark_outbox_sent, self.bot.backends.engine, row.id, None
                    )
                except discord.HTTPException as err:
                    metrics.DELIVERY_FAILURES.inc()
                    log.warning("outbox row %s not posted yet (HTTP %s); will retry", row.id, err.status)
                    if err.status < 500 and err.status != 429:  # Discord refused this post: counts to the cap
                        await self._failed_attempt(row, f"HTTP {err.status} from Discord")
                except svc.UndeliverableError as err:
                    log.warning("outbox row %s dropped: %s", row.id, err)
                    await self.bot.run_blocking(
                        lifecycle.mark_outbox_sent, self.bot.backends.engine, row.id, None
                    )
                except _PostedNotMarked:
                    # Discord has the post: the next round resends with the same nonce and gets it back, so
                    # this never counts towards giving the row up (that would tell the member it failed).
                    log.exception("outbox row %s posted but not marked sent; will mark next round", row.id)
                except Exception as err:  # one bad row (a blob that is no picture) never blocks the rest
                    metrics.DELIVERY_FAILURES.inc()
                    log.exception("outbox row %s (order %s) failed", row.id, row.order_id)
                    await self._failed_attempt(row, f"{type(err).__name__}: {err}")
            return posted

    async def _failed_attempt(self, row: lifecycle.OutboxItem, error: str) -> None:
        """Count the failure; at DELIVERY_MAX_ATTEMPTS the row is given up, the member's notice is queued and
        the admins are alerted. Never raises: the round goes on with the next row."""
        try:
            gave_up = await self.bot.run_blocking(
                lifecycle.give_up_outbox,
                self.bot.backends.engine,
                row,
                error,
                self.bot.settings.delivery_max_attempts,
            )
            if gave_up is None:
                return
            metrics.DELIVERIES_GIVEN_UP.inc()
            self._outbox_wake.set()  # the notice goes out next round
            await self._alert_given_up(gave_up)
        except Exception:
            log.exception("could not record the failure of outbox row %s", row.id)

    async def _alert_given_up(self, gave_up: lifecycle.GaveUp) -> None:
        from bot import alerts
        from bot.services import admin

        channels: set[int] = set()
        if self.bot.settings.alert_channel_id is not None:
            channels.add(self.bot.settings.alert_channel_id)
        if gave_up.guild_id and gave_up.guild_id.isdigit():
            rules = await self.bot.run_blocking(admin.guild_rules, self.bot.backends, int(gave_up.guild_id))
            if rules.admin_log_channel_id:
                channels.add(rules.admin_log_channel_id)
        alert = alerts.Alert(
            f"delivery:{gave_up.outbox_id}",
            "critical",
            f"gave up posting a {gave_up.kind} of order `{gave_up.order_id}` after {gave_up.attempts} "
            f"attempt(s): {gave_up.error[:300]}. The member was told.",
        )
        for channel_id in channels:
            try:
                await self.bot.get_partial_messageable(channel_id).send(alerts.format_alert(alert))
            except discord.HTTPException as err:
                log.warning("could not post a delivery alert to channel %s: HTTP %s", channel_id, err.status)

    async def _post(self, row: lifecycle.OutboxItem) -> None:
        await self.bot.run_blocking(lifecycle.claim_outbox, self.bot.backends.engine, row.id)
        # The guild's upload limit when the bot knows the channel (boosted servers allow more), else Discord's default.
        known = self.bot.get_channel(int(row.payload.get("channel_id") or 0))
        guild = getattr(known, "guild", None)
        limit = guild.filesize_limit if guild is not None else media.DEFAULT_ATTACHMENT_LIMIT
        # Discord's age-restricted flag (a thread follows its parent); an unknown channel is not restricted.
        is_nsfw = getattr(known, "is_nsfw", None)
        nsfw = bool(is_nsfw()) if callable(is_nsfw) else False
        message = await self.bot.run_blocking(
            svc.build_message, self.bot.backends, row, limit, channel_nsfw=nsfw
        )
        channel = self.bot.get_partial_messageable(message.channel_id)
        sent = await channel.send(
            content=message.content,
            embed=message.embed,  # type: ignore[arg-type]  # discord.py accepts None; its types do not say so
            files=message.files(),
            view=message.view,  # type: ignore[arg-type]
            nonce=svc.nonce_for(row.id),
            allowed_mentions=message.allowed_mentions,
        )
        try:
            await self.bot.run_blocking(lifecycle.mark_outbox_sent, self.bot.backends.engine, row.id, sent.id)
        except Exception as err:
            raise _PostedNotMarked(row.id) from err
        metrics.DELIVERIES.labels(kind=row.kind).inc()
        if message.order_id:
            self.schedule_status_edit(message.order_id, final=True)

    # --- orders without a live job (bot/services/reconcile.py) ------------------------------------------
    @periodic("reconciler round")
    async def reconcile_orders(self) -> None:
        from bot.services import reconcile

        repairs = await self.bot.run_blocking(reconcile.reconcile_once, self.bot.backends)
        for repair in repairs:
            metrics.ORDERS_RECONCILED.labels(action=repair.action).inc()
            self.schedule_status_edit(repair.order_id, final=repair.action == "failed")
        if any(r.action == "failed" for r in repairs):
            self._outbox_wake.set()


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Delivery(bot))
