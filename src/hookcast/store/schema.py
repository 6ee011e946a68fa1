"""The database schema (SQLAlchemy Core). Alembic migrations in `migrations/` create it.

Times are stored as UTC epoch seconds (float): the queue compares them on every claim,
and numbers compare the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Auto-increment ids that are BIGINT on PostgreSQL but INTEGER (rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer, "sqlite")
# The ids clients see (WebhookId, a script's id, a key's id) are never handed out twice:
# those tables take SQLite's AUTOINCREMENT (sqlite_autoincrement) instead of max(rowid) + 1;
# PostgreSQL's sequences never reuse one.

associates = Table(
    "associates",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("associate_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("full_name", String(255), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("associate_id", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("prefix", String(16), nullable=False),  # shown in listings; the key itself is not kept
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("role", String(16), nullable=False, server_default="admin"),  # rights.Role
    sqlite_autoincrement=True,
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("events", Text, nullable=False),  # JSON array, order kept
    Column("target_url", String(2048), nullable=False),
    Column("secret", String(256)),
    Column("state", SmallInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("headers", Text),  # JSON object or NULL
    Column("properties", Text),  # JSON object or NULL
    # SuperOffice 12's notification fields (§1, §6); ErrorsEmail is the first of ErrorEmails.
    Column("error_emails", Text, nullable=False, server_default="[]"),  # JSON array
    Column("error_associates", Text, nullable=False, server_default="[]"),  # [{Id, Name}]
    Column("description", Text),
    Column("notify_via", SmallInteger, nullable=False, server_default="0"),
    Column("notify_when", SmallInteger, nullable=False, server_default="2"),
    # 1 from a failed attempt until the next success: FirstFailure is told once per error
    # run (an Active again after TooManyErrors resets consecutive_errors, not this).
    Column("failed_since_success", SmallInteger, nullable=False, server_default="0"),
    Column("registered_at", Float, nullable=False),
    Column("registered_associate_id", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_associate_id", Integer, nullable=False),
    # Usage counters (§6), updated with every batch of outcomes.
    Column("total_calls", BigInteger, nullable=False, server_default="0"),
    Column("total_errors", BigInteger, nullable=False, server_default="0"),
    Column("consecutive_errors", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("last_error_at", Float),
    Column("last_success_at", Float),
    Column("last_event_id", String(36)),
    # hookcast's delivery options (model.DeliveryOptions), each off by default.
    Column("ordering", SmallInteger, nullable=False, server_default="0"),  # model.Ordering
    Column("coalesce_ms", Integer, nullable=False, server_default="0"),
    Column("auto_recover", SmallInteger, nullable=False, server_default="0"),
    Column("max_per_second", Float),  # NULL: unlimited
    Column("max_in_flight", Integer),  # NULL: unlimited
    # AutoRecover's probing (store/recovery.py): when the next probe is due (NULL: not being
    # probed; a claimed probe's lease end while one runs), when the webhook was disabled,
    # and the probes made since.
    Column("recover_at", Float),
    Column("recover_since", Float),
    Column("recover_probes", Integer, nullable=False, server_default="0"),
    # The webhooks being probed, by due time: all the prober reads when none is.
    Index(
        "ix_webhooks_recover",
        "recover_at",
        sqlite_where=text("recover_at IS NOT NULL"),
        postgresql_where=text("recover_at IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

# The matching index (§6): (tenant, event) -> webhook ids, never a scan of all webhooks.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("event", String(128), primary_key=True),
    Column("webhook_id", Id, ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("primary_key", BigInteger, nullable=False),
    Column("associate_id", Integer, nullable=False),
    Column("occurred_at", String(32), nullable=False),  # the payload Timestamp text
    Column("changes", Text),  # JSON array of field names
    Column("change_values", Text),  # JSON object: new values, for script hooks
    Column("row_values", Text),  # JSON object: ids of a deleted row
    Column("field_values", Text),  # JSON object
    Column("created_at", Float, nullable=False),
    # The W3C traceparent of the signal, so attempts made later, in any process, join its
    # trace (hookcast.tracing); NULL unless tracing or trace propagation is on.
    Column("traceparent", String(128)),
)

# Events an application wrote inside its own transaction (hookcast.sqlalchemy, the Django
# app), as `events` holds them; a dispatcher moves committed rows into events and deliveries
# (dispatch/outbox_drain.py), so the application's transaction needs no matching.
event_outbox = Table(
    "event_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("primary_key", BigInteger, nullable=False),
    Column("associate_id", Integer, nullable=False),
    Column("occurred_at", String(32), nullable=False),
    Column("changes", Text),
    Column("change_values", Text),
    Column("row_values", Text),
    Column("field_values", Text),
    Column("created_at", Float, nullable=False),
)

# One row per (event, webhook). status: 0 pending, 1 delivered, 2 given up.
# Idempotency keys of signals (REST `Idempotency-Key`, `signal_many(idempotency_key=)`):
# a request retried with the same key answers what the first one stored and signals nothing.
# The fingerprint tells a retry from a different request that reused the key.
signal_keys = Table(
    "signal_keys",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("event_ids", Text, nullable=False),  # JSON array, in the request's order
    Column("created_at", Float, nullable=False),
    Index("ix_signal_keys_created", "created_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", Id, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("uid", String(36), nullable=False),  # webhook-id header: stable across attempts
    Column("status", SmallInteger, nullable=False, server_default="0"),
    Column("cycle", SmallInteger, nullable=False, server_default="0"),
    Column("attempt", SmallInteger, nullable=False, server_default="0"),
    Column("event_uuid", String(36), nullable=False),  # EventId of the current cycle
    # When the next attempt is due. Claiming moves it to the lease's end, so a claim that a
    # crashed process never finished becomes due again by itself (at-least-once).
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    # "contact:994863" (queue.record_of) when its webhook orders or coalesces per record
    # (DeliveryOptions.keyed); NULL otherwise.
    Column("record", String(200)),
    # 1: an AutoRecover probe (the test event, store/recovery.py), logged like a delivery
    # but never queued again by a redelivery.
    Column("probe", SmallInteger, nullable=False, server_default="0"),
    # A coalescing delivery's burst window: open until then (and due then) while it was not
    # claimed; NULL once closed, or when it does not coalesce (store/bursts.py).
    Column("window_until", Float),
    # The ids of the signals (events) merged into it, JSON array in signal order; NULL when
    # it carries one signal.
    Column("merged_events", Text),
    Index(
        "ix_deliveries_due", "status", "next_at", "webhook_id"
    ),  # covers claims that skip busy webhooks
    # A webhook's rows by state and due time: its pending list, parking its due backlog.
    Index("ix_deliveries_webhook", "webhook_id", "status", "next_at"),
    Index("ix_deliveries_event", "event_id"),
    # A record's pending deliveries: whether an earlier one holds a PerRecord delivery back
    # (the claim statement) is one probe here, whatever the record's history.
    Index(
        "ix_deliveries_record_pending",
        "webhook_id",
        "record",
        "id",
        sqlite_where=text("record IS NOT NULL AND status = 0"),
        postgresql_where=text("record IS NOT NULL AND status = 0"),
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", Id, nullable=False),
    Column("event_uuid", String(36), nullable=False),
    Column("cycle", SmallInteger, nullable=False),
    Column("attempt", SmallInteger, nullable=False),
    Column("at", Float, nullable=False),
    Column("ok", SmallInteger, nullable=False),
    Column("http_status", SmallInteger),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("output", Text),  # crmscript output
    # An HTTP attempt's request and answer as shown to people, bounded (net/excerpts.py).
    Column("request_excerpt", Text),
    Column("response_excerpt", Text),
    Index("ix_attempts_webhook", "webhook_id", "id"),
    # A delivery's attempts: its latest in search results, its log in the console, pruning.
    Index("ix_attempts_delivery", "delivery_id", "id"),
)

# ErrorsEmail outbox: written in the transaction that disables a webhook, sent afterwards,
# so a mail is neither lost in a crash nor able to hold up deliveries.
mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("webhook_id", Id, nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    # 0 queued, 1 sent, 2 failed (refused, or out of retries), 3 being sent
    Column("status", SmallInteger, nullable=False, server_default="0"),
    Column("tries", SmallInteger, nullable=False, server_default="0"),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("error", Text),
    Index("ix_mail_outbox_due", "status", "next_at"),
)

# InApp notifications (§6): one row per ErrorAssociates entry of a webhook at FirstFailure
# or Disabling, listed newest first. Kept when the webhook is deleted: it is history.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("associate_id", Integer, nullable=False),
    Column("associate_name", String(255), nullable=False),
    Column("webhook_id", Id, nullable=False),
    Column("webhook_name", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # FirstFailure | Disabling
    Column("message", Text, nullable=False),
    Column("event_id", String(36)),
    Column("created_at", Float, nullable=False),
    Index("ix_notifications_tenant", "tenant", "id"),
    sqlite_autoincrement=True,
)

# CRMScript scripts (crmscript.md §1, §7.4): a tenant's scripts, found by IncludeId for
# `#include` and for the TargetUrl of `crmscript` webhooks.
scripts = Table(
    "scripts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("uid", String(36), nullable=False),  # UniqueIdentifier
    Column("name", String(255), nullable=False),
    Column("description", Text),
    Column("include_id", String(255), nullable=False),
    Column("source", Text, nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("registered_associate_id", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_associate_id", Integer, nullable=False),
    Index("uq_scripts_tenant_include_id", "tenant", "include_id", unique=True),
    Index("uq_scripts_tenant_uid", "tenant", "uid", unique=True),
    sqlite_autoincrement=True,
)

# Per-tenant settings; for now the hosts that scripts may reach over HTTP (crmscript.md §11.9).
tenant_settings = Table(
    "tenant_settings",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("script_http_hosts", Text, nullable=False, server_default="[]"),  # JSON array
    Column("updated_at", Float, nullable=False),
    Column("updated_associate_id", Integer, nullable=False),
)

# One row per running dispatcher (serve or worker), refreshed as its heartbeat.
workers = Table(
    "workers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # serve | worker | embedded
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("in_flight", Integer, nullable=False, server_default="0"),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
)
