"""Where a tenant's webhook may point: public addresses only, unless WEBHOOK_ALLOW_PRIVATE.

A webhook URL is the tenant's choice, and the api process runs inside the operator's network: without this a
tenant could make it POST to 127.0.0.1, the VPC or the EC2 metadata address (SSRF). The URL's host is checked
when the webhook is created (a literal address, or a name that resolves to one that is not public), and every
delivery connects through ``PublicOnlyResolver``, so a name that later resolves elsewhere (DNS rebinding) is
refused at the connection, not only at registration.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class BlockedAddress(OSError):
    """The webhook's host is (or resolves to) an address that is not public."""


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_host_refusal(url: str) -> str | None:
    """Why ``url`` may not be a webhook, judged without DNS (its scheme and a literal address); None: fine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a webhook URL is http:// or https:// with a host"
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "a webhook may not point at this machine"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked at each connection by PublicOnlyResolver
    return None if is_public(host) else "a webhook may only point at a public address"


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver with every non-public address dropped; none left → ``BlockedAddress``."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(str(r["host"]))]
        if not public:
            raise BlockedAddress(f"{host} does not resolve to a public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


async def resolution_refusal(url: str) -> str | None:
    """``literal_host_refusal`` and, for a name, whether it resolves to a public address now."""
    refusal = literal_host_refusal(url)
    if refusal is not None:
        return refusal
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    resolver = PublicOnlyResolver()
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except BlockedAddress:
        return "a webhook may only point at a public address"
    except OSError:
        return f"{host} could not be resolved"
    finally:
        await resolver.close()
    return None
