"""Settings from HOOKCAST_* environment variables and an optional TOML file.

Every number the contract calls "a setting" lives here, so tests can shorten delays by
building a `Settings(...)` instead of patching modules.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._version import __version__

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: Any) -> Any:
    """Accept "a,b" (environment) as well as a real list (TOML, code)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def parse_nameserver(text: str) -> tuple[str, int]:
    """An address with an optional port (`192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53`,
    `[2001:db8::53]:5353`) -> (ip, port); port 53 when none is given."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [ipv6]:port")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    ipaddress.ip_address(host)  # a name would need DNS to find DNS
    if not 0 < port < 65536:
        raise ValueError(f"nameserver {text!r}: port out of range")
    return host, port


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOOKCAST_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./hookcast.db"
    host: str = "127.0.0.1"
    port: int = 8000

    # Target guard and TLS (§5, §7)
    ca_bundle: str | None = None
    allow_targets: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)

    # Delivery (§6)
    retry_delays: Annotated[list[float], NoDecode] = Field(default_factory=lambda: [1.0, 4.0])
    cycles: int = Field(default=3, ge=1, le=100)
    cycle_delay: float = Field(default=60.0, ge=0)
    attempt_timeout: float = Field(default=10.0, gt=0, le=300)
    lease: float = Field(default=30.0, gt=0)
    max_consecutive_errors: int = Field(default=9, ge=1)
    standard_webhooks: bool = True
    user_agent: str = f"hookcast/{__version__}"
    max_response_bytes: int = 64 * 1024
    max_connections_per_host: int = Field(default=32, ge=1)
    # Attempts in flight per process: one waiting on a socket costs little (a task, a
    # connection), so thousands; raise the file-descriptor limit to match (RLIMIT_NOFILE).
    concurrency: int = Field(default=1024, ge=1)
    per_webhook_concurrency: int = Field(default=16, ge=1)  # so one slow target cannot take all
    # What an endpoint may run before its answers say more (adaptive.py)
    endpoint_initial_concurrency: int = Field(default=4, ge=1)
    outcome_window: float = Field(
        default=0.005, ge=0, le=1
    )  # seconds outcomes wait to share a commit
    batch_size: int = Field(default=100, ge=1)  # deliveries per claim and outcomes per commit
    poll_interval: float = Field(default=1.0, gt=0)  # fallback for wake-ups from other processes
    retention_days: float = Field(default=7.0, ge=0)  # finished deliveries and attempts kept
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")

    # Connections to targets (net/http11.py). TCP/TLS handshakes in progress per host, so a
    # burst to a slow host opens its connections a few at a time, not hundreds at once.
    max_handshakes_per_host: int = Field(default=8, ge=1)
    # DNS of delivery targets (net/resolver.py): answers are cached for their TTL, bounded
    dns_nameservers: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list
    )  # "ip[:port]", "[ipv6]:port"; none: the system's (/etc/resolv.conf)
    dns_min_ttl: float = Field(default=1.0, ge=0)
    dns_max_ttl: float = Field(default=300.0, ge=0)
    dns_negative_ttl: float = Field(default=5.0, ge=0)  # a name that did not resolve
    dns_fallback_ttl: float = Field(default=5.0, ge=0)  # system answers (/etc/hosts): no TTL
    dns_cache_size: int = Field(default=10_000, ge=1)

    # CRMScript sandbox (sandbox/): scripts compile and run in worker processes, started on
    # first use. HOOKCAST_SCRIPT_WORKERS: worker processes per hookcast process.
    # HOOKCAST_SCRIPT_TENANT_WORKERS: workers one tenant may hold at once (unset: all but
    # one, so another tenant always finds one). HOOKCAST_SCRIPT_TIMEOUT: wall-clock seconds of
    # one run (or one compile); the worker is killed and replaced shortly after (+ kill grace)
    # if the run has not ended by itself. HOOKCAST_SCRIPT_CPU_SECONDS: CPU time of one run
    # (RLIMIT_CPU; unset: the timeout). HOOKCAST_SCRIPT_MEMORY_MB: address space of a worker
    # (RLIMIT_AS; 0: none). HOOKCAST_SCRIPT_CACHE_MB: compiled scripts kept per worker.
    script_workers: int = Field(default=2, ge=1, le=256)
    script_tenant_workers: int | None = Field(default=None, ge=1)
    script_timeout: float = Field(default=10.0, gt=0, le=3600)
    script_kill_grace: float = Field(default=0.5, ge=0, le=60)
    script_cpu_seconds: float | None = Field(default=None, gt=0)
    script_memory_mb: int = Field(default=512, ge=0)
    script_cache_mb: float = Field(default=64.0, ge=0)

    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    # Observability (docs/observability.md). One INFO line per delivery attempt (logger
    # hookcast.attempts) and per API request (hookcast.access); OpenTelemetry spans (the
    # `otel` extra; exporter from the standard OTEL_* variables); the W3C traceparent of the
    # signalling code sent with deliveries; tenants with their own label in metrics (the
    # busiest ones; the rest are "other").
    log_attempts: bool = True
    log_access: bool = True
    tracing: bool = False
    propagate_trace: bool = False
    metrics_tenants: int = Field(default=20, ge=0, le=1000)

    # API limits (§7)
    max_body_bytes: int = 1024 * 1024
    # Slow and abusive clients (`hookcast serve`, api/connections.py): a request's headers must
    # arrive within header_timeout of its first byte (of the connection's opening, for the
    # first), its body within body_timeout after them; at most max_connections open at once
    # (lowered at start to what the open files limit leaves), beyond that a 503 and close.
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_connections: int = Field(default=4096, ge=1)

    # ErrorsEmail (§6)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "hookcast@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # The waits before each retry of a mail after a temporary SMTP failure (a dead server, a
    # 4xx answer); the last one repeats until the mail is `mail_give_up_after` seconds old.
    # Empty: a temporary failure is not retried.
    mail_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [10.0, 30.0, 60.0, 120.0, 300.0, 900.0], max_length=100
    )
    mail_give_up_after: float = Field(default=24 * 3600.0, ge=0)

    @field_validator("allow_targets", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        return [ipaddress.ip_network(v, strict=False) for v in _split(value)]

    @field_validator("retry_delays", "mail_retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        delays = [float(v) for v in _split(value)]
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must not be negative")
        return delays

    @field_validator("mail_retry_delays")
    @classmethod
    def _repeating_delay(cls, value: list[float]) -> list[float]:
        if value and value[-1] <= 0:  # it repeats: 0 would retry in a tight loop
            raise ValueError("the last mail retry delay repeats and must be above 0")
        return value

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _parse_nameservers(cls, value: Any) -> Any:
        return [parse_nameserver(v) if isinstance(v, str) else v for v in _split(value) or []]

    @model_validator(mode="after")
    def _check_ttls(self) -> Settings:
        if self.dns_max_ttl < self.dns_min_ttl:
            raise ValueError("HOOKCAST_DNS_MAX_TTL must not be below HOOKCAST_DNS_MIN_TTL")
        return self

    @property
    def attempts_per_cycle(self) -> int:
        """A cycle is the first attempt plus one attempt after each retry delay."""
        return len(self.retry_delays) + 1

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments beat the environment, which beats the optional TOML file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml := os.environ.get("HOOKCAST_CONFIG"):
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)
