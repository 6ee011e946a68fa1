"""The test event (§4) and the registration checks of a `webhook` target (§5)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yarl

from .errors import TargetRefused, ValidationError, VerificationFailed
from .guard import TargetGuard, check_target_url
from .net.excerpts import request_excerpt
from .net.resolver import ResolveError
from .net.sender import HttpSender
from .outcome import AttemptOutcome
from .payload import build_body, build_headers, format_timestamp
from .settings import Settings

__all__ = ["TestResult", "send_test_event", "test_target", "verify_target"]

TEST_EVENT = "test"
PREFIX = "TargetUrl verification failed: "


@dataclass(frozen=True, slots=True)
class TestResult:
    __test__ = False  # not a pytest test class, despite the name

    success: bool
    message: str


async def _post_test_event(
    sender: HttpSender,
    *,
    url: str,
    secret: str | None,
    name: str,
    headers: dict[str, str] | None,
    properties: dict[str, Any] | None,
    tenant: str,
    associate_id: int,
    settings: Settings,
    event_id: str | None = None,
    delivery_id: str | None = None,
    timestamp: str | None = None,
    log_request: bool = False,
) -> AttemptOutcome:
    """POST the test event once. The ids and the Timestamp are new unless given (a probe
    keeps them in the delivery log); `log_request`: the outcome describes the request too,
    as a delivery's does for the attempt log."""
    event_id = event_id or str(uuid.uuid4())
    body = build_body(
        event_id=event_id,
        timestamp=timestamp or format_timestamp(datetime.now(UTC)),
        changes=[],
        event=TEST_EVENT,
        primary_key=0,
        entity=TEST_EVENT,
        tenant=tenant,
        associate_id=associate_id,
        webhook_name=name,
        properties=properties,
    )
    request_headers = build_headers(
        event_header=TEST_EVENT,
        event_id=event_id,
        retry=0,
        body=body,
        secret=secret,
        delivery_id=delivery_id or str(uuid.uuid4()),  # a test is its own delivery
        timestamp=int(time.time()),
        custom=headers,
        user_agent=settings.user_agent,
        standard_webhooks=settings.standard_webhooks,
        test=True,
    )
    # The webhook's own header values may be credentials: hidden, as in deliveries' log.
    request = request_excerpt(url, request_headers, body, headers or ()) if log_request else ""
    return await sender.send(
        url, body, request_headers, timeout=settings.attempt_timeout, excerpt=True, request=request
    )


# AutoRecover's probe (dispatch/prober.py) is the test event, sent as Webhook/Test sends it.
send_test_event = _post_test_event


async def test_target(
    sender: HttpSender,
    *,
    url: str,
    secret: str | None,
    name: str,
    headers: dict[str, str] | None,
    properties: dict[str, Any] | None,
    tenant: str,
    associate_id: int,
    settings: Settings,
) -> TestResult:
    """Send the test event once (Webhook/Test); the answer or the error is the Message."""
    try:
        check_target_url(url)
    except ValidationError as exc:
        return TestResult(False, exc.message)
    result = await _post_test_event(
        sender,
        url=url,
        secret=secret,
        name=name,
        headers=headers,
        properties=properties,
        tenant=tenant,
        associate_id=associate_id,
        settings=settings,
    )
    return TestResult(result.ok, result.excerpt or result.error or "")


test_target.__test__ = False  # type: ignore[attr-defined]  # pytest must not collect it


async def verify_target(
    sender: HttpSender,
    *,
    url: str,
    secret: str | None,
    name: str,
    headers: dict[str, str] | None,
    properties: dict[str, Any] | None,
    tenant: str,
    associate_id: int,
    settings: Settings,
) -> None:
    """Raise VerificationFailed (TargetRefused for the guard) unless the target passes §5."""
    try:
        check_target_url(url)
    except ValidationError as exc:
        raise VerificationFailed(PREFIX + exc.message) from None
    await _check_addresses(sender, url, TargetGuard(settings.allow_targets))
    result = await _post_test_event(
        sender,
        url=url,
        secret=secret,
        name=name,
        headers=headers,
        properties=properties,
        tenant=tenant,
        associate_id=associate_id,
        settings=settings,
    )
    if result.ok:
        return
    if not result.excerpt or 300 <= (result.status or 0) < 400:
        # No complete answer (network, TLS, timeout), or a redirect: the error says it all.
        raise VerificationFailed(PREFIX + (result.error or "no answer"))
    said = result.answer_body.encode()[:200].decode("utf-8", "replace").strip()
    raise VerificationFailed(
        f"{PREFIX}the target answered {result.error}" + (f": {said}" if said else "")
    )


async def _check_addresses(sender: HttpSender, url: str, guard: TargetGuard) -> None:
    # §5 asks that the host resolve ONLY to allowed addresses; deliveries later merely skip
    # refused ones, but a name with a private address in its answer is not registered. It
    # resolves as deliveries do (the sender's DNS cache and nameservers).
    host = yarl.URL(url).raw_host or ""
    try:
        addresses = await sender.resolve(host)
    except ResolveError as exc:
        raise VerificationFailed(
            f"{PREFIX}the host {host} could not be resolved ({exc.reason})"
        ) from None
    for address in addresses:
        reason = guard.refusal(address)
        if reason is not None:
            raise TargetRefused(f"{PREFIX}{reason}")
