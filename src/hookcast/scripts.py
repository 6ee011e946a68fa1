"""The CRMScript script store (crmscript.md §1, §7.4, §15): create, read, replace, patch and
delete a tenant's scripts, validate and execute them in the sandbox, and keep the tenant's
HTTP allow-list. The REST routes and the `crmscript` webhook checks go through here;
nothing in this module knows about HTTP requests.

Includes resolve among the same tenant's scripts by IncludeId (exact, case-sensitive). A
script is saved only when it compiles together with the scripts it includes as they are
stored at that moment; a later change to an included script is not re-checked here (a run
reports it like any compile error).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from sqlalchemy.exc import IntegrityError

from .crmscript import Diagnostic, Limits, RunResult, check
from .dispatch.plugins.crmscript import ScriptRunner, diagnostic_text
from .errors import Conflict, NotFound, ValidationError, VerificationFailed
from .model import MAX_ID, MIN_DATE, Principal
from .net.sender import HttpSender
from .patching import apply_patch, check_unmodified, next_update_time
from .settings import Settings
from .store import scripts as store
from .store.database import Database
from .store.scripts import StoredScript
from .validation import parse_body

WRITABLE = ("Name", "Description", "IncludeId", "Source")
READ_ONLY = (
    "EjscriptId",
    "UniqueIdentifier",
    "Registered",
    "RegisteredAssociateId",
    "Updated",
    "UpdatedAssociateId",
)
INCLUDE_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MAX_INCLUDE_ID = 255
MAX_SOURCE_CHARS = 1024 * 1024  # the API body limit (1 MiB) already bounds the bytes
MAX_DESCRIPTION = 4000
MAX_ALLOWED_HOSTS = 100
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def _text_rules(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be blank")
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


class ScriptIn(BaseModel):
    """A script carrier as a client sends it (POST, PUT, and PATCH after patching).
    EjscriptId, dates and associates are set by the server; UniqueIdentifier is taken on
    create when given (to keep a script's identity across instances) and read-only after."""

    model_config = ConfigDict(extra="ignore")

    EjscriptId: StrictInt = Field(default=0, ge=0, le=MAX_ID)
    UniqueIdentifier: uuid.UUID | None = None
    Name: StrictStr = Field(min_length=1, max_length=255)
    Description: StrictStr | None = Field(default=None, max_length=MAX_DESCRIPTION)
    IncludeId: StrictStr = Field(
        min_length=1,
        max_length=MAX_INCLUDE_ID,
        pattern=INCLUDE_ID_PATTERN,
        description="Unique per tenant: 1-255 of A-Z a-z 0-9 _ . -; `#include` and the "
        "TargetUrl of crmscript webhooks name it.",
    )
    Source: StrictStr = Field(max_length=MAX_SOURCE_CHARS, description="The CRMScript text.")

    @field_validator("Name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _text_rules(value, "Name")


class AllowListIn(BaseModel):
    """The hosts a tenant's scripts may reach over HTTP (exact host names or IP literals)."""

    Hosts: list[StrictStr] = Field(max_length=MAX_ALLOWED_HOSTS)

    @field_validator("Hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return normalize_hosts(value)


def normalize_hosts(hosts: list[str]) -> list[str]:
    """Lower-cased, de-duplicated, order kept; ValueError names the first bad entry."""
    if len(hosts) > MAX_ALLOWED_HOSTS:
        raise ValueError(f"at most {MAX_ALLOWED_HOSTS} hosts are allowed")
    seen: dict[str, None] = {}
    for raw in hosts:
        seen.setdefault(_host(raw), None)
    return list(seen)


def _host(raw: str) -> str:
    host = raw.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return (
            ipaddress.ip_address(host).compressed
            if ":" in host
            else str(ipaddress.ip_address(host))
        )
    except ValueError:
        pass
    labels = host.split(".")
    if not (0 < len(host) <= 253) or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{raw[:100]!r} is not a host name; give the bare host (e.g. chat.example.com or "
            "203.0.113.7): no scheme, port, path or wildcard, non-ASCII names in punycode"
        )
    return host


def compile_failure(
    diagnostics: list[Diagnostic], include_id: str, cls: type[ValidationError] = ValidationError
) -> ValidationError:
    """The 400 for a script that does not compile: where, what, and one Details entry each."""
    first = diagnostics[0]
    details = [
        {
            "Field": "Source",
            "Message": d.message,
            "Kind": d.kind,
            "Line": d.line,
            "Column": d.column,
        }
        for d in diagnostics
    ]
    return cls(f"CRMScript {include_id!r} does not compile: {diagnostic_text(first)}", details)


def _fields(carrier: ScriptIn) -> dict[str, Any]:
    return {
        "name": carrier.Name,
        "description": carrier.Description,
        "include_id": carrier.IncludeId,
        "source": carrier.Source,
    }


def _document(script: StoredScript) -> dict[str, Any]:
    return {
        "Name": script.name,
        "Description": script.description,
        "IncludeId": script.include_id,
        "Source": script.source,
    }


def default_carrier() -> dict[str, Any]:
    """GET /CRMScript/default: an empty script to fill in."""
    return {
        "EjscriptId": 0,
        "UniqueIdentifier": None,
        "Name": None,
        "Description": None,
        "IncludeId": None,
        "Source": "",
        "Registered": MIN_DATE,
        "RegisteredAssociateId": 0,
        "Updated": MIN_DATE,
        "UpdatedAssociateId": 0,
    }


async def check_script_target(db: Database, tenant: str, include_id: str) -> None:
    """Registration of a `crmscript` webhook (§5): its TargetUrl must name a script of the
    tenant that compiles. Raises VerificationFailed saying which check failed."""
    script, includes, _ = await db.run(
        lambda conn: store.script_run_context(conn, tenant, include_id=include_id)
    )
    if script is None:
        raise VerificationFailed(
            f"There is no CRMScript with IncludeId {include_id!r} in tenant {tenant}; "
            "create it under /api/v1/CRMScript first."
        )
    diagnostics = await asyncio.to_thread(
        check, script.source, include=includes.get, limits=Limits(), name=script.include_id
    )
    if diagnostics:
        raise compile_failure(diagnostics, include_id, VerificationFailed)


@dataclass
class Scripts:
    db: Database
    settings: Settings
    sender: HttpSender | None = None  # None: scripts cannot make HTTP requests
    runner: ScriptRunner = field(init=False)

    def __post_init__(self) -> None:
        self.runner = ScriptRunner(self.settings, self.sender)

    def close(self) -> None:
        self.runner.close()

    # ----- the store --------------------------------------------------------------------------

    async def get(self, who: Principal, script_id: int) -> StoredScript:
        script = await self.db.run(store.get_script, who.tenant, script_id)
        if script is None:
            raise NotFound(f"There is no CRMScript {script_id}.")
        return script

    async def list(
        self, who: Principal, *, name: str | None = None, include_id: str | None = None
    ) -> list[StoredScript]:
        return await self.db.run(
            lambda conn: store.list_scripts(conn, who.tenant, name=name, include_id=include_id)
        )

    async def create(self, who: Principal, carrier: ScriptIn) -> StoredScript:
        await self._compiles(who, carrier, old_include_id=None)
        uid = str(carrier.UniqueIdentifier or uuid.uuid4())
        given_uid = carrier.UniqueIdentifier is not None

        def write(conn):  # type: ignore[no-untyped-def]
            self._include_id_free(conn, who, carrier.IncludeId, None)
            if given_uid and store.uid_taken(conn, who.tenant, uid):
                raise Conflict(f"A CRMScript with UniqueIdentifier {uid} already exists.")
            return store.insert_script(
                conn, who.tenant, who.associate_id, time.time(), uid, _fields(carrier)
            )

        script_id = await self._write(write, carrier.IncludeId)
        return await self.get(who, script_id)

    async def replace(
        self,
        who: Principal,
        script_id: int,
        carrier: ScriptIn,
        if_unmodified_since: str | None = None,
    ) -> StoredScript:
        old = await self.get(who, script_id)
        check_unmodified(old.updated, if_unmodified_since, f"CRMScript {script_id}")
        await self._compiles(who, carrier, old_include_id=old.include_id)
        old_updated = old.updated.timestamp()

        def write(conn):  # type: ignore[no-untyped-def]
            current = store.get_script(conn, who.tenant, script_id)
            now = next_update_time(
                current and current.updated, old_updated, f"CRMScript {script_id}"
            )
            self._include_id_free(conn, who, carrier.IncludeId, script_id)
            store.update_script(
                conn, who.tenant, script_id, who.associate_id, now, _fields(carrier)
            )
            return store.get_script(conn, who.tenant, script_id)

        return await self._write(write, carrier.IncludeId)

    async def patch(
        self,
        who: Principal,
        script_id: int,
        body: Any,
        media_type: str,
        if_unmodified_since: str | None = None,
    ) -> StoredScript:
        old = await self.get(who, script_id)
        check_unmodified(old.updated, if_unmodified_since, f"CRMScript {script_id}")
        patched = apply_patch(
            _document(old), body, media_type, writable=WRITABLE, read_only=READ_ONLY, what="script"
        )
        return await self.replace(who, script_id, parse_body(ScriptIn, patched, "a script"))

    async def delete(
        self, who: Principal, script_id: int, if_unmodified_since: str | None = None
    ) -> None:
        if if_unmodified_since:
            old = await self.get(who, script_id)
            check_unmodified(old.updated, if_unmodified_since, f"CRMScript {script_id}")
        if not await self.db.run(store.delete_script, who.tenant, script_id):
            raise NotFound(f"There is no CRMScript {script_id}.")

    # ----- the sandbox ------------------------------------------------------------------------

    async def validate(self, who: Principal, source: str) -> list[Diagnostic]:
        """Compile errors of a text against the tenant's scripts ([] when it compiles)."""
        includes = await self.db.run(store.resolve_includes, who.tenant, [source])
        return await self.runner.check(source, includes)

    async def execute(self, who: Principal, script_id: int, variables: dict[str, str]) -> RunResult:
        """Run a stored script now, with these variables, under the sandbox limits."""
        script, includes, hosts = await self.db.run(
            lambda conn: store.script_run_context(conn, who.tenant, script_id=script_id)
        )
        if script is None:
            raise NotFound(f"There is no CRMScript {script_id}.")
        return await self.runner.run(
            script.source,
            includes=includes,
            variables=dict(variables),
            allow_hosts=hosts,
            name=script.include_id,
        )

    # ----- the tenant's HTTP allow-list ---------------------------------------------------------

    async def allow_list(self, who: Principal) -> list[str]:
        return await self.db.run(store.get_http_allow_list, who.tenant)

    async def set_allow_list(self, who: Principal, hosts: list[str]) -> list[str]:
        try:
            hosts = normalize_hosts(hosts)
        except ValueError as exc:
            raise ValidationError(
                f"Hosts: {exc}", [{"Field": "Hosts", "Message": str(exc)}]
            ) from None
        try:
            await self.db.run(
                store.set_http_allow_list, who.tenant, hosts, who.associate_id, time.time()
            )
        except IntegrityError:  # a concurrent first PUT inserted the row: now it updates
            await self.db.run(
                store.set_http_allow_list, who.tenant, hosts, who.associate_id, time.time()
            )
        return hosts

    # ----- internals ----------------------------------------------------------------------------

    async def _compiles(
        self, who: Principal, carrier: ScriptIn, old_include_id: str | None
    ) -> None:
        # The tenant's scripts as they will be after this save: this one under its new
        # IncludeId, and no longer under an old one.
        overrides: dict[str, str | None] = {}
        if old_include_id is not None:
            overrides[old_include_id] = None
        overrides[carrier.IncludeId] = carrier.Source
        includes = await self.db.run(
            lambda conn: store.resolve_includes(conn, who.tenant, [carrier.Source], overrides)
        )
        diagnostics = await self.runner.check(carrier.Source, includes, carrier.IncludeId)
        if diagnostics:
            raise compile_failure(diagnostics, carrier.IncludeId)

    @staticmethod
    def _include_id_free(conn: Any, who: Principal, include_id: str, script_id: int | None) -> None:
        owner = store.include_id_owner(conn, who.tenant, include_id)
        if owner is not None and owner != script_id:
            raise Conflict(
                f"IncludeId {include_id!r} is already used by CRMScript {owner}; "
                "IncludeIds are unique per tenant.",
                [{"Field": "IncludeId", "Message": "already in use"}],
            )

    async def _write(self, fn: Any, include_id: str) -> Any:
        try:
            return await self.db.run(fn)
        except IntegrityError:  # a concurrent save took the IncludeId or UniqueIdentifier
            raise Conflict(
                f"IncludeId {include_id!r} or the UniqueIdentifier is already in use in this "
                "tenant; fetch the scripts and retry."
            ) from None
