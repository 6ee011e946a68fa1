"""The request and response shapes of the contract (§1, §2, §8, crmscript.md §1).

Fields are named in snake_case, like the domain types they carry; their PascalCase wire
names come from one alias generator (`api_name`), so the JSON names, the OpenAPI schema,
the `Field` of a 400's Details and the JSON Patch paths all derive from these classes.
A request shape accepts only the wire names (`TargetUrl`, never `target_url`); a response
shape may also be built from the field names.

The rules the fields follow are plain functions in `hookcast.rules`, called here so the
registry, the script store and the CLI share them. Importing this module loads pydantic but
neither FastAPI nor the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from functools import cache, partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from .. import rules
from ..model import (
    DEFAULT_EVENTS,
    EVENT_NAME,
    MAX_ASSOCIATE_ID,
    MAX_ID,
    MAX_PRIMARY_KEY,
    WEBHOOK_TYPE,
    NotifyVia,
    NotifyWhen,
    Ordering,
    State,
    Webhook,
    format_date,
)
from ..payload import stored_standard_webhooks_secret

if TYPE_CHECKING:
    from ..crmscript import Diagnostic
    from ..store.scripts import StoredScript

# ----- names -------------------------------------------------------------------------------


def api_name(field: str) -> str:
    """The wire name of a field: `target_url` -> `TargetUrl`, `errors_email` -> `ErrorsEmail`.

    A field whose wire name does not follow the rule gives it with `Field(alias=...)`
    (`_Links`); PatchOperation, whose wire names are RFC 6902's, does not use it."""
    return to_pascal(field)


def api_names(
    shape: type[BaseModel], *, only: Collection[str] | None = None, exclude: Collection[str] = ()
) -> tuple[str, ...]:
    """The wire names of a shape's fields, in field order (`only` and `exclude` take field
    names). The JSON Patch paths and Merge Patch keys of a resource are made of these."""
    return tuple(
        info.alias or name
        for name, info in shape.model_fields.items()
        if (only is None or name in only) and name not in exclude
    )


def field_values(shape: BaseModel, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """A shape's values by field name (as the domain and the store name them), unconverted."""
    return {name: getattr(shape, name) for name in type(shape).model_fields if name not in exclude}


def wire_values(shape: BaseModel, names: Collection[str]) -> dict[str, Any]:
    """A shape as it goes on the wire, keeping only the given wire names."""
    return {k: v for k, v in shape.model_dump(by_alias=True).items() if k in names}


class ApiIn(BaseModel):
    """Base of the request shapes: PascalCase wire names, matched in any case, as
    SuperOffice's ASP.NET service binds them (`targetUrl`, `TARGETURL`; §2). Only the
    shape's own names are matched so: the keys of Headers or Properties are left alone.

    Build one from a body with `model_validate` (what FastAPI and `validation.parse_body`
    do); keyword arguments are wire names too, which type checkers do not know."""

    model_config = ConfigDict(alias_generator=api_name)

    @model_validator(mode="before")
    @classmethod
    def _names_in_any_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = _wire_names(cls)
        # As in ASP.NET, when two keys name one field the later one wins.
        return {names.get(str(key).lower(), key): value for key, value in data.items()}


@cache
def _wire_names(shape: type[BaseModel]) -> dict[str, str]:
    """A shape's wire names by their lower-case spelling."""
    return {name.lower(): name for name in api_names(shape)}


class ApiOut(BaseModel):
    """Base of the response shapes: PascalCase wire names; built from field names too."""

    model_config = ConfigDict(alias_generator=api_name, validate_by_name=True)


MIN_DATE = "0001-01-01T00:00:00"
STATE_NAMES = [state.name for state in State]  # Unknown, Active, Stopped, TooManyErrors

# ----- webhooks: input ---------------------------------------------------------------------

# The schema states the rules too (for OpenAPI clients); the validator gives the clear message.
EventName = Annotated[
    StrictStr,
    WithJsonSchema(
        {"type": "string", "pattern": EVENT_NAME.pattern, "maxLength": rules.MAX_EVENT_NAME}
    ),
]


class AssociateItem(ApiIn):
    """An entry of ErrorAssociates: SuperOffice's MDOListItem, of which Id and Name count."""

    model_config = ConfigDict(extra="ignore")
    id: StrictInt = Field(ge=1, le=MAX_ASSOCIATE_ID)
    name: StrictStr = Field(default="", max_length=255)


class WebhookIn(ApiIn):
    """The webhook carrier as a client sends it (POST, PUT, SaveWebhook, Test)."""

    model_config = ConfigDict(extra="ignore")

    webhook_id: StrictInt = Field(default=0, ge=0, le=MAX_ID)
    name: StrictStr = Field(min_length=1, max_length=255)
    events: list[EventName] = Field(min_length=1, max_length=100)
    target_url: StrictStr = Field(max_length=2048)
    secret: StrictStr | None = Field(default=None, max_length=256)
    state: Annotated[
        State,
        BeforeValidator(rules.parse_state),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "enum": ["Active", "Stopped", "TooManyErrors"]},
                    {"type": "integer", "enum": [1, 2, 3]},
                ]
            }
        ),
    ] = State.Active
    type: Annotated[StrictStr, BeforeValidator(rules.normalize_type)] = WEBHOOK_TYPE
    headers: dict[str, StrictStr] | None = None
    properties: dict[str, Any] | None = None
    # The SuperOffice 12 fields take null as "none" / "the default", as the default carrier
    # shows them; `registry.notification_fields` settles them against what was stored.
    errors_email: StrictStr | None = Field(
        default=None,
        description="Obsolete (SuperOffice 12): writing it sets ErrorEmails to this address.",
    )
    error_emails: list[StrictStr] | None = Field(default=None, max_length=100)
    error_associates: list[AssociateItem] | None = Field(
        default=None, max_length=rules.MAX_ERROR_ASSOCIATES
    )
    description: StrictStr | None = Field(default=None, max_length=rules.MAX_WEBHOOK_DESCRIPTION)
    notify_via: Annotated[
        NotifyVia | None,
        BeforeValidator(partial(rules.parse_flags, NotifyVia)),
        WithJsonSchema(rules.flags_schema(NotifyVia)),
    ] = Field(default=None, description="null: Email when ErrorEmails has an address, else None")
    notify_when: Annotated[
        NotifyWhen | None,
        BeforeValidator(partial(rules.parse_flags, NotifyWhen)),
        WithJsonSchema(rules.flags_schema(NotifyWhen)),
    ] = Field(default=None, description="null: Disabling")
    # hookcast's delivery options (docs/delivery-options.md), each off when null. Absent from
    # a PUT or SaveWebhook they keep their stored values: SuperOffice's clients do not send them.
    ordering: Annotated[
        Ordering | None,
        BeforeValidator(rules.parse_ordering),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "enum": ["None", "PerRecord"]},
                    {"type": "integer", "enum": [0, 1]},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(
        default=None,
        description="hookcast: PerRecord attempts the deliveries of one record in signal order",
    )
    coalesce_ms: StrictInt | None = Field(
        default=None,
        ge=0,
        le=rules.MAX_COALESCE_MS,
        description="hookcast: signals of one record within this many ms become one delivery; "
        "0 or null: off",
    )
    auto_recover: StrictBool | None = Field(
        default=None,
        description="hookcast: probe the webhook in TooManyErrors and set it Active again",
    )
    max_per_second: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=rules.MAX_PER_SECOND,
        description="hookcast: at most this many requests a second; null: unlimited",
    )
    max_in_flight: StrictInt | None = Field(
        default=None,
        ge=1,
        le=rules.MAX_IN_FLIGHT,
        description="hookcast: at most this many requests at once; null: unlimited",
    )

    @field_validator("error_emails")
    @classmethod
    def _emails(cls, value: list[str] | None) -> list[str]:
        return rules.check_error_emails(value or [])

    @field_validator("error_associates")
    @classmethod
    def _associates(cls, value: list[AssociateItem] | None) -> list[AssociateItem]:
        once: dict[int, AssociateItem] = {}
        for associate in value or []:
            once.setdefault(associate.id, associate)  # each associate is told once
        return list(once.values())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return rules.check_name(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return rules.check_secret(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return rules.check_events(value)

    @field_validator("state")
    @classmethod
    def _state(cls, value: State) -> State:
        return rules.check_state(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return rules.check_headers(value)

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return rules.check_properties(value)

    @field_validator("errors_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return rules.normalize_email(value)


class AgentsCarrier(WebhookIn):
    """The carrier of Agents SaveWebhook and TestWebhook: bare, or wrapped as
    `{"Webhook": {...}}`, SuperOffice's documented form (§2)."""

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict):
            wrapper = [key for key in data if str(key).lower() == "webhook"]
            if wrapper:
                inner = data[wrapper[-1]]
                if not isinstance(inner, dict):
                    raise ValueError("Webhook must be an object: the webhook carrier.")
                return {**inner}
        return data


class WebhookIdBody(ApiIn):
    model_config = ConfigDict(extra="ignore")
    webhook_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class Filters(ApiIn):
    model_config = ConfigDict(extra="ignore")
    name_filter: str | None = None
    event_filter: str | None = None
    status_filter: StrictStr | StrictInt | None = Field(
        default=None, json_schema_extra={"enum": [*STATE_NAMES, 0, 1, 2, 3, None]}
    )


EVENT_DATA = (
    "Event data (§3): {Changes, Values, FieldValues}, or a flat object of fields (Values of a "
    "*.deleted event, else Changes and FieldValues)."
)


class SignalEventBody(ApiIn):
    model_config = ConfigDict(extra="ignore")
    event_name: StrictStr
    primary_key: StrictInt = Field(ge=0, le=MAX_PRIMARY_KEY)
    data: dict[str, Any] | None = Field(default=None, description=EVENT_DATA)


class SignalsOut(ApiOut):
    """What a batch signal stored: how many events, their ids in the request's order, and
    whether they are an earlier request's, found by its Idempotency-Key (nothing was
    signalled again)."""

    accepted: int
    ids: list[int]
    replayed: bool


class PatchOperation(BaseModel):
    """One RFC 6902 operation; paths are case-insensitive and may omit the leading slash."""

    # RFC 6902 names its members in lower case: no alias generator here.
    model_config = ConfigDict(extra="allow")
    op: Literal["add", "replace", "remove", "test"]
    path: str
    value: Any = None


# ----- webhooks: output --------------------------------------------------------------------


class AssociateItemOut(ApiOut):
    id: int
    name: str


class AssociateOut(ApiOut):
    associate_id: int
    name: str
    full_name: str
    type: str = "Employee"


class WebhookOut(ApiOut):
    """A webhook as returned in lists."""

    webhook_id: int
    name: str | None
    events: list[str]
    target_url: str | None
    secret: str | None
    standard_webhooks_secret: str | None = Field(
        default=None,
        description="Read-only: the Secret in the form the Standard Webhooks libraries "
        "(standardwebhooks, svix) take to verify webhook-signature (§3).",
    )
    state: str
    type: str
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    errors_email: str | None = None
    # null only in the default carrier (§2: "other fields null")
    error_emails: list[str] | None = None
    error_associates: list[AssociateItemOut] | None = None
    description: str | None = None
    notify_via: str | None = None
    notify_when: str | None = None
    ordering: str | None = None
    coalesce_ms: int | None = None
    auto_recover: bool | None = None
    max_per_second: float | None = None
    max_in_flight: int | None = None
    total_calls: int | None = None
    total_errors: int | None = None
    consecutive_errors: int | None = None
    last_error: str | None = None
    registered: str
    registered_associate: AssociateOut | None
    updated: str
    updated_associate: AssociateOut | None

    @classmethod
    def of(cls, hook: Webhook, *, secrets: bool) -> Self:
        """The §1 response shape of a stored webhook; without `secrets`, Secret,
        StandardWebhooksSecret and Headers (whose values may be credentials) are null."""
        return cls.model_validate(_webhook_values(hook, secrets))

    @classmethod
    def default(cls) -> Self:
        """GET /Webhook/default (§2): a pre-filled carrier."""
        return cls(
            webhook_id=0,
            name=None,
            events=list(DEFAULT_EVENTS),
            target_url=None,
            secret=None,
            state=State.Active.name,
            type=WEBHOOK_TYPE,
            headers=None,
            properties=None,
            errors_email=None,
            registered=MIN_DATE,
            registered_associate=None,
            updated=MIN_DATE,
            updated_associate=None,
        )


class Links(ApiOut):
    self: str
    archive: str


class WebhookWithLinks(WebhookOut):
    """A single webhook, with `_Links` (§1)."""

    links: Links = Field(alias="_Links", serialization_alias="_Links")

    @classmethod
    def of_linked(cls, hook: Webhook, links: Links, *, secrets: bool) -> Self:
        return cls.model_validate({**_webhook_values(hook, secrets), "links": links})


_SECRET_FIELDS = ("secret", "standard_webhooks_secret", "headers")


def _webhook_values(hook: Webhook, secrets: bool) -> dict[str, Any]:
    """A stored webhook's values by the field names of WebhookOut."""
    values = _all_webhook_values(hook)
    return values if secrets else {**values, **dict.fromkeys(_SECRET_FIELDS)}


def _all_webhook_values(hook: Webhook) -> dict[str, Any]:
    return {
        "webhook_id": hook.id,
        "name": hook.name,
        "events": hook.events,
        "target_url": hook.target_url,
        "secret": hook.secret,
        "standard_webhooks_secret": (
            stored_standard_webhooks_secret(hook.secret) if hook.secret else None
        ),
        "state": hook.state.name,
        "type": hook.type,
        "headers": hook.headers,
        "properties": hook.properties,
        "errors_email": hook.errors_email,
        "error_emails": hook.error_emails,
        "error_associates": hook.error_associates,
        "description": hook.description,
        "notify_via": rules.flag_names(hook.notify_via),
        "notify_when": rules.flag_names(hook.notify_when),
        "ordering": hook.options.ordering.wire_name,
        "coalesce_ms": hook.options.coalesce_ms,
        "auto_recover": hook.options.auto_recover,
        "max_per_second": hook.options.max_per_second,
        "max_in_flight": hook.options.max_in_flight,
        **(
            {
                "total_calls": hook.usage.total_calls,
                "total_errors": hook.usage.total_errors,
                "consecutive_errors": hook.usage.consecutive_errors,
                "last_error": hook.usage.last_error,
            }
            if hook.usage
            else {}
        ),
        "registered": format_date(hook.registered),
        "registered_associate": hook.registered_associate,
        "updated": format_date(hook.updated),
        "updated_associate": hook.updated_associate,
    }


class TestResponse(ApiOut):
    success: bool
    message: str


class UsageOut(ApiOut):
    total_calls: int
    total_errors: int
    consecutive_errors: int
    last_error: str | None
    last_error_at: str | None
    last_success_at: str | None


DeliveryStatus = Literal["pending", "delivered", "given_up"]  # where a delivery stands now


class DeliveryOut(ApiOut):
    """One attempt of one delivery (newest first)."""

    attempt_id: int
    at: str
    event: str
    primary_key: int
    event_id: str
    delivery_id: str  # the webhook-id header: the same for every attempt of one delivery
    cycle: int
    attempt: int  # X-SuperOffice-Retry of that attempt
    outcome: Literal["success", "failure"]
    status: DeliveryStatus
    http_status: int | None
    latency_ms: float
    error: str | None
    output: str | None


class DeliveriesPage(ApiOut):
    total: int
    limit: int
    offset: int
    items: list[DeliveryOut]


class NotificationOut(ApiOut):
    """One InApp notification (§6): a FirstFailure or Disabling of a webhook, or its
    recovery by AutoRecover (hookcast's addition), for one of its ErrorAssociates."""

    notification_id: int
    associate_id: int
    associate_name: str
    webhook_id: int
    webhook_name: str
    kind: Literal["FirstFailure", "Disabling", "Recovered"]
    message: str
    event_id: str | None
    created: str


class NotificationsPage(ApiOut):
    total: int
    limit: int
    offset: int
    items: list[NotificationOut]


class RedeliverOut(ApiOut):
    queued: int


# ----- CRMScript scripts -------------------------------------------------------------------


class ScriptIn(ApiIn):
    """A script carrier as a client sends it (POST, PUT, and PATCH after patching).
    EjscriptId, dates and associates are set by the server; UniqueIdentifier is taken on
    create when given (to keep a script's identity across instances) and read-only after."""

    model_config = ConfigDict(extra="ignore")

    ejscript_id: StrictInt = Field(default=0, ge=0, le=MAX_ID)
    unique_identifier: uuid.UUID | None = None
    name: StrictStr = Field(min_length=1, max_length=255)
    description: StrictStr | None = Field(default=None, max_length=rules.MAX_DESCRIPTION)
    include_id: StrictStr = Field(
        min_length=1,
        max_length=rules.MAX_INCLUDE_ID,
        pattern=rules.INCLUDE_ID_PATTERN,
        description="Unique per tenant: 1-255 of A-Z a-z 0-9 _ . -; `#include` and the "
        "TargetUrl of crmscript webhooks name it.",
    )
    source: StrictStr = Field(max_length=rules.MAX_SOURCE_CHARS, description="The CRMScript text.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return rules.check_name(value, "Name")


class AllowListIn(ApiIn):
    """The hosts a tenant's scripts may reach over HTTP (exact host names or IP literals)."""

    hosts: list[StrictStr] = Field(max_length=rules.MAX_ALLOWED_HOSTS)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return rules.normalize_hosts(value)


class ScriptOut(ApiOut):
    """A script as returned in lists."""

    ejscript_id: int
    unique_identifier: str | None
    name: str | None
    description: str | None
    include_id: str | None
    source: str
    registered: str
    registered_associate_id: int
    updated: str
    updated_associate_id: int

    @classmethod
    def of(cls, script: StoredScript) -> Self:
        return cls.model_validate(_script_values(script))

    @classmethod
    def default(cls) -> Self:
        """GET /CRMScript/default: an empty script to fill in."""
        return cls(
            ejscript_id=0,
            unique_identifier=None,
            name=None,
            description=None,
            include_id=None,
            source="",
            registered=MIN_DATE,
            registered_associate_id=0,
            updated=MIN_DATE,
            updated_associate_id=0,
        )


class ScriptWithLinks(ScriptOut):
    """A single script, with `_Links`."""

    links: Links = Field(alias="_Links", serialization_alias="_Links")

    @classmethod
    def of_linked(cls, script: StoredScript, links: Links) -> Self:
        return cls.model_validate({**_script_values(script), "links": links})


def _script_values(script: StoredScript) -> dict[str, Any]:
    """A stored script's values by the field names of ScriptOut."""
    return {
        "ejscript_id": script.id,
        "unique_identifier": script.uid,
        "name": script.name,
        "description": script.description,
        "include_id": script.include_id,
        "source": script.source,
        "registered": format_date(script.registered),
        "registered_associate_id": script.registered_associate_id,
        "updated": format_date(script.updated),
        "updated_associate_id": script.updated_associate_id,
    }


class ValidateIn(ApiIn):
    source: StrictStr = Field(
        max_length=rules.MAX_SOURCE_CHARS, description="CRMScript text to check"
    )


class CompileProblemOut(ApiOut):
    line: int
    column: int
    kind: str  # SyntaxError, NameError, TypeError, IncludeError, UnsupportedFeature, ...
    message: str

    @classmethod
    def of(cls, diagnostic: Diagnostic) -> Self:
        return cls.model_validate(diagnostic, from_attributes=True)


class ValidateOut(ApiOut):
    valid: bool
    errors: list[CompileProblemOut]


class ExecuteIn(ApiIn):
    variables: dict[str, StrictStr] | None = Field(
        default=None, description="Variables the script reads with getVariable(name)"
    )


class ExecuteOut(ApiOut):
    output: str
    success: bool
    error: str | None = Field(description="The `ERROR: <Kind>: <message>` line of a failed run")


class AllowListOut(ApiOut):
    hosts: list[str]


# ----- health and errors -------------------------------------------------------------------


class WorkerOut(ApiOut):
    id: str
    kind: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float
    in_flight: int
    attempts: int
    alive: bool


class HealthOut(ApiOut):
    status: str
    database: str
    workers: list[WorkerOut]


class ErrorBody(ApiOut):
    """SuperOffice's REST error shape (§8); `Details` lists per-field problems when there are."""

    error: Literal[True] = True
    error_type: str
    error_message: str
    error_source: str = "hookcast"
    details: list[dict[str, Any]] | None = None
