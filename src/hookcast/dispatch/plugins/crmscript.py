"""The `crmscript` plugin (§9, crmscript.md §15): each delivery runs the tenant's script named
by the webhook's TargetUrl (an IncludeId) with the event as variables.

Scripts run in a small thread pool (the interpreter is synchronous) under the §14 limits.
Their HTTP requests go back to the event loop through `GuardedTransport`
(net/script_http.py), which uses the Hub's sender: the same target guard, TLS rules,
timeouts and size limits, and only to hosts on the tenant's allow-list (the interpreter
checks that list first).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from ...crmscript import Diagnostic, Limits, RunResult, check, run_script
from ...net.script_http import GuardedTransport
from ...net.sender import HttpSender
from ...outcome import AttemptOutcome, ErrorKind
from ...payload import entity_of
from ...settings import Settings
from ...store import scripts as store
from ...store.database import Database
from ...store.rows import Claimed
from .base import STATE_EVENT

SCRIPT_THREADS = 8  # scripts running at once per process; more wait for a thread
MAX_STORED_OUTPUT = 64 * 1024  # characters of a run's output kept in the delivery log


def script_limits(settings: Settings) -> Limits:
    """§14 defaults; a script's HTTP request waits no longer than a delivery attempt."""
    defaults = Limits()
    return Limits(http_timeout=min(defaults.http_timeout, settings.attempt_timeout))


def diagnostic_text(d: Diagnostic) -> str:
    return f"{d.kind} at line {d.line}, column {d.column}: {d.message}"


class ScriptRunner:
    """Compiles and runs scripts off the event loop, in a bounded thread pool."""

    def __init__(
        self, settings: Settings, sender: HttpSender | None, *, threads: int = SCRIPT_THREADS
    ) -> None:
        self._settings = settings
        self._sender = sender
        self.limits = script_limits(settings)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="hookcast-crmscript")

    async def check(
        self, source: str, includes: Mapping[str, str], name: str = "main"
    ) -> list[Diagnostic]:
        """The compile errors of `source` ([] when it compiles); includes by IncludeId."""
        loop = asyncio.get_running_loop()
        includes = dict(includes)
        return await loop.run_in_executor(
            self._pool, lambda: check(source, include=includes.get, limits=self.limits, name=name)
        )

    async def run(
        self,
        source: str,
        *,
        includes: Mapping[str, str],
        variables: dict[str, str],
        allow_hosts: Collection[str],
        name: str = "main",
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        transport = None
        if self._sender is not None and allow_hosts:
            transport = GuardedTransport(self._sender.script_http, loop, self._settings.user_agent)
        includes = dict(includes)

        def work() -> RunResult:
            return run_script(
                source,
                variables=variables,
                include=includes.get,
                limits=self.limits,
                http=transport,
                http_allow_hosts=tuple(allow_hosts),
                name=name,
            )

        return await loop.run_in_executor(self._pool, work)

    def close(self) -> None:
        # A running script ends by its wall-time limit; nothing waits for it here.
        self._pool.shutdown(wait=False, cancel_futures=True)


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

    def __init__(self, settings: Settings, db: Database, sender: HttpSender) -> None:
        self._db = db
        self._runner = ScriptRunner(settings, sender)

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
        )
        return AttemptOutcome(
            ok=result.success,
            error=None if result.success else result.error_line,
            kind=None if result.success else ErrorKind.SCRIPT,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            excerpt=_stored_output(result.output),
        )

    async def close(self) -> None:
        self._runner.close()
