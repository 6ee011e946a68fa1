"""`hookcast doctor`: check a set-up before (or while) it runs, one line per check with ✓ or
✗ and, for a ✗, what to do. It changes nothing: no database is created or migrated."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import typer

from .common import CliError, DbOption, JsonOption, open_database, settings_for, warn

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store.database import Database

# The clock is wrong when it is before this version was made, or this far from the
# database server's (leases and retry times are compared across processes).
_NOT_BEFORE = 1_767_225_600  # 2026-01-01
CLOCK_SKEW = 2.0
SMTP_TIMEOUT = 5.0
# File descriptors a process needs beyond its connections: the database, logs, the sandbox.
_SPARE_FILES = 64


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail}" + (f" — {self.fix}" if self.fix else "")


def check_ca_bundle(settings: Settings) -> Check:
    from ..guard import make_ssl_context

    if not settings.ca_bundle:
        return Check("CA bundle", True, "the system's trusted CAs (HOOKCAST_CA_BUNDLE unset)")
    try:
        make_ssl_context(settings.ca_bundle)
    except (OSError, ValueError) as exc:
        reason = str(exc.__cause__ or exc).splitlines()[0]
        return Check(
            "CA bundle",
            False,
            f"HOOKCAST_CA_BUNDLE={settings.ca_bundle!r} cannot be read: {reason}",
            "Point HOOKCAST_CA_BUNDLE at a readable PEM file of CA certificates, or unset it "
            "to trust the system's CAs.",
        )
    return Check("CA bundle", True, f"HOOKCAST_CA_BUNDLE={settings.ca_bundle!r} loads")


def _database(settings: Settings) -> tuple[Check, Database | None]:
    from ..settings import mask_url

    try:
        database = open_database(settings)
    except CliError as exc:
        return Check("database", False, exc.message, exc.hint), None
    return Check("database", True, f"{mask_url(settings.database_url)} is migrated"), database


def _first_key(database: Database | None) -> Check:
    from ..store import queries

    if database is None:
        return Check("first key", False, "not checked: no database", "Fix the database first.")
    with database.engine.connect() as conn:
        count = queries.count_keys(conn)
    if count == 0:
        return Check(
            "first key",
            False,
            "no API key exists",
            "Start `hookcast serve` once (it creates one for tenant Default) or run "
            "`hookcast keys create --tenant NAME --associate-id 1`.",
        )
    return Check("first key", True, f"{count} API key(s)")


def _clock(database: Database | None) -> Check:
    from ..store import revision

    now = time.time()
    if now < _NOT_BEFORE:
        return Check(
            "clock",
            False,
            f"the system clock says {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC",
            "Set the clock (enable NTP: timedatectl set-ntp true).",
        )
    server = None
    if database is not None:
        with database.engine.connect() as conn:
            server = revision.server_time(conn)
    if server is None:
        return Check("clock", True, "the system clock is plausible")
    skew = time.time() - server
    if abs(skew) > CLOCK_SKEW:
        return Check(
            "clock",
            False,
            f"this machine's clock is {skew:+.1f} s off the database server's",
            "Synchronise both with NTP: leases and retry times are compared across machines.",
        )
    return Check("clock", True, f"within {abs(skew):.2f} s of the database server's")


def _smtp(settings: Settings) -> Check:
    if not settings.smtp_host:
        return Check("SMTP", True, "HOOKCAST_SMTP_HOST unset: no ErrorsEmail mail is sent")
    import asyncio

    import aiosmtplib

    from ..guard import make_ssl_context

    where = f"{settings.smtp_host}:{settings.smtp_port}"

    async def probe() -> None:
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            start_tls=settings.smtp_starttls,
            tls_context=make_ssl_context(settings.ca_bundle) if settings.smtp_starttls else None,
            username=settings.smtp_user or None,
            password=settings.smtp_password if settings.smtp_user else None,
            timeout=SMTP_TIMEOUT,
        )
        await client.connect()  # EHLO, then STARTTLS and the login, as configured
        await client.quit()

    try:
        asyncio.run(probe())
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if settings.smtp_password:
            reason = reason.replace(settings.smtp_password, "***")
        return Check(
            "SMTP",
            False,
            f"{where} (HOOKCAST_SMTP_HOST, HOOKCAST_SMTP_PORT) is not reachable: {reason}",
            "Check the host, port, HOOKCAST_SMTP_STARTTLS and the login, or unset "
            "HOOKCAST_SMTP_HOST to send no mail.",
        )
    return Check("SMTP", True, f"{where} answers")


def _target_guard(settings: Settings) -> Check:
    import ipaddress

    allowed = settings.allow_targets
    if not allowed:
        return Check("target guard", True, "private, loopback and link-local targets refused")
    metadata = ipaddress.ip_address("169.254.169.254")  # cloud instance metadata
    shown = ",".join(map(str, allowed))
    too_wide = [n for n in allowed if n.version == 4 and metadata in n] + [
        n for n in allowed if n.prefixlen == 0
    ]
    if too_wide:
        return Check(
            "target guard",
            False,
            f"HOOKCAST_ALLOW_TARGETS={shown!r} lets webhooks reach {too_wide[0]} "
            "(all addresses or the cloud metadata service)",
            "List only the networks receivers are on, e.g. 10.1.0.0/16.",
        )
    return Check("target guard", True, f"also allowed: {shown} (HOOKCAST_ALLOW_TARGETS)")


def _open_files(settings: Settings) -> Check:
    try:
        import resource
    except ImportError:  # Windows
        return Check("open files", True, "no RLIMIT_NOFILE on this platform")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # hookcast raises the soft limit to the hard one when it starts (oslimits.py).
    usable = soft if hard == resource.RLIM_INFINITY else hard
    wanted = settings.concurrency + settings.max_connections + _SPARE_FILES
    if usable != resource.RLIM_INFINITY and usable < wanted:
        return Check(
            "open files",
            False,
            f"the hard limit is {usable}, below the {wanted} that HOOKCAST_CONCURRENCY "
            f"({settings.concurrency}) + HOOKCAST_MAX_CONNECTIONS ({settings.max_connections}) "
            "may hold",
            f"Raise it (LimitNOFILE={wanted} in the systemd unit, or ulimit -Hn) or lower them.",
        )
    return Check("open files", True, f"limit {soft}, up to {usable} (needs {wanted})")


def run_checks(report: Callable[[Check], None], db: str | None = None) -> bool:
    """Run every check, `report` each as it ends; True when all passed."""
    from ..settings import config_file

    try:
        settings = settings_for(db)
    except CliError as exc:
        report(Check("settings", False, exc.message, exc.hint))
        return False
    source = config_file()
    report(
        Check(
            "settings",
            True,
            f"parsed ({'HOOKCAST_CONFIG=' + str(source) if source else 'environment only'})",
        )
    )
    results = []
    database_check, database = _database(settings)
    try:
        for check in (
            database_check,
            _first_key(database),
            _clock(database),
            _smtp(settings),
            check_ca_bundle(settings),
            _target_guard(settings),
            _open_files(settings),
        ):
            results.append(check.ok)
            report(check)
    finally:
        if database is not None:
            database.close()
    return all(results)


def doctor(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Check the set-up: settings, database (reachable, migrated), first API key, clock,
    SMTP, CA bundle, target guard and open-files limit; one line each, ✓ or ✗ with the
    fix. Creates and changes nothing. Exit status 1 when a check fails."""
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        if not as_json:
            typer.echo(check.line())

    ok = run_checks(report, db)
    if as_json:
        import orjson

        typer.echo(orjson.dumps([asdict(c) for c in checks], option=orjson.OPT_INDENT_2))
    if not ok:
        if not as_json:
            warn(f"{sum(not c.ok for c in checks)} check(s) failed.")
        raise typer.Exit(1)
