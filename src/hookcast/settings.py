"""Settings from HOOKCAST_* environment variables and an optional TOML file.

Every number the contract calls "a setting" lives here, so tests can shorten delays by
building a `Settings(...)` instead of patching modules.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._version import __version__

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PREFIX = "HOOKCAST_"
# HOOKCAST_* variables that are not settings but are read as well: the TOML file's name, those
# of `hookcast listen` and `serve --dev` (its options' variables) and the test suite's (any
# HOOKCAST_TEST_*). Anything else with the prefix is a warning: most likely a misspelt setting.
OTHER_VARIABLES = {
    "HOOKCAST_CONFIG",
    "HOOKCAST_DEV",
    "HOOKCAST_DEV_CA_DIR",
    "HOOKCAST_URL",
    "HOOKCAST_API_KEY",
    "HOOKCAST_LISTEN_SECRET",
    "HOOKCAST_HYPOTHESIS_PROFILE",
    "HOOKCAST_CHROMIUM",
    "HOOKCAST_UPDATE_SCREENSHOTS",
}
_OTHER_PREFIXES = ("HOOKCAST_TEST_",)
_SECRET_NAME = re.compile(r"password|secret|token|(^|_)key($|_)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class SettingsError(ValueError):
    """A setting that cannot be used, said for a person: `message` names the variable (or
    flag, or TOML key) and its value with secrets masked, `hint` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}\n{hint}" if hint else message)
        self.message = message
        self.hint = hint


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
    # AutoRecover (docs/delivery-options.md): a webhook in TooManyErrors with AutoRecover on
    # is probed with the test event after the first delay, then after twice as long each
    # time up to the cap, for at most `recover_give_up_after` seconds after its disabling.
    recover_first_delay: float = Field(default=60.0, gt=0)
    recover_max_delay: float = Field(default=6 * 3600.0, gt=0)
    recover_give_up_after: float = Field(default=3 * 86400.0, ge=0)
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
        if self.recover_max_delay < self.recover_first_delay:
            raise ValueError(
                "HOOKCAST_RECOVER_MAX_DELAY must not be below HOOKCAST_RECOVER_FIRST_DELAY"
            )
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
        if (toml := config_file()) is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(
                    f"HOOKCAST_CONFIG={str(toml)!r} is not valid TOML: {exc}",
                    "Fix the file, or unset HOOKCAST_CONFIG to use the environment alone.",
                ) from None
        return tuple(sources)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The TOML file HOOKCAST_CONFIG names; a SettingsError when it is named but missing."""
    name = (os.environ if environ is None else environ).get("HOOKCAST_CONFIG")
    if not name:
        return None
    path = Path(name)
    if not path.is_file():
        raise SettingsError(
            f"HOOKCAST_CONFIG={name!r}: no such file",
            "Give the path of an existing TOML file, or unset HOOKCAST_CONFIG.",
        )
    return path


def masked(field: str, value: object) -> str:
    """`value` as it may be shown: secrets as ***, passwords in URLs as ***."""
    if value is None:
        return "(unset)"
    if _SECRET_NAME.search(field):
        return "***"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return mask_url(text)


def mask_url(url: str) -> str:
    """A database or other URL with its password replaced by ***."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _closest(name: str, fields: list[str], prefix: str = "") -> str:
    """ "; did you mean X?" for the field most like `name` (compared without the prefix,
    which every variable shares)."""
    match = difflib.get_close_matches(
        name.lower().removeprefix(prefix.lower()), fields, n=1, cutoff=0.6
    )
    if not match:
        return "; `hookcast settings` lists them all."
    return f"; did you mean {(prefix + match[0]).upper() if prefix else match[0]}?"


def unknown_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for HOOKCAST_* variables and TOML keys that are no setting (a misspelling
    is otherwise silently ignored), each naming the closest valid name."""
    environ = os.environ if environ is None else environ
    fields = list(Settings.model_fields)
    known = {env_name(f) for f in fields} | OTHER_VARIABLES
    warnings = [
        f"warning: {name} is not a hookcast setting{_closest(name, fields, PREFIX)}"
        for name in sorted(environ)
        if name.upper().startswith(PREFIX)
        and name.upper() not in known
        and not name.upper().startswith(_OTHER_PREFIXES)
    ]
    path = config_file(environ)
    if path is not None:
        try:
            keys = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            keys = {}  # loading the settings says what is wrong with the file
        warnings += [
            f"warning: {key!r} in {path} is not a hookcast setting{_closest(key, fields)}"
            for key in keys
            if key.lower() not in fields
        ]
    return warnings


# What a value of each kind looks like, for the second line of an error; the first match wins.
_EXPECTED = {
    "list[float]": "comma-separated numbers of seconds, e.g. 1,4",
    "list[IPNetwork]": "comma-separated networks, e.g. 127.0.0.0/8,10.1.2.3",
    "list[tuple[str, int]]": "comma-separated ip[:port], e.g. 192.0.2.53,[2001:db8::53]:5353",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
}


def _shown_default(field: str) -> str:
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if isinstance(default, bool):
        return str(default).lower()
    if default is None or default == []:
        return "none"
    return masked(field, default)


def _expected(field: str, remove: str) -> str:
    info = Settings.model_fields[field]
    kind = re.sub(r"<class '(\w+)'>", r"\1", str(info.annotation).replace("typing.", ""))
    kind = kind.replace("ipaddress.IPv4Network | ipaddress.IPv6Network", "IPNetwork")
    expected = next((text for key, text in _EXPECTED.items() if key in kind), "a valid value")
    for meta in info.metadata:
        if pattern := getattr(meta, "pattern", None):
            expected = "one of " + pattern.strip("^$()").replace("|", ", ")
    return f"{expected}, or {remove} it for the default ({_shown_default(field)})"


def load_settings(
    overrides: Mapping[str, object] | None = None,
    flags: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from `overrides` (given on a command line, as `flags` name them), the
    environment and the TOML file; a SettingsError that names the first bad value and what
    to do instead of pydantic's report."""
    overrides = dict(overrides or {})
    flags = flags or {}
    environ = os.environ if environ is None else environ
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else ""
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if field not in Settings.model_fields:  # a check across settings: its text names them
            raise SettingsError(f"invalid settings: {reason}") from None
        value = masked(field, error.get("input"))
        if field in overrides:
            where = subject = flags.get(field, field)
            remove = "leave"
        elif (name := env_name(field)) in {k.upper() for k in environ}:
            where = subject = name
            remove = "unset"
        else:
            toml = config_file(environ)
            where, subject = (f"{field} in {toml}", field) if toml else (env_name(field),) * 2
            remove = "remove"
        raise SettingsError(
            f"{where}: {subject}={value!r} is not valid: {reason}"
            if where != subject
            else f"{where}={value!r} is not valid: {reason}",
            f"Set {where} to {_expected(field, remove)}.",
        ) from None
