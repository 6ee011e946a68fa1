"""DNS for delivery targets: answers cached for their TTL, one query per name at a time.

`CachingResolver.resolve(host)` returns the addresses of a name, A records before AAAA (the
transport tries them in order and has no happy eyeballs; IPv4 reaches more receivers, and an
unreachable IPv6 route fails fast anyway). It does not judge them: the target guard runs on
every address the transport connects to, from the cache or not, so a name that rebinds to a
forbidden address is refused once its old answer expires.

Where the answers come from, as the system's `files dns` order would have it:

- IP literals: themselves, no lookup.
- `localhost`, `*.localhost` and names listed in /etc/hosts: the system resolver
  (getaddrinfo), whose answers carry no TTL and are kept `fallback_ttl` seconds.
- Every other name: A and AAAA queries (dnspython) to the configured nameservers, or the
  system's from /etc/resolv.conf (its search list and ndots too); the answer is kept for its
  TTL (the smallest along a CNAME chain) clamped to [min_ttl, max_ttl]. A name DNS has no
  address for, or that no nameserver answered, goes to getaddrinfo as well (mDNS, search
  rules or NSS modules may know it); if that fails too, the failure is kept `negative_ttl`.

Concurrent lookups of one name share one query, and the cache holds at most `max_entries`
names (the least recently used go first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

__all__ = ["Address", "CachingResolver", "ResolveError"]

log = logging.getLogger("hookcast.dns")

Address = tuple[int, str]  # (socket family, IP address)

HOSTS_FILE = "/etc/hosts"
LOOKUP_SECONDS = 5.0  # all nameservers together, per query type (dnspython's lifetime)
_HOSTS_RECHECK_SECONDS = 5.0  # how often the hosts file's mtime is looked at


class ResolveError(Exception):
    """The name has no usable address; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Entry:
    addresses: tuple[Address, ...]  # empty: a failure, `error` says which
    error: str
    expires: float


class CachingResolver:
    """Use inside one event loop; `close()` cancels lookups in progress."""

    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        min_ttl: float = 1.0,
        max_ttl: float = 300.0,
        negative_ttl: float = 5.0,
        fallback_ttl: float = 5.0,
        max_entries: int = 10_000,
        lookup_seconds: float = LOOKUP_SECONDS,
        hosts_file: str = HOSTS_FILE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_ttl = min_ttl
        self._max_ttl = max(max_ttl, min_ttl)
        self._negative_ttl = negative_ttl
        self._fallback_ttl = fallback_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, asyncio.Task[_Entry]] = {}
        self._hosts_file = hosts_file
        self._hosts_names: frozenset[str] = frozenset()
        self._hosts_mtime: float | None = None
        self._hosts_checked = -_HOSTS_RECHECK_SECONDS
        self._dns = _dns_resolver(nameservers, lookup_seconds)

    async def resolve(self, host: str) -> tuple[Address, ...]:
        """The addresses of `host` (non-empty); ResolveError when it has none."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return ((socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip)),)
        name = host.lower()
        entry = self._cache.get(name)
        if entry is None or entry.expires <= self._clock():
            task = self._pending.get(name)
            if task is None:
                task = asyncio.create_task(self._lookup(name), name=f"hookcast-dns {name}")
                self._pending[name] = task
                task.add_done_callback(lambda _: self._pending.pop(name, None))
            # shield: a caller that gives up (its attempt timed out) must not cancel the
            # query the other callers wait on; the answer is cached for the next one.
            entry = await asyncio.shield(task)
        else:
            self._cache.move_to_end(name)
        if not entry.addresses:
            raise ResolveError(entry.error)
        return entry.addresses

    async def close(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._cache.clear()

    # ----- internals -----------------------------------------------------------------------

    async def _lookup(self, name: str) -> _Entry:
        try:
            entry: _Entry | None = None
            if self._dns is not None and not self._system_name(name):
                entry = await self._query(name)
            if entry is None:
                entry = await self._system(name)
        except Exception as exc:  # never fail the callers with something unexpected
            log.warning("resolving %s failed unexpectedly: %r", name, exc)
            entry = _Entry((), str(exc) or type(exc).__name__, self._clock() + self._negative_ttl)
        self._cache[name] = entry
        self._cache.move_to_end(name)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return entry

    async def _query(self, name: str) -> _Entry | None:
        """A and AAAA from DNS; None when DNS has no address for the name."""
        assert self._dns is not None
        try:
            qname = dns.name.from_text(name, origin=None)  # relative: the search list applies
        except dns.exception.DNSException as exc:  # e.g. a label longer than 63 octets
            return _Entry((), str(exc).rstrip("."), self._clock() + self._negative_ttl)
        answers = await asyncio.gather(
            self._dns.resolve(qname, dns.rdatatype.A, raise_on_no_answer=False),
            self._dns.resolve(qname, dns.rdatatype.AAAA, raise_on_no_answer=False),
            return_exceptions=True,
        )
        addresses: list[Address] = []
        ttl: float | None = None
        for family, answer in zip((socket.AF_INET, socket.AF_INET6), answers, strict=True):
            if isinstance(answer, Exception):
                # NXDOMAIN, no nameserver answered, a timeout: the system may still know it
                log.debug("DNS lookup of %s failed: %s", name, answer)
                continue
            if isinstance(answer, BaseException):
                raise answer  # cancelled
            if answer.rrset is None:
                continue
            addresses.extend((family, rdata.to_text()) for rdata in answer.rrset)
            found = answer.chaining_result.minimum_ttl
            ttl = found if ttl is None else min(ttl, found)
        if not addresses or ttl is None:
            return None
        ttl = min(max(float(ttl), self._min_ttl), self._max_ttl)
        return _Entry(tuple(dict.fromkeys(addresses)), "", self._clock() + ttl)

    async def _system(self, name: str) -> _Entry:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                name, None, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            error = str(exc.strerror or exc)
        except (UnicodeError, ValueError) as exc:  # e.g. a label longer than 63 characters
            error = str(exc)
        else:
            found = tuple(dict.fromkeys((family, str(addr[0])) for family, *_, addr in infos))
            if found:
                return _Entry(found, "", self._clock() + self._fallback_ttl)
            error = "no address"
        return _Entry((), error, self._clock() + self._negative_ttl)

    def _system_name(self, name: str) -> bool:
        """Names the system answers before DNS: localhost and the hosts file's."""
        bare = name.rstrip(".")
        if bare == "localhost" or bare.endswith(".localhost"):
            return True
        return bare in self._hosts()

    def _hosts(self) -> frozenset[str]:
        now = self._clock()
        if now - self._hosts_checked < _HOSTS_RECHECK_SECONDS:
            return self._hosts_names
        self._hosts_checked = now
        try:
            mtime = os.stat(self._hosts_file).st_mtime
        except OSError:
            self._hosts_names, self._hosts_mtime = frozenset(), None
            return self._hosts_names
        if mtime != self._hosts_mtime:
            self._hosts_mtime = mtime
            self._hosts_names = _read_hosts(self._hosts_file)
        return self._hosts_names


def _read_hosts(path: str) -> frozenset[str]:
    """The names (canonical and aliases) listed in a hosts file, lower-case."""
    names: set[str] = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.partition("#")[0].split()
                names.update(f.lower().rstrip(".") for f in fields[1:])
    except OSError:
        pass
    return frozenset(names)


def _dns_resolver(
    nameservers: Sequence[tuple[str, int]], lookup_seconds: float
) -> dns.asyncresolver.Resolver | None:
    """dnspython's resolver for the given nameservers, else the system's; None (getaddrinfo
    only) when the system names no nameserver."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf: servers, search, ndots
        except dns.resolver.NoResolverConfiguration as exc:
            log.warning("no DNS nameserver configured (%s); names resolve with getaddrinfo", exc)
            return None
        resolver.use_search_by_default = True  # as getaddrinfo applies resolv.conf's search
    resolver.lifetime = lookup_seconds
    resolver.cache = None  # ours caches, with the bounds above
    return resolver
