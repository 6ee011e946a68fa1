"""The target guard (§7) and the TLS context for deliveries (§5).

A TargetUrl may only reach globally routable unicast addresses unless an operator allows a
CIDR (HOOKCAST_ALLOW_TARGETS). The check runs on the addresses actually connected to, so a
name that resolves to 10.0.0.5 today (DNS rebinding) is refused like the literal would be.

aiohttp 3.14's TCPConnector never calls the resolver for an IP literal in the URL
(`_resolve_host` returns it as is), so a resolver alone is not enough. Two hooks therefore:
`GuardedResolver` filters what DNS returns (the allowed addresses of a mixed answer are
still used), and `guarded_socket_factory` checks every address right before its socket is
created, which covers IP literals and any resolver path aiohttp may add later.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from .errors import TargetRefused
from .targets import check_target_url  # re-exported: the pure URL rule lives in targets

__all__ = [
    "GuardedResolver",
    "TargetGuard",
    "TargetRefusedError",
    "check_target_url",
    "guarded_socket_factory",
    "make_ssl_context",
]

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "HOOKCAST_ALLOW_TARGETS"


class TargetRefusedError(TargetRefused, OSError):
    """A TargetRefused that is also an OSError, so aiohttp's connect path treats it like a
    failed connect (wraps it in ClientConnectorError, tries the next address)."""


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in rows)


# Every IPv4 range that is not public unicast, with the words used in refusals.
_REFUSED_V4 = _table(
    ("0.0.0.0/8", "an unspecified"),
    ("10.0.0.0/8", "a private"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "a loopback"),
    ("169.254.0.0/16", "a link-local"),
    ("172.16.0.0/12", "a private"),
    ("192.0.0.0/24", "a reserved (IETF protocol assignment)"),
    ("192.0.2.0/24", "a documentation"),
    ("192.88.99.0/24", "a reserved (6to4 relay)"),
    ("192.168.0.0/16", "a private"),
    ("198.18.0.0/15", "a reserved (benchmarking)"),
    ("198.51.100.0/24", "a documentation"),
    ("203.0.113.0/24", "a documentation"),
    ("224.0.0.0/4", "a multicast"),
    ("240.0.0.0/4", "a reserved"),
)

# IPv6: only 2000::/3 is global unicast; these are the non-public parts inside it, checked
# after the ranges outside it got their specific names.
_NAMED_V6 = _table(
    ("::/128", "an unspecified"),
    ("::1/128", "a loopback"),
    ("fe80::/10", "a link-local"),
    ("fec0::/10", "a site-local"),
    ("fc00::/7", "a private (unique local)"),
    ("ff00::/8", "a multicast"),
)
_GLOBAL_V6 = ipaddress.ip_network("2000::/3")
_REFUSED_IN_GLOBAL_V6 = _table(
    ("2001::/23", "a reserved (IETF protocol assignment)"),
    ("2001:db8::/32", "a documentation"),
    ("3fff::/20", "a documentation"),
)
# Ranges that embed an IPv4 address the packet ends up at: judge that address instead.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _kind_v4(ip: ipaddress.IPv4Address) -> str | None:
    for net, kind in _REFUSED_V4:
        if ip in net:
            return kind
    return None


def _kind_v6(ip: ipaddress.IPv6Address) -> str | None:
    for net, kind in _NAMED_V6:
        if ip in net:
            return kind
    if ip not in _GLOBAL_V6:
        return "a reserved"
    for net, kind in _REFUSED_IN_GLOBAL_V6:
        if ip in net:
            return kind
    return None


class TargetGuard:
    """Decides whether a delivery may connect to an address."""

    def __init__(self, allow: Iterable[IPNetwork] = ()) -> None:
        self._allow = tuple(allow)

    def refusal(self, ip: str | IPAddress) -> str | None:
        """None when `ip` may be connected to, otherwise the reason in one sentence."""
        try:
            addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        except ValueError:
            return f"{ip!r} is not an IP address"
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.scope_id:
                addr = ipaddress.IPv6Address(addr.packed)  # fe80::1%eth0 -> fe80::1
            v4 = _embedded_v4(addr)
            if self._allowed_by_setting(addr) or (v4 is not None and self._allowed_by_setting(v4)):
                return None
            kind = _kind_v4(v4) if v4 is not None else _kind_v6(addr)
            shown = f"{addr} ({v4})" if v4 is not None else str(addr)
        else:
            if self._allowed_by_setting(addr):
                return None
            kind = _kind_v4(addr)
            shown = str(addr)
        if kind is None:
            return None
        return f"{shown} is {kind} address; add it to {ALLOW_SETTING} to allow it"

    def is_allowed(self, ip: str | IPAddress) -> bool:
        return self.refusal(ip) is None

    def check(self, ip: str | IPAddress) -> None:
        """Raise TargetRefused (as TargetRefusedError) unless `ip` may be connected to."""
        if (reason := self.refusal(ip)) is not None:
            raise TargetRefusedError(reason)

    def keep_allowed(self, host: str, addresses: Sequence[T], ip_of: Callable[[T], str]) -> list[T]:
        """The addresses `host` resolved to that may be connected to (a mixed answer keeps
        its allowed part); TargetRefused (as TargetRefusedError) when none may."""
        allowed = [a for a in addresses if self.is_allowed(ip_of(a))]
        if not allowed:
            # Name the first refused address; the whole answer was refused.
            reason = self.refusal(ip_of(addresses[0])) if addresses else None
            raise TargetRefusedError(
                f"{host} resolves only to refused addresses: {reason}"
                if reason
                else f"{host} has no address"
            )
        return allowed

    def _allowed_by_setting(self, addr: IPAddress) -> bool:
        return any(addr in net for net in self._allow)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp and drops the addresses the guard refuses."""

    def __init__(self, guard: TargetGuard, resolver: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._resolver = resolver if resolver is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        return self._guard.keep_allowed(host, results, lambda r: r["host"])

    async def close(self) -> None:
        await self._resolver.close()


def guarded_socket_factory(guard: TargetGuard) -> SocketFactoryType:
    """A TCPConnector `socket_factory` that refuses to create a socket for a refused
    address: the last check before connect(), also for IP literals in the URL."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        guard.check(sockaddr[0])
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def make_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context: system trust store plus the optional extra CA bundle."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"HOOKCAST_CA_BUNDLE {ca_bundle!r} cannot be loaded: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context
