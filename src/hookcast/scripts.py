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

import builtins
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from .api.schemas import AllowListIn, ScriptIn, ScriptOut, api_names, field_values, wire_values
from .crmscript import Diagnostic, RunResult
from .dispatch.plugins.crmscript import ScriptRunner, diagnostic_text
from .errors import Conflict, NotFound, ValidationError, VerificationFailed
from .model import Principal
from .net.sender import HttpSender
from .patching import apply_patch, check_unmodified, next_update_time
from .rules import normalize_hosts
from .settings import Settings
from .store import scripts as store
from .store.database import Database
from .store.scripts import StoredScript
from .validation import parse_body

__all__ = ["AllowListIn", "ScriptIn", "Scripts", "check_script_target", "compile_failure"]

# A carrier's fields less those the server sets: what a client writes. Their wire names are
# the JSON Patch paths and Merge Patch keys; the other fields of a script as answered may
# not be patched.
T = TypeVar("T")
SERVER_SET = ("ejscript_id", "unique_identifier")
WRITABLE_FIELDS = tuple(name for name in ScriptIn.model_fields if name not in SERVER_SET)
WRITABLE = api_names(ScriptIn, only=WRITABLE_FIELDS)
READ_ONLY = api_names(ScriptOut, exclude=WRITABLE_FIELDS)


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
    """The stored fields of a carrier, by their domain names (name, include_id, ...)."""
    return field_values(carrier, exclude=SERVER_SET)


def _document(script: StoredScript) -> dict[str, Any]:
    """The writable fields of a stored script by their wire names: what a PATCH applies to."""
    return wire_values(ScriptOut.of(script), WRITABLE)


async def check_script_target(
    db: Database, tenant: str, include_id: str, runner: ScriptRunner
) -> None:
    """Registration of a `crmscript` webhook (§5): its TargetUrl must name a script of the
    tenant that compiles (checked in the sandbox). Raises VerificationFailed saying which
    check failed."""
    script, includes, _ = await db.run(
        lambda conn: store.script_run_context(conn, tenant, include_id=include_id)
    )
    if script is None:
        raise VerificationFailed(
            f"There is no CRMScript with IncludeId {include_id!r} in tenant {tenant}; "
            "create it under /api/v1/CRMScript first."
        )
    diagnostics = await runner.check(script.source, includes, script.include_id, tenant=tenant)
    if diagnostics:
        raise compile_failure(diagnostics, include_id, VerificationFailed)


@dataclass
class Scripts:
    db: Database
    settings: Settings
    sender: HttpSender | None = None  # None: scripts cannot make HTTP requests
    # The Hub's runner (its sandbox pool); None: one of its own, closed by close()
    shared_runner: ScriptRunner | None = None
    runner: ScriptRunner = field(init=False)

    def __post_init__(self) -> None:
        self.runner = self.shared_runner or ScriptRunner(self.settings, self.sender)

    def close(self) -> None:
        if self.shared_runner is None:
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
        uid = str(carrier.unique_identifier or uuid.uuid4())
        given_uid = carrier.unique_identifier is not None

        def write(conn: Connection) -> int:
            self._include_id_free(conn, who, carrier.include_id, None)
            if given_uid and store.uid_taken(conn, who.tenant, uid):
                raise Conflict(f"A CRMScript with UniqueIdentifier {uid} already exists.")
            return store.insert_script(
                conn, who.tenant, who.associate_id, time.time(), uid, _fields(carrier)
            )

        script_id = await self._write(write, carrier.include_id)
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

        def write(conn: Connection) -> StoredScript:
            current = store.get_script(conn, who.tenant, script_id)
            if current is None:  # deleted meanwhile
                raise NotFound(f"There is no CRMScript {script_id}.")
            now = next_update_time(current.updated, old_updated, f"CRMScript {script_id}")
            self._include_id_free(conn, who, carrier.include_id, script_id)
            store.update_script(
                conn, who.tenant, script_id, who.associate_id, now, _fields(carrier)
            )
            updated = store.get_script(conn, who.tenant, script_id)
            assert updated is not None  # written in this transaction
            return updated

        return await self._write(write, carrier.include_id)

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

    async def validate(self, who: Principal, source: str) -> builtins.list[Diagnostic]:
        """Compile errors of a text against the tenant's scripts ([] when it compiles)."""
        includes = await self.db.run(store.resolve_includes, who.tenant, [source])
        return await self.runner.check(source, includes, tenant=who.tenant)

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
            tenant=who.tenant,
        )

    # ----- the tenant's HTTP allow-list ---------------------------------------------------------

    async def allow_list(self, who: Principal) -> builtins.list[str]:
        return await self.db.run(store.get_http_allow_list, who.tenant)

    async def set_allow_list(self, who: Principal, hosts: builtins.list[str]) -> builtins.list[str]:
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
        overrides[carrier.include_id] = carrier.source
        includes = await self.db.run(
            lambda conn: store.resolve_includes(conn, who.tenant, [carrier.source], overrides)
        )
        diagnostics = await self.runner.check(
            carrier.source, includes, carrier.include_id, tenant=who.tenant
        )
        if diagnostics:
            raise compile_failure(diagnostics, carrier.include_id)

    @staticmethod
    def _include_id_free(conn: Any, who: Principal, include_id: str, script_id: int | None) -> None:
        owner = store.include_id_owner(conn, who.tenant, include_id)
        if owner is not None and owner != script_id:
            raise Conflict(
                f"IncludeId {include_id!r} is already used by CRMScript {owner}; "
                "IncludeIds are unique per tenant.",
                [{"Field": "IncludeId", "Message": "already in use"}],
            )

    async def _write(self, fn: Callable[[Connection], T], include_id: str) -> T:
        try:
            return await self.db.run(fn)
        except IntegrityError:  # a concurrent save took the IncludeId or UniqueIdentifier
            raise Conflict(
                f"IncludeId {include_id!r} or the UniqueIdentifier is already in use in this "
                "tenant; fetch the scripts and retry."
            ) from None
