"""The `crmscript` plugin (§9, crmscript.md §15): each delivery runs the tenant's script named
by the webhook's TargetUrl (an IncludeId) with the event as variables.

Scripts compile and run in the sandbox's worker processes (hookcast.sandbox), never on a
thread of this process: a run that overruns its wall-clock deadline is killed with its
worker, each worker has an address-space and a CPU-time limit, and tenants take turns for
the workers. A script's HTTP requests come back from the worker over its pipe and are made
here with the Hub's sender (`ScriptHttpClient`): the same target guard, TLS rules, timeouts
and size limits, and only to hosts on the tenant's allow-list (the interpreter checks that
list first).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

import orjson

from ...crmscript import Diagnostic, Limits, RunResult
from ...net.sender import HttpSender
from ...outcome import AttemptOutcome, ErrorKind
from ...payload import entity_of
from ...sandbox import SandboxConfig, SandboxPool
from ...sandbox.pool import SandboxCrashed, SandboxTimeout
from ...sandbox.protocol import (
    Message,
    b64,
    diagnostics_from_list,
    limits_to_dict,
    result_from_dict,
    unb64,
)
from ...settings import Settings
from ...store import scripts as store
from ...store.database import Database
from ...store.rows import Claimed
from .base import STATE_EVENT

MAX_STORED_OUTPUT = 64 * 1024  # characters of a run's output kept in the delivery log


def script_limits(settings: Settings) -> Limits:
    """§14 defaults with the configured run time; a script's HTTP request waits no longer
    than a delivery attempt."""
    defaults = Limits()
    return Limits(
        max_seconds=settings.script_timeout,
        http_timeout=min(defaults.http_timeout, settings.attempt_timeout),
    )


def sandbox_config(settings: Settings) -> SandboxConfig:
    return SandboxConfig(
        workers=settings.script_workers,
        per_tenant=settings.script_tenant_workers,
        memory_bytes=settings.script_memory_mb << 20,
        cache_bytes=int(settings.script_cache_mb * (1 << 20)),
    )


def diagnostic_text(d: Diagnostic) -> str:
    return f"{d.kind} at line {d.line}, column {d.column}: {d.message}"


def _limit_result(message: str) -> RunResult:
    return RunResult("", False, "LimitExceeded", message, f"ERROR: LimitExceeded: {message}")


class ScriptRunner:
    """Compiles and runs scripts in the sandbox's worker processes (one pool per Hub)."""

    def __init__(
        self, settings: Settings, sender: HttpSender | None, *, pool: SandboxPool | None = None
    ) -> None:
        self._settings = settings
        self._sender = sender
        self.limits = script_limits(settings)
        self._own_pool = pool is None
        self.pool = pool or SandboxPool(sandbox_config(settings))
        cpu = settings.script_cpu_seconds or settings.script_timeout
        self._cpu_seconds = cpu
        self._deadline = settings.script_timeout + settings.script_kill_grace

    async def check(
        self, source: str, includes: Mapping[str, str], name: str = "main", *, tenant: str = ""
    ) -> list[Diagnostic]:
        """The compile errors of `source` ([] when it compiles); includes by IncludeId."""
        request = self._request("check", source, includes, name)
        try:
            answer = await self.pool.call(tenant, request, deadline=self._deadline)
        except SandboxTimeout:
            return [Diagnostic(0, 0, "LimitExceeded", self._overran("compiling"))]
        except SandboxCrashed as exc:
            return [Diagnostic(0, 0, "LimitExceeded", f"compiling stopped: {exc.reason}")]
        if answer.get("op") != "diagnostics":
            return [Diagnostic(0, 0, "RuntimeError", "internal error: the sandbox failed")]
        return diagnostics_from_list(answer["items"])

    async def run(
        self,
        source: str,
        *,
        includes: Mapping[str, str],
        variables: dict[str, str],
        allow_hosts: Collection[str],
        name: str = "main",
        tenant: str = "",
    ) -> RunResult:
        request = self._request("run", source, includes, name)
        http = self._sender is not None and bool(allow_hosts)
        request.update(variables=dict(variables), allow_hosts=list(allow_hosts), http=http)
        try:
            answer = await self.pool.call(
                tenant, request, deadline=self._deadline, on_http=self._http if http else None
            )
        except SandboxTimeout:
            return _limit_result(self._overran("run"))
        except SandboxCrashed as exc:
            return _limit_result(f"the run was stopped: {exc.reason}")
        if answer.get("op") != "result":
            return _limit_result(str(answer.get("message") or "the sandbox failed"))
        return result_from_dict(answer["result"])

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    async def aclose(self) -> None:
        if self._own_pool:
            await self.pool.aclose()

    def _overran(self, what: str) -> str:
        return f"{what} took longer than {self._settings.script_timeout:g} seconds"

    def _request(self, op: str, source: str, includes: Mapping[str, str], name: str) -> Message:
        return {
            "op": op,
            "source": source,
            "includes": dict(includes),
            "name": name,
            "limits": limits_to_dict(self.limits),
            "cpu_seconds": self._cpu_seconds,
        }

    async def _http(self, message: Message) -> Message:
        """A script's HTTP request, made here for the worker that sent it."""
        assert self._sender is not None
        headers = [(str(k), str(v)) for k, v in message["headers"]]
        if not any(k.lower() == "user-agent" for k, _ in headers):
            headers.append(("User-Agent", self._settings.user_agent))
        timeout = min(float(message["timeout"]), self.limits.http_timeout)
        try:
            status, answer, content = await self._sender.script_http.request(
                str(message["method"]),
                str(message["url"]),
                headers,
                unb64(message.get("body")),
                timeout,
                min(int(message["max_bytes"]), self.limits.max_http_response),
            )
        except ConnectionError as exc:
            return {"op": "http_result", "error": str(exc)}
        except Exception as exc:  # anything unexpected is the script's failed request
            return {"op": "http_result", "error": f"request failed: {type(exc).__name__}"}
        return {
            "op": "http_result",
            "status": status,
            "headers": [list(h) for h in answer],
            "body": b64(content),
        }


def variable_text(value: Any) -> str:
    """A JSON value as a script variable: a string as is, null as "", anything else as
    compact JSON text (numbers, booleans, objects, arrays)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def hook_variables(item: Claimed) -> dict[str, str]:
    """The variables of crmscript.md §15 for one delivery attempt."""
    state_event = STATE_EVENT.match(item.event)
    variables = {
        "PrimaryKey": str(item.primary_key),
        "Event": f"webhook.{state_event.group(1)}" if state_event else item.event,
        "Entity": "" if state_event else entity_of(item.event),
        "EventId": item.event_uuid,
        "Timestamp": item.occurred_at,
        "ChangedByAssociateId": str(item.associate_id),
        "ContextIdentifier": item.tenant,
    }
    values = item.change_values or {}
    for field in [*item.changes, *(k for k in values if k not in item.changes)]:
        variables[f"Changes.{field}"] = variable_text(values.get(field))
    for key, value in (item.properties or {}).items():
        variables.setdefault(key, variable_text(value))  # the event's own variables win
    return variables


def _stored_output(output: str) -> str:
    if len(output) <= MAX_STORED_OUTPUT:
        return output
    return output[:MAX_STORED_OUTPUT] + f"\n[output cut: {len(output)} characters in all]"


class CrmScriptPlugin:
    """Type `crmscript`: a Completed run is a successful attempt; a failed run (compile
    error, uncaught runtime error, limit) is a failed one whose error is the `ERROR:` line."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        sender: HttpSender,
        runner: ScriptRunner | None = None,
    ) -> None:
        self._db = db
        self._own_runner = runner is None
        self._runner = runner or ScriptRunner(settings, sender)

    async def deliver(self, item: Claimed) -> AttemptOutcome:
        started = time.perf_counter()
        script, includes, hosts = await self._db.run(
            lambda conn: store.script_run_context(conn, item.tenant, include_id=item.target_url)
        )
        if script is None:
            return AttemptOutcome.failed(
                f"ERROR: IncludeError: there is no CRMScript with IncludeId "
                f"{item.target_url!r} in tenant {item.tenant}",
                ErrorKind.SCRIPT,
                (time.perf_counter() - started) * 1000.0,
            )
        result = await self._runner.run(
            script.source,
            includes=includes,
            variables=hook_variables(item),
            allow_hosts=hosts,
            name=script.include_id,
            tenant=item.tenant,
        )
        return AttemptOutcome(
            ok=result.success,
            error=None if result.success else result.error_line,
            kind=None if result.success else ErrorKind.SCRIPT,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            excerpt=_stored_output(result.output),
        )

    async def close(self) -> None:
        if self._own_runner:  # the Hub's runner is closed by the Hub
            await self._runner.aclose()
