"""The gateway websocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME, member chunks, dispatch.

Frames go out as plain JSON text; discord.py asks for zlib/zstd compression in the URL but reads uncompressed text
frames just as well, which keeps the sim's traffic readable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from photogen.discord_sim.server import DiscordSim

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, RESUME, RECONNECT, REQUEST_MEMBERS = 0, 1, 2, 3, 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
CLOSE_AUTH_FAILED, CLOSE_NOT_AUTHENTICATED, CLOSE_DECODE_ERROR = 4004, 4003, 4002
CLOSE_ALREADY_AUTHENTICATED = 4005
REPLAY_BUFFER = 1000
GUILD_MEMBERS_INTENT = 1 << 1


@dataclass(eq=False)
class GatewaySession:
    """One identified bot connection; it outlives a dropped socket so the bot can RESUME and get what it missed."""

    id: str
    intents: int
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    identified_at_seq: int = 0
    dropped: bool = False  # the sim closed the socket itself, so the session stays resumable

    async def send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_str(json.dumps(frame))
        except ConnectionError:
            # The frame stays in the replay buffer; a RESUME delivers it.
            log.debug("gateway session %s: send failed, frame kept for resume", self.id)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.buffer.append(frame)
        del self.buffer[:-REPLAY_BUFFER]
        await self.send(frame)


class Gateway:
    def __init__(self, sim: DiscordSim) -> None:
        self.sim = sim
        self.sessions: dict[str, GatewaySession] = {}
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeats = 0
        self._acks: set[asyncio.Task[None]] = set()
        self.presence: dict[str, Any] | None = None

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.ws is not None and not s.ws.closed]

    async def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> None:
        """Send an event to every session (a dropped-but-resumable one buffers it); `intent` filters by intents."""
        for session in list(self.sessions.values()):
            if intent is None or session.intents & intent:
                await session.dispatch(event, self._for(session, event, data))

    def _for(self, session: GatewaySession, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Discord sends a GUILD_CREATE's full member list only to bots with the GUILD_MEMBERS intent."""
        if event != "GUILD_CREATE" or session.intents & GUILD_MEMBERS_INTENT:
            return data
        bot_id = str(self.sim.bot_user.id)
        return data | {"members": [m for m in data.get("members", []) if m["user"]["id"] == bot_id]}

    async def drop(self, *, code: int = 4000) -> None:
        """Close every bot socket with a resumable code (the bot reconnects and RESUMEs)."""
        for session in self.live_sessions():
            assert session.ws is not None
            session.dropped = True
            await session.ws.close(code=code, message=b"dropped by the sim")

    def _ack_soon(self, ws: web.WebSocketResponse) -> None:
        """HEARTBEAT_ACK after ``heartbeat_ack_delay_s``, as over a network. An instant ACK from this process
        reaches discord.py's event loop before its keep-alive thread has noted the send time, and discord.py
        then logs "Can't keep up, websocket is 41.3s behind" (the whole interval) for a healthy connection."""

        async def ack() -> None:
            await asyncio.sleep(self.sim.heartbeat_ack_delay_s)
            if not ws.closed:
                await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))

        task = asyncio.get_running_loop().create_task(ack())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        session: GatewaySession | None = None
        await ws.send_str(
            json.dumps({"op": HELLO, "d": {"heartbeat_interval": self.sim.heartbeat_interval_ms}})
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await ws.close(code=CLOSE_DECODE_ERROR, message=b"binary frames are not accepted")
                    break
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"Error while decoding payload.")
                    break
                data = frame.get("d")
                if op == HEARTBEAT:
                    self.heartbeats += 1
                    self._ack_soon(ws)
                elif op in (IDENTIFY, RESUME) and session is not None:
                    await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated.")
                    break
                elif op == IDENTIFY:
                    session = await self._identify(ws, data or {})
                elif op == RESUME:
                    session = await self._resume(ws, data or {})
                elif session is None:
                    await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated.")
                    break
                elif op == REQUEST_MEMBERS:
                    await self._member_chunk(session, data or {})
                elif op == PRESENCE:
                    self.presence = data
        finally:
            if session is not None and session.ws is ws:
                session.ws = None
                # A clean close (1000/1001 from the client) ends the session; anything else may be resumed.
                clean = ws.close_code in (1000, 1001) and not session.dropped
                if clean and self.sessions.get(session.id) is session:
                    del self.sessions[session.id]
                session.dropped = False
            self.sim.notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        if data.get("token") != self.sim.token and data.get("token") != f"Bot {self.sim.token}":
            await ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return None
        self.identify_count += 1
        session = GatewaySession(id=uuid.uuid4().hex, intents=int(data.get("intents") or 0), ws=ws)
        self.sessions[session.id] = session
        sim = self.sim
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": sim.bot_user.payload() | {"verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in sim.bot_guilds()],
                "session_id": session.id,
                "resume_gateway_url": sim.gateway_url,
                "shard": data.get("shard") or [0, 1],
                "application": {"id": str(sim.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "auth_session_id_hash": "",
            },
        )
        for guild in sim.bot_guilds():
            await session.dispatch("GUILD_CREATE", self._for(session, "GUILD_CREATE", guild.payload()))
        session.identified_at_seq = session.seq
        sim.notify()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        token_ok = data.get("token") in (self.sim.token, f"Bot {self.sim.token}")
        if session is None or not token_ok:
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        self.resume_count += 1
        if session.ws is not None and session.ws is not ws and not session.ws.closed:
            await session.ws.close(code=4000, message=b"session resumed elsewhere")
        session.ws = ws
        last = int(data.get("seq") or 0)
        for frame in session.buffer:
            if frame["s"] > last:
                await session.send(frame)
        await session.dispatch("RESUMED", {})
        self.sim.notify()
        return session

    async def _member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.sim.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = list(guild.members.values())
        wanted = data.get("user_ids")
        if wanted:
            ids = {int(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if m.id in ids]
        elif data.get("query"):
            members = [m for m in members if m.name.lower().startswith(str(data["query"]).lower())]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
