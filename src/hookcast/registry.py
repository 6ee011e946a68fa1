"""The webhook registry: create, read, replace, patch, delete and test webhooks for one
caller. The REST routes, the RPC agents and the CLI all go through here; nothing in this
module knows about HTTP requests."""

from __future__ import annotations

import builtins
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from . import patching
from .api.schemas import WebhookIn, WebhookOut, api_name, api_names, field_values, wire_values
from .dispatch.plugins import plugin_names
from .dispatch.plugins.crmscript import ScriptRunner
from .dispatch.recovery import RecoverySchedule, settle
from .dispatch.transitions import state_changed
from .errors import Conflict, NotFound, ValidationError
from .model import (
    CRMSCRIPT_TYPE,
    NO_OPTIONS,
    WEBHOOK_TYPE,
    DeliveryOptions,
    NotifyVia,
    NotifyWhen,
    Principal,
    State,
    Usage,
    Webhook,
)
from .net.sender import HttpSender
from .rules import check_target
from .scripts import check_script_target
from .settings import Settings
from .store import queries, queue
from .store.database import Database
from .validation import parse_body
from .verification import TestResult, test_target, verify_target

# A carrier's fields less the id, which the server assigns: what a client writes. Their wire
# names are the JSON Patch paths and Merge Patch keys; the id may not be patched.
SERVER_SET = ("webhook_id",)
WRITABLE = api_names(WebhookIn, exclude=SERVER_SET)
READ_ONLY = api_names(WebhookIn, only=SERVER_SET)
OBSOLETE = ("errors_email",)  # written through to ErrorEmails, not stored itself
OPTIONS = tuple(f.name for f in dataclasses.fields(DeliveryOptions))


def _fields(carrier: WebhookIn, old: Webhook | None) -> dict[str, Any]:
    """The stored fields of a carrier, by their domain names (name, target_url, ...), with
    the notification fields and delivery options settled against the stored webhook (`old`,
    None on create)."""
    fields = field_values(carrier, exclude=(*SERVER_SET, *OBSOLETE, *OPTIONS))
    fields.update(notification_fields(carrier, old))
    fields.update(option_fields(carrier, old))
    return fields


def option_fields(carrier: WebhookIn, old: Webhook | None) -> dict[str, Any]:
    """hookcast's delivery options: null is off; absent keeps the stored value, because
    SuperOffice's clients replace a webhook (PUT, SaveWebhook) with a carrier that does not
    know them, and that must not turn them off."""
    given = carrier.model_fields_set
    stored = old.options if old else NO_OPTIONS
    values = {}
    for name in OPTIONS:
        value = getattr(carrier, name) if name in given else getattr(stored, name)
        values[name] = getattr(NO_OPTIONS, name) if value is None else value
    return values


def notification_fields(carrier: WebhookIn, old: Webhook | None) -> dict[str, Any]:
    """§1's rules for the SuperOffice 12 fields, which depend on what was stored, for
    POST, PUT, SaveWebhook and PATCH alike:

    - the obsolete ErrorsEmail, written (changed from the stored first address), sets
      ErrorEmails to that one address, unless ErrorEmails changed too; a null ErrorsEmail
      clears them only when ErrorEmails is not sent (clients send both, the old one null);
    - NotifyVia null or absent: Email when there is an address, else None; a webhook that
      gets its first address with NotifyVia left at None gets Email too;
    - NotifyWhen null or absent: Disabling."""
    given = carrier.model_fields_set
    stored = old.error_emails if old else []
    emails = list(carrier.error_emails or [])
    alias = carrier.errors_email
    written = "errors_email" in given and alias != (old.errors_email if old else None)
    if written and ("error_emails" not in given or (emails == stored and alias is not None)):
        emails = [alias] if alias else []
    via = carrier.notify_via
    if via is None or (old and not stored and emails and via == old.notify_via == NotifyVia.NONE):
        via = NotifyVia.Email if emails else NotifyVia.NONE
    return {
        "error_emails": emails,
        "error_associates": [{"Id": a.id, "Name": a.name} for a in carrier.error_associates or []],
        "notify_via": via,
        "notify_when": NotifyWhen.Disabling if carrier.notify_when is None else carrier.notify_when,
    }


def _check_unmodified(hook: Webhook, if_unmodified_since: str | None) -> None:
    patching.check_unmodified(hook.updated, if_unmodified_since, f"Webhook {hook.id}")


def apply_patch(hook: Webhook, body: Any, media_type: str) -> dict[str, Any]:
    """The webhook's carrier with a JSON Patch (array) or Merge Patch (object) applied."""
    document = wire_values(WebhookOut.of(hook, secrets=True), WRITABLE)
    return patching.apply_patch(
        document, body, media_type, writable=WRITABLE, read_only=READ_ONLY, what="webhook"
    )


@dataclass
class Registry:
    db: Database
    settings: Settings
    sender: HttpSender
    wake: Callable[[], None] = lambda: None  # state events were committed: deliver them
    # A webhook stopped or deleted: this process's dispatcher drops it at once (issue 12).
    halt: Callable[[int], None] = lambda _: None
    # Compiles a crmscript webhook's script in the sandbox; None: a runner for each check
    scripts: ScriptRunner | None = None

    async def get(self, who: Principal, webhook_id: int) -> Webhook:
        hook = await self.db.read(queries.get_webhook, who.tenant, webhook_id)
        if hook is None:
            raise NotFound(f"There is no webhook {webhook_id}.")
        return hook

    async def list(
        self,
        who: Principal,
        *,
        name: str | None = None,
        event: str | None = None,
        state: str | int | None = None,
    ) -> list[Webhook]:
        states = None
        if state not in (None, ""):
            try:
                parsed = State.parse(state)
            except ValueError as exc:
                raise ValidationError(f"statusFilter: {exc}") from None
            states = None if parsed is State.Unknown else [parsed]
        return await self.db.read(
            lambda conn: queries.list_webhooks(
                conn, who.tenant, name=name, event=event, states=states
            )
        )

    async def create(self, who: Principal, carrier: WebhookIn) -> Webhook:
        check_target(carrier.type, carrier.target_url, plugin_names())
        await self._verify(who, carrier)
        fields = _fields(carrier, None)

        def write(conn: Connection) -> int:
            now = time.time()
            webhook_id = queries.insert_webhook(conn, who.tenant, who.associate_id, now, fields)
            state_changed(conn, webhook_id, carrier.state, now)
            self._settle_recovery(conn, webhook_id, None, carrier, fields, now)
            return webhook_id

        webhook_id = await self.db.run(write)
        self.wake()
        return await self.get(who, webhook_id)

    async def replace(
        self,
        who: Principal,
        webhook_id: int,
        carrier: WebhookIn,
        if_unmodified_since: str | None = None,
    ) -> Webhook:
        old = await self.get(who, webhook_id)
        _check_unmodified(old, if_unmodified_since)
        check_target(carrier.type, carrier.target_url, plugin_names())
        becomes_active = carrier.state is State.Active and old.state is not State.Active
        if becomes_active or (carrier.target_url, carrier.secret, carrier.type) != (
            old.target_url,
            old.secret,
            old.type,
        ):
            await self._verify(who, carrier)
        old_updated = old.updated.timestamp()

        def write(conn: Connection) -> Webhook:
            current = queries.get_webhook(conn, who.tenant, webhook_id)
            if current is None:  # deleted meanwhile
                raise NotFound(f"There is no webhook {webhook_id}.")
            now = patching.next_update_time(current.updated, old_updated, f"webhook {webhook_id}")
            fields = _fields(carrier, current)
            queries.update_webhook(
                conn,
                who.tenant,
                webhook_id,
                who.associate_id,
                now,
                fields,
                reset_errors=becomes_active,
            )
            if carrier.state != current.state:
                state_changed(conn, webhook_id, carrier.state, now)
            self._settle_recovery(conn, webhook_id, current, carrier, fields, now)
            updated = queries.get_webhook(conn, who.tenant, webhook_id)
            assert updated is not None  # written in this transaction
            return updated

        hook = await self.db.run(write)
        if hook.state is not State.Active:
            self.halt(webhook_id)
        self.wake()
        return hook

    async def patch(
        self,
        who: Principal,
        webhook_id: int,
        body: Any,
        media_type: str,
        if_unmodified_since: str | None = None,
    ) -> Webhook:
        old = await self.get(who, webhook_id)
        _check_unmodified(old, if_unmodified_since)
        document = apply_patch(old, body, media_type)
        # The document held every option; one a patch removed (Merge Patch null, a JSON
        # Patch remove) is turned off, not kept as a PUT without it would keep it.
        document.update({api_name(n): None for n in OPTIONS if api_name(n) not in document})
        carrier = parse_body(WebhookIn, document, "a webhook")
        return await self.replace(who, webhook_id, carrier)

    async def delete(
        self, who: Principal, webhook_id: int, if_unmodified_since: str | None = None
    ) -> None:
        if if_unmodified_since:
            _check_unmodified(await self.get(who, webhook_id), if_unmodified_since)
        if not await self.db.run(queries.delete_webhook, who.tenant, webhook_id):
            raise NotFound(f"There is no webhook {webhook_id}.")
        self.halt(webhook_id)

    async def usage(self, who: Principal, webhook_id: int) -> Usage:
        usage = await self.db.read(queries.get_usage, who.tenant, webhook_id)
        if usage is None:
            raise NotFound(f"There is no webhook {webhook_id}.")
        return usage

    async def redeliver(self, who: Principal, webhook_id: int) -> int:
        """Queue the given-up deliveries again (§6); the webhook must be Active."""
        hook = await self.get(who, webhook_id)
        if hook.state is not State.Active:
            raise Conflict(
                f"Webhook {webhook_id} is {hook.state.name}; set State to Active first, "
                "then redeliver."
            )
        queued = await self.db.run(queue.redeliver, webhook_id, time.time())
        self.wake()
        return queued

    async def deliveries(
        self, who: Principal, webhook_id: int, limit: int, offset: int
    ) -> tuple[int, builtins.list[dict[str, Any]]]:
        await self.get(who, webhook_id)

        def read(conn):  # type: ignore[no-untyped-def]
            return (
                queue.count_attempts(conn, webhook_id),
                queue.list_attempts(conn, webhook_id, limit, offset),
            )

        return await self.db.read(read)

    async def notifications(
        self, who: Principal, associate_id: int | None, limit: int, offset: int
    ) -> tuple[int, builtins.list[dict[str, Any]]]:
        """The caller's tenant's InApp notifications (§6), newest first."""
        return await self.db.read(
            queries.list_notifications, who.tenant, associate_id, limit, offset
        )

    async def last_error(self, who: Principal, webhook_id: int) -> str | None:
        return (await self.usage(who, webhook_id)).last_error

    async def test(self, who: Principal, carrier: WebhookIn) -> TestResult:
        """POST /Webhook/Test: send the test event, store nothing."""
        try:
            check_target(carrier.type, carrier.target_url, plugin_names())
        except ValidationError as exc:
            return TestResult(success=False, message=exc.message)
        if carrier.type == CRMSCRIPT_TYPE:
            try:
                await self._check_script(who, carrier.target_url)
            except ValidationError as exc:
                return TestResult(success=False, message=exc.message)
            return TestResult(success=True, message=f"script {carrier.target_url!r} compiles")
        return await test_target(self.sender, **self._target_args(who, carrier))

    def _settle_recovery(
        self,
        conn: Connection,
        webhook_id: int,
        old: Webhook | None,
        carrier: WebhookIn,
        fields: dict[str, Any],
        now: float,
    ) -> None:
        """AutoRecover after an API write (recovery.settle): a State set by the API, or
        AutoRecover off, ends probing; AutoRecover turned on in TooManyErrors starts it."""
        settle(
            conn,
            webhook_id,
            state_set=old is not None and carrier.state != old.state,
            auto_recover_before=old.options.auto_recover if old else False,
            auto_recover=bool(fields["auto_recover"]) and carrier.type == WEBHOOK_TYPE,
            state=carrier.state,
            schedule=RecoverySchedule.from_settings(self.settings),
            now=now,
        )

    async def _verify(self, who: Principal, carrier: WebhookIn) -> None:
        """§5: a Stopped webhook needs only a well-formed URL; an Active one must answer."""
        if carrier.type == CRMSCRIPT_TYPE:
            await self._check_script(who, carrier.target_url)
        elif carrier.state is State.Active:
            await verify_target(self.sender, **self._target_args(who, carrier))

    async def _check_script(self, who: Principal, include_id: str) -> None:
        if self.scripts is not None:
            await check_script_target(self.db, who.tenant, include_id, self.scripts)
            return
        runner = ScriptRunner(self.settings, None)
        try:
            await check_script_target(self.db, who.tenant, include_id, runner)
        finally:
            await runner.aclose()

    def _target_args(self, who: Principal, carrier: WebhookIn) -> dict[str, Any]:
        return {
            "url": carrier.target_url,
            "secret": carrier.secret,
            "name": carrier.name,
            "headers": carrier.headers,
            "properties": carrier.properties,
            "tenant": who.tenant,
            "associate_id": who.associate_id,
            "settings": self.settings,
        }
