"""Key rights (§7): which role may do what. Pure policy, no I/O.

A key carries one Role; a route asks for one Right; `allows` is the whole rule. Reading
Secrets is a right of its own, so a `read` key answers the same routes as `manage` with
the Secrets left out (see `api.deps.webhook_out`).
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    admin = "admin"  # everything, including key management
    manage = "manage"  # webhooks and scripts, with their Secrets; no keys, no signals
    signal = "signal"  # only the signal routes: an application that emits events
    read = "read"  # the read routes, without Secrets


class Right(enum.StrEnum):
    read = "read"  # GET a webhook, script, list, usage, deliveries, notifications
    manage = "manage"  # create, change, delete, test, redeliver; compile and run scripts
    signal = "signal"  # POST /Webhook/{event}/{pk}, Agents SignalEvent
    secrets = "secrets"  # see Secret, StandardWebhooksSecret and Headers values
    keys = "keys"  # manage API keys (no route yet; the CLI needs database access)


DEFAULT_ROLE = Role.admin  # what keys had before roles existed, so scripts keep working

RIGHTS: dict[Role, frozenset[Right]] = {
    Role.admin: frozenset(Right),
    Role.manage: frozenset({Right.read, Right.manage, Right.secrets}),
    Role.signal: frozenset({Right.signal}),
    Role.read: frozenset({Right.read}),
}


def allows(role: Role, right: Right) -> bool:
    return right in RIGHTS[role]
