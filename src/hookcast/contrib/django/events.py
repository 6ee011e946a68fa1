"""Model events: a registered model's saves and deletes become `<entity>.created`,
`.changed` and `.deleted` events in the same transaction as the write itself.

    register(Contact, entity="contact", fields=["name", "email"])

Payloads as SuperOffice sends them: `Changes` lists the changed fields' column names (all
of them on create), `FieldValues` carries the current values of the chosen `fields`, and a
delete's `Values` the deleted row's id columns (its primary key and foreign keys). The row's
write and its event share a transaction: a save outside `transaction.atomic()` is refused
before anything is written (pre_save), rather than sending an event nobody can take back.
Bulk operations (`QuerySet.update`, `bulk_create`, raw SQL) send no signals, so no events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import OutboxError, ValidationError
from .outbox import signal

_SNAPSHOT = "_hookcast_snapshot"


@dataclass(frozen=True)
class Registration:
    entity: str
    fields: tuple[str, ...]  # field names whose values go into FieldValues
    tenant: str | Callable[[Any], str] | None
    using: str | None


_registered: dict[type, Registration] = {}


def _jsonable(value: Any) -> Any:
    from django.core.serializers.json import DjangoJSONEncoder

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _columns(model: type) -> dict[str, str]:
    """attname -> column name of the model's concrete fields."""
    return {f.attname: f.column for f in model._meta.concrete_fields}  # type: ignore[attr-defined]


def register(
    model: type,
    *,
    entity: str | None = None,
    fields: Sequence[str] = (),
    tenant: str | Callable[[Any], str] | None = None,
    using: str | None = None,
) -> None:
    """Send events for `model`'s creates, updates and deletes. `entity`: the event's first
    part (default: the model's name, lower-case); `fields`: the fields sent as FieldValues;
    `tenant`: a tenant or a function of the instance (default: HOOKCAST['TENANT'])."""
    from django.db.models import signals

    meta = getattr(model, "_meta", None)
    if meta is None or meta.abstract:
        raise ValidationError(f"{model!r} is not a concrete Django model.")
    pk = meta.pk
    if pk is None:
        raise ValidationError(f"{meta.label} has no primary key: its events would have none.")
    if pk.get_internal_type() not in (
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "SmallIntegerField",
        "PositiveSmallIntegerField",
    ):
        raise ValidationError(
            f"{meta.label}'s primary key {pk.name} is a {pk.get_internal_type()}; an event's "
            "PrimaryKey is an integer."
        )
    names = {f.name for f in meta.concrete_fields}
    unknown = [f for f in fields if f not in names]
    if unknown:
        raise ValidationError(f"{meta.label} has no fields {unknown}.")
    _registered[model] = Registration(
        entity=entity or meta.model_name, fields=tuple(fields), tenant=tenant, using=using
    )
    uid = f"hookcast-{meta.label}"
    signals.post_init.connect(_remember, sender=model, dispatch_uid=uid)
    signals.pre_save.connect(_need_transaction, sender=model, dispatch_uid=uid)
    signals.post_save.connect(_saved, sender=model, dispatch_uid=uid)
    signals.pre_delete.connect(_need_transaction, sender=model, dispatch_uid=uid)
    signals.post_delete.connect(_deleted, sender=model, dispatch_uid=uid)


def unregister(model: type) -> None:
    from django.db.models import signals

    _registered.pop(model, None)
    uid = f"hookcast-{model._meta.label}"  # type: ignore[attr-defined]
    for sig in (signals.post_init, signals.pre_save, signals.post_save, signals.pre_delete):
        sig.disconnect(sender=model, dispatch_uid=uid)
    signals.post_delete.disconnect(sender=model, dispatch_uid=uid)


def _snapshot(instance: Any) -> dict[str, Any]:
    return {attname: getattr(instance, attname, None) for attname in _columns(type(instance))}


def _remember(sender: type, instance: Any, **_: Any) -> None:
    instance.__dict__[_SNAPSHOT] = _snapshot(instance)


def _need_transaction(sender: type, instance: Any, using: str, **_: Any) -> None:
    from django.db import connections

    if not connections[using].in_atomic_block:
        raise OutboxError(
            f"{sender._meta.label} sends hookcast events, so it is written inside "  # type: ignore[attr-defined]
            "transaction.atomic() (or with ATOMIC_REQUESTS): the row and its event commit "
            "together. Nothing was written."
        )


def _tenant(registration: Registration, instance: Any) -> str | None:
    tenant = registration.tenant
    return tenant(instance) if callable(tenant) else tenant


def _field_values(registration: Registration, instance: Any) -> dict[str, Any] | None:
    if not registration.fields:
        return None
    meta = type(instance)._meta
    values = {}
    for name in registration.fields:
        field = meta.get_field(name)
        values[field.column] = getattr(instance, field.attname)
    return dict(_jsonable(values))


def _saved(sender: type, instance: Any, created: bool, using: str, **_: Any) -> None:
    registration = _registered[sender]
    columns = _columns(sender)
    now = _snapshot(instance)
    before = instance.__dict__.get(_SNAPSHOT, {})
    if created:
        changed = list(columns.values())
    else:
        changed = [columns[a] for a in columns if a not in before or before[a] != now[a]]
        if not changed:
            instance.__dict__[_SNAPSHOT] = now
            return  # saved without a change: nothing happened that a receiver could see
    signal(
        f"{registration.entity}.{'created' if created else 'changed'}",
        instance.pk,
        tenant=_tenant(registration, instance),
        changes=changed,
        field_values=_field_values(registration, instance),
        using=registration.using or using,
    )
    instance.__dict__[_SNAPSHOT] = now


def _deleted(sender: type, instance: Any, using: str, **_: Any) -> None:
    registration = _registered[sender]
    meta = sender._meta  # type: ignore[attr-defined]
    ids = {meta.pk.column: instance.pk}
    for field in meta.concrete_fields:
        if field.is_relation and field.many_to_one:
            ids[field.column] = getattr(instance, field.attname)
    signal(
        f"{registration.entity}.deleted",
        instance.pk,
        tenant=_tenant(registration, instance),
        values=_jsonable(ids),
        using=registration.using or using,
    )


def register_from_settings(models: dict[str, dict[str, Any]]) -> None:
    """HOOKCAST['MODELS']: {"app_label.Model": {"entity": ..., "fields": [...]}}."""
    from django.apps import apps

    for label, options in models.items():
        unknown = set(options) - {"entity", "fields", "tenant", "using"}
        if unknown:
            raise OutboxError(f"HOOKCAST['MODELS'][{label!r}] has unknown keys {sorted(unknown)}.")
        register(apps.get_model(label), **options)
