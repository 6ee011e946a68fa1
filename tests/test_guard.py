"""The target guard: which addresses and URLs a webhook may reach, enforced on real connects."""

from __future__ import annotations

import ipaddress
import socket
import ssl

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from hookcast.errors import TargetRefused, ValidationError
from hookcast.guard import GuardedResolver, TargetGuard, check_target_url, make_ssl_context
from hookcast.net.sender import HttpSender
from hookcast.settings import Settings

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped public address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "shared"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a00:5", "private"),  # NAT64 of 10.0.0.5
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible
    ("2001::1", "reserved"),  # Teredo
    ("not-an-ip", "not an IP address"),
]


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_are_allowed(ip: str) -> None:
    guard = TargetGuard()
    assert guard.is_allowed(ip)
    guard.check(ipaddress.ip_address(ip))


@pytest.mark.parametrize(("ip", "kind"), REFUSED)
def test_non_public_addresses_are_refused(ip: str, kind: str) -> None:
    guard = TargetGuard()
    assert not guard.is_allowed(ip)
    with pytest.raises(TargetRefused, match=kind) as refused:
        guard.check(ip)
    if kind != "not an IP address":
        assert "HOOKCAST_ALLOW_TARGETS" in refused.value.message


def test_refusal_message_names_address_and_kind() -> None:
    with pytest.raises(TargetRefused) as refused:
        TargetGuard().check("10.0.0.5")
    assert refused.value.message == (
        "10.0.0.5 is a private address; add it to HOOKCAST_ALLOW_TARGETS to allow it"
    )


def test_allow_list_lets_cidrs_through_and_nothing_else() -> None:
    guard = TargetGuard([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")])
    assert guard.is_allowed("127.0.0.1")
    assert guard.is_allowed("127.1.2.3")
    assert guard.is_allowed("::ffff:127.0.0.1")  # the same host, mapped
    assert guard.is_allowed("fd12::1")
    assert not guard.is_allowed("10.0.0.1")
    assert not guard.is_allowed("::1")
    assert not guard.is_allowed("169.254.169.254")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://example.com:8443/a/b?x=1&y=2",
        "https://127.0.0.1:9999/",
        "https://[2001:db8::1]/hook",
        "HTTPS://Example.COM/",
        "https://bücher.example/",
    ],
)
def test_well_formed_target_urls(url: str) -> None:
    check_target_url(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://example.com/hook", "must use https, not http"),
        ("ftp://example.com/", "must use https, not ftp"),
        ("//example.com/hook", "absolute https:// URL"),
        ("/hook", "absolute https:// URL"),
        ("https:///hook", "must name a host"),
        ("https://user:pw@example.com/", "user:password credentials"),
        ("https://user@example.com/", "user:password credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://example.com/ hook", "whitespace or control characters"),
        ("https://example.com/\nhook", "whitespace or control characters"),
        ("https://example.com/\x00", "whitespace or control characters"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
        ("", "required"),
    ],
)
def test_malformed_target_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as error:
        check_target_url(url)
    assert error.value.message.startswith("TargetUrl ")


def test_ssl_context_verifies_with_modern_tls(ca_bundle_path: str) -> None:
    context = make_ssl_context(ca_bundle_path)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="HOOKCAST_CA_BUNDLE"):
        make_ssl_context("/nonexistent/ca.pem")


class FixedAnswer(AbstractResolver):
    """A DNS answer we choose: the resolver under test filters it."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0, flags=0
            )
            for ip in self.hosts
        ]

    async def close(self) -> None:
        pass


async def test_resolver_keeps_only_allowed_addresses_of_a_mixed_answer() -> None:
    resolver = GuardedResolver(TargetGuard(), FixedAnswer("10.0.0.5", "8.8.8.8", "127.0.0.1"))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["8.8.8.8"]


async def test_resolver_refuses_an_answer_with_only_refused_addresses() -> None:
    resolver = GuardedResolver(TargetGuard(), FixedAnswer("10.0.0.5", "169.254.169.254"))
    with pytest.raises(TargetRefused) as refused:
        await resolver.resolve("rebound.example", 443)
    assert refused.value.message.startswith(
        "rebound.example resolves only to refused addresses: 10.0.0.5 is a private address"
    )
    assert isinstance(refused.value, OSError)  # so aiohttp fails the connect cleanly


# -- enforced on the address actually connected to ----------------------------------------------


def settings_for(ca_bundle_path: str, allow: str = "") -> Settings:
    return Settings(ca_bundle=ca_bundle_path, allow_targets=allow, attempt_timeout=5)


async def test_ip_literal_is_refused_without_allow_list(receiver, ca_bundle_path: str) -> None:
    async with HttpSender(settings_for(ca_bundle_path)) as sender:
        result = await sender.send(receiver.url, b"{}", {"Content-Type": "application/json"})
    assert not result.ok and result.status is None
    assert result.error == (
        "target refused: 127.0.0.1 is a loopback address; "
        "add it to HOOKCAST_ALLOW_TARGETS to allow it"
    )
    assert receiver.requests == []


async def test_ip_literal_is_reached_with_allow_list(receiver, ca_bundle_path: str) -> None:
    async with HttpSender(settings_for(ca_bundle_path, "127.0.0.0/8")) as sender:
        result = await sender.send(receiver.url, b"{}", {"Content-Type": "application/json"})
    assert result.ok and result.status == 200 and result.error is None
    assert [r.body for r in receiver.requests] == [b"{}"]


async def test_hostname_resolving_to_loopback_is_refused(receiver, ca_bundle_path: str) -> None:
    # The URL text names no address: only a check on the resolved address can refuse it.
    url = receiver.url_for("/hook", host="localhost")
    async with HttpSender(settings_for(ca_bundle_path)) as sender:
        result = await sender.send(url, b"{}", {"Content-Type": "application/json"})
    assert not result.ok and result.status is None
    assert result.error is not None and result.error.startswith("target refused: localhost ")
    assert "loopback" in result.error
    assert receiver.requests == []

    async with HttpSender(settings_for(ca_bundle_path, "127.0.0.0/8,::1/128")) as sender:
        result = await sender.send(url, b"{}", {"Content-Type": "application/json"})
    assert result.ok, result.error
    assert len(receiver.requests) == 1
