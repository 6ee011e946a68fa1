"""DNS for deliveries (net/resolver.py) against a real DNS server on loopback.

The nameserver is dnslib's, on 127.0.0.1 (UDP), answering what each test sets and counting
the queries it gets; the receiver is a real HTTPS server on 127.0.0.1 whose certificate
covers the test names. It answers `Connection: close`, so every delivery opens a new
connection and asks the resolver again: what reaches the DNS server is what the cache let
through. Tests that need time to pass use a clock of their own (`Clock`), except the one
that shows the real clock is honoured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trustme
from support.dns import DnsServer, Record
from support.receivers import Receiver

from hookcast.guard import TargetGuard, make_ssl_context
from hookcast.net.http11 import Http11Transport
from hookcast.net.resolver import CachingResolver, ResolveError
from hookcast.net.sender import HttpSender
from hookcast.net.transport import TransportError
from hookcast.settings import Settings

WAIT = 5.0
LOOPBACK_ONLY = [ipaddress.ip_network("127.0.0.0/8")]


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dns_cert() -> Iterator[tuple[trustme.CA, trustme.LeafCert]]:
    ca = trustme.CA()
    yield ca, ca.issue_cert("*.dns.test", "127.0.0.1")


@pytest.fixture
def site(dns_cert: tuple[trustme.CA, trustme.LeafCert]) -> Iterator[Receiver]:
    receiver = Receiver(dns_cert[1]).start()
    receiver.respond(headers={"Connection": "close"})  # a new connection every time
    yield receiver
    receiver.stop()


@pytest.fixture
def ca_file(dns_cert: tuple[trustme.CA, trustme.LeafCert], tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    dns_cert[0].cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def transports(ca_file: str) -> AsyncIterator[Callable[..., Http11Transport]]:
    """`transports(resolver, allow=LOOPBACK_ONLY, per_host=4)`; closed after the test."""
    made: list[Http11Transport] = []

    def make(
        resolver: CachingResolver,
        allow: list[ipaddress.IPv4Network] = LOOPBACK_ONLY,
        per_host: int = 4,
    ) -> Http11Transport:
        transport = Http11Transport(
            make_ssl_context(ca_file),
            TargetGuard(allow),
            per_host=per_host,
            max_body=1024,
            resolver=resolver,
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


@pytest.fixture
async def resolvers(dns: DnsServer) -> AsyncIterator[Callable[..., CachingResolver]]:
    """`resolvers(**options)`: a CachingResolver asking `dns`; closed after the test."""
    made: list[CachingResolver] = []

    def make(**options: object) -> CachingResolver:
        resolver = CachingResolver(nameservers=[dns.nameserver], **options)  # type: ignore[arg-type]
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.close()


def url(site: Receiver, host: str) -> str:
    return site.url_for("/hook", host=host)


async def post(transport: Http11Transport, target: str, body: bytes = b"{}") -> int:
    async with asyncio.timeout(WAIT):
        return (await transport.post(target, {}, body)).status


async def refusal(transport: Http11Transport, target: str) -> str:
    with pytest.raises(TransportError) as failed:
        await post(transport, target)
    return failed.value.message


# -- the TTL -------------------------------------------------------------------------------------


async def test_answers_are_cached_until_their_ttl_runs_out(dns, site, resolvers, transports):
    # The real clock: one query serves every connection within the 1 s TTL; the next
    # connection after it asks again.
    dns.records["ttl.dns.test"] = Record(["127.0.0.1"], ttl=1)
    transport = transports(resolvers(min_ttl=0))
    for _ in range(10):
        assert await post(transport, url(site, "ttl.dns.test")) == 200
    assert len(site.requests) == 10
    assert [q.qtype for q in dns.queries("ttl.dns.test")] in (["A", "AAAA"], ["AAAA", "A"])

    deadline = time.monotonic() + WAIT
    while len(dns.queries("ttl.dns.test", "A")) < 2:
        assert time.monotonic() < deadline, "the answer was never asked for again"
        assert await post(transport, url(site, "ttl.dns.test")) == 200
        await asyncio.sleep(0.05)
    first, second = dns.queries("ttl.dns.test", "A")
    assert second.at - first.at >= 0.9  # not before the TTL ran out


async def test_ttl_is_clamped_and_the_shortest_of_a_cname_chain_counts(dns, resolvers):
    clock = Clock()
    resolver = resolvers(min_ttl=5, max_ttl=300, clock=clock)
    dns.records["zero.dns.test"] = Record(["127.0.0.1"], ttl=0)
    dns.records["long.dns.test"] = Record(["127.0.0.2"], ttl=86400)
    dns.records["target.dns.test"] = Record(["127.0.0.3"], ttl=3600)
    dns.records["alias.dns.test"] = Record(cname="target.dns.test", ttl=60)

    async def asked(name: str, at: float) -> int:
        clock.now = 1000.0 + at
        await resolver.resolve(name)
        return len(dns.queries(name, "A"))

    assert [await asked("zero.dns.test", t) for t in (0, 4.9, 5.0)] == [1, 1, 2]  # min_ttl
    assert [await asked("long.dns.test", t) for t in (0, 299, 300)] == [1, 1, 2]  # max_ttl
    assert [await asked("alias.dns.test", t) for t in (0, 59, 60)] == [1, 1, 2]  # the CNAME's
    assert await resolver.resolve("alias.dns.test") == ((socket.AF_INET, "127.0.0.3"),)


async def test_a_and_aaaa_answers_are_both_used_ipv4_first(dns, resolvers):
    dns.records["dual.dns.test"] = Record(["::1", "127.0.0.1", "127.0.0.2"], ttl=60)
    assert await resolvers().resolve("dual.dns.test") == (
        (socket.AF_INET, "127.0.0.1"),
        (socket.AF_INET, "127.0.0.2"),
        (socket.AF_INET6, "::1"),
    )


# -- the guard on cached answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "forbidden, kind",
    [("169.254.169.254", "a link-local address"), ("10.0.0.1", "a private address")],
)
async def test_a_name_that_rebinds_to_a_forbidden_address_is_refused_after_its_ttl(
    dns, site, resolvers, transports, forbidden: str, kind: str
):
    clock = Clock()
    transport = transports(resolvers(clock=clock))
    dns.records["rebind.dns.test"] = Record(["127.0.0.1"], ttl=30)
    assert await post(transport, url(site, "rebind.dns.test"), b"first") == 200

    dns.records["rebind.dns.test"] = Record([forbidden], ttl=30)  # the attacker's move
    clock.now += 29  # still the old answer: allowed, and it is still 127.0.0.1
    assert await post(transport, url(site, "rebind.dns.test"), b"cached") == 200
    assert len(dns.queries("rebind.dns.test", "A")) == 1

    clock.now += 1  # expired: asked again, and the new address is judged before connecting
    message = await refusal(transport, url(site, "rebind.dns.test"))
    assert message.startswith(
        f"target refused: rebind.dns.test resolves only to refused addresses: {forbidden} is {kind}"
    ), message
    assert len(dns.queries("rebind.dns.test", "A")) == 2
    assert [r.body for r in site.requests] == [b"first", b"cached"]


async def test_a_cached_answer_is_judged_by_every_guard_that_uses_it(
    dns, site, resolvers, transports
):
    # One cache, two transports: the second is refused although its answer came from the
    # cache (no query), because its guard allows no loopback.
    dns.records["shared.dns.test"] = Record(["127.0.0.1"], ttl=300)
    resolver = resolvers()
    assert await post(transports(resolver), url(site, "shared.dns.test")) == 200
    message = await refusal(transports(resolver, allow=[]), url(site, "shared.dns.test"))
    assert message.startswith("target refused: shared.dns.test resolves only to refused"), message
    assert "127.0.0.1 is a loopback address" in message
    assert len(dns.queries("shared.dns.test", "A")) == 1
    assert len(site.requests) == 1


async def test_a_mixed_answer_connects_only_to_the_allowed_address(
    dns, site, resolvers, transports
):
    dns.records["mixed.dns.test"] = Record(["169.254.169.254", "10.0.0.1", "127.0.0.1"], ttl=60)
    transport = transports(resolvers())
    async with asyncio.timeout(1.0):  # a connect to either refused address would hang
        assert await post(transport, url(site, "mixed.dns.test")) == 200
    assert len(site.requests) == 1


# -- one query per name at a time ----------------------------------------------------------------


async def test_concurrent_deliveries_to_one_name_share_one_query(dns, site, resolvers, transports):
    dns.records["burst.dns.test"] = Record(["127.0.0.1"], ttl=60)
    dns.delay = 0.2  # every lookup overlaps the others
    transport = transports(resolvers(), per_host=20)
    statuses = await asyncio.gather(
        *(post(transport, url(site, "burst.dns.test")) for _ in range(20))
    )
    assert statuses == [200] * 20
    assert len(dns.queries("burst.dns.test", "A")) == 1
    assert len(dns.queries("burst.dns.test", "AAAA")) == 1


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_lookup(dns, resolvers):
    dns.records["slow.dns.test"] = Record(["127.0.0.1"], ttl=60)
    dns.delay = 0.3
    resolver = resolvers()
    impatient = asyncio.create_task(resolver.resolve("slow.dns.test"))
    patient = [asyncio.create_task(resolver.resolve("slow.dns.test")) for _ in range(5)]
    await asyncio.sleep(0.05)
    impatient.cancel()
    answers = await asyncio.wait_for(asyncio.gather(*patient), WAIT)
    assert answers == [((socket.AF_INET, "127.0.0.1"),)] * 5
    assert impatient.cancelled()
    assert len(dns.queries("slow.dns.test", "A")) == 1


# -- what never asks DNS -------------------------------------------------------------------------


async def test_ip_literals_never_query(dns, site, resolvers, transports):
    resolver = resolvers()
    transport = transports(resolver)
    for _ in range(3):
        assert await post(transport, site.url) == 200  # https://127.0.0.1:port/hook
    assert await resolver.resolve("127.0.0.1") == ((socket.AF_INET, "127.0.0.1"),)
    assert await resolver.resolve("::1") == ((socket.AF_INET6, "::1"),)
    assert dns.queries() == []


def _hosts_file_name() -> str | None:
    """A name /etc/hosts lists besides localhost, resolving to 127.0.0.1 (if any)."""
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.partition("#")[0].split()
        if fields and fields[0] == "127.0.0.1":
            names = [n for n in fields[1:] if "localhost" not in n]
            if names:
                return names[0]
    return None


HOSTS_NAME = _hosts_file_name()
needs_hosts_name = pytest.mark.skipif(
    HOSTS_NAME is None, reason="/etc/hosts lists no name for 127.0.0.1 besides localhost"
)


@needs_hosts_name
async def test_localhost_and_hosts_file_names_resolve_as_the_system_does(dns, resolvers):
    assert HOSTS_NAME is not None
    dns.records[HOSTS_NAME] = Record(["127.0.0.9"], ttl=60)  # DNS would say otherwise
    dns.records["localhost"] = Record(["127.0.0.9"], ttl=60)
    resolver = resolvers()
    assert (socket.AF_INET, "127.0.0.1") in await resolver.resolve("localhost")
    assert await resolver.resolve(HOSTS_NAME) == ((socket.AF_INET, "127.0.0.1"),)
    assert dns.queries() == []  # /etc/hosts first, as the system's `files dns` order says


@needs_hosts_name
async def test_names_dns_does_not_know_fall_back_to_the_system_resolver(
    dns, resolvers, tmp_path: Path
):
    # The resolver is told of an empty hosts file, so it asks DNS first (NXDOMAIN); the
    # system resolver (getaddrinfo, which reads the real /etc/hosts) still knows the name.
    assert HOSTS_NAME is not None
    clock = Clock()
    empty = tmp_path / "hosts"
    empty.write_text("")
    resolver = resolvers(hosts_file=str(empty), fallback_ttl=10, clock=clock)
    for at in (0, 9.9):
        clock.now = 1000.0 + at
        assert await resolver.resolve(HOSTS_NAME) == ((socket.AF_INET, "127.0.0.1"),)
    assert len(dns.queries(HOSTS_NAME, "A")) == 1  # kept fallback_ttl
    clock.now = 1010.0
    await resolver.resolve(HOSTS_NAME)
    assert len(dns.queries(HOSTS_NAME, "A")) == 2


@needs_hosts_name
async def test_no_nameserver_answering_falls_back_to_the_system_resolver(tmp_path: Path):
    # A nameserver port nothing listens on: no answer within the lookup time (0.3 s here).
    assert HOSTS_NAME is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
    empty = tmp_path / "hosts"
    empty.write_text("")
    resolver = CachingResolver(nameservers=[dead], hosts_file=str(empty), lookup_seconds=0.3)
    try:
        async with asyncio.timeout(WAIT):
            assert await resolver.resolve(HOSTS_NAME) == ((socket.AF_INET, "127.0.0.1"),)
    finally:
        await resolver.close()


# -- failures and bounds -------------------------------------------------------------------------


async def test_a_name_that_does_not_resolve_is_remembered_briefly(dns, resolvers, transports):
    clock = Clock()
    resolver = resolvers(negative_ttl=5, clock=clock)
    transport = transports(resolver)
    for at in (0, 4.9):
        clock.now = 1000.0 + at
        message = await refusal(transport, "https://nx.dns.test/hook")
        assert message.startswith("could not resolve nx.dns.test: "), message
    assert len(dns.queries("nx.dns.test", "A")) == 1
    dns.records["nx.dns.test"] = Record(["127.0.0.1"], ttl=60)  # it exists now
    clock.now = 1005.0
    assert await resolver.resolve("nx.dns.test") == ((socket.AF_INET, "127.0.0.1"),)
    assert len(dns.queries("nx.dns.test", "A")) == 2


async def test_an_invalid_name_is_refused_without_a_query(dns, resolvers):
    with pytest.raises(ResolveError):
        await resolvers().resolve("a" * 64 + ".dns.test")  # a label longer than 63 octets
    assert dns.queries() == []


async def test_the_cache_is_bounded(dns, resolvers):
    resolver = resolvers(max_entries=3)
    names = [f"n{i}.dns.test" for i in range(5)]
    for i, name in enumerate(names):
        dns.records[name] = Record([f"127.0.0.{i + 1}"], ttl=300)
        await resolver.resolve(name)
    for name in names[2:]:  # the three most recent are kept...
        await resolver.resolve(name)
        assert len(dns.queries(name, "A")) == 1
    await resolver.resolve(names[0])  # ... the oldest was dropped
    assert len(dns.queries(names[0], "A")) == 2


# -- settings ------------------------------------------------------------------------------------


async def test_the_sender_resolves_with_the_configured_nameservers(dns, site, ca_file: str):
    dns.records["configured.dns.test"] = Record(["127.0.0.1"], ttl=60)
    settings = Settings(
        ca_bundle=ca_file,
        allow_targets="127.0.0.0/8",
        dns_nameservers=f"127.0.0.1:{dns.port}",
        attempt_timeout=WAIT,
    )
    async with HttpSender(settings) as sender:
        for _ in range(3):
            result = await sender.send(url(site, "configured.dns.test"), b"{}", {})
            assert result.ok, result.error
    assert len(dns.queries("configured.dns.test", "A")) == 1
    assert len(site.requests) == 3


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("127.0.0.1:5353", [("127.0.0.1", 5353)]),
        ("192.0.2.53", [("192.0.2.53", 53)]),
        ("2001:db8::53, [::1]:5353", [("2001:db8::53", 53), ("::1", 5353)]),
        ("", []),
    ],
)
def test_nameserver_setting(text: str, parsed: list[tuple[str, int]]) -> None:
    assert Settings(dns_nameservers=text).dns_nameservers == parsed


@pytest.mark.parametrize("text", ["dns.example", "127.0.0.1:0", "[::1", "127.0.0.1:x"])
def test_nameserver_setting_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(ValueError):
        Settings(dns_nameservers=text)


# -- registration resolves as deliveries do ---------------------------------------------------


async def test_registration_resolves_through_the_cache(
    dns: DnsServer, site: Receiver, ca_file: str
) -> None:
    from hookcast.errors import TargetRefused, VerificationFailed
    from hookcast.verification import verify_target

    settings = Settings(
        ca_bundle=ca_file, allow_targets=LOOPBACK_ONLY, dns_nameservers=[dns.nameserver]
    )
    dns.records["ok.dns.test"] = Record(["127.0.0.1"], ttl=60)
    dns.records["meta.dns.test"] = Record(["127.0.0.1", "169.254.169.254"], ttl=60)
    fields = {
        "secret": None, "name": "n", "headers": None, "properties": None,
        "tenant": "T", "associate_id": 1, "settings": settings,
    }  # fmt: skip
    async with HttpSender(settings) as sender:
        await verify_target(sender, url=url(site, "ok.dns.test"), **fields)
        # the test POST connected with the answer registration looked up: one query
        assert len(dns.queries("ok.dns.test", "A")) == 1
        # one refused address in the answer refuses the name (§5), before any POST
        with pytest.raises(TargetRefused):
            await verify_target(sender, url=url(site, "meta.dns.test"), **fields)
        with pytest.raises(VerificationFailed, match="could not be resolved"):
            await verify_target(sender, url=url(site, "nothing.dns.test"), **fields)
    assert len([r for r in site.requests if r.header("X-Hook-Test")]) == 1
