"""The console's pages: server-rendered Jinja2 templates, htmx for the parts that update in
place (the live delivery list, the script editor's checks, the Execute panel).

Every page calls the same services as the API (Registry, Scripts, DeliveryLog) as the
signed-in key's Principal, so validation, verification and rights are the API's own. Forms
are URL-encoded POSTs, each with the session's CSRF token; a POST without it changes
nothing and answers 403. Path segments avoid the API's literal ones (Deliveries, Test, ...):
the ASP.NET binding middleware would respell them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ..api.schemas import ScriptIn, WebhookIn
from ..deliveries import DeliveryFilter, DeliveryLog
from ..errors import Forbidden, HookcastError, NotFound, ValidationError
from ..keys import KeyCache
from ..model import NO_OPTIONS, DeliveryOptions, NotifyVia, Principal, State, format_epoch
from ..registry import Registry
from ..rights import Right, allows
from ..scripts import Scripts
from ..store.search import SEARCH_STATUSES
from ..validation import parse_body
from .chart import hourly_svg
from .sessions import COOKIE, Session, Sessions

PREFIX = "/console"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Environment(
    loader=PackageLoader("hookcast.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["epoch"] = lambda v: format_epoch(v) if v else ""

FILTER_NAMES = (
    "event",
    "primaryKey",
    "status",
    "webhookId",
    "eventId",
    "webhookMessageId",
    "since",
    "until",
)
PAGE = 50


class _SignIn(Exception):
    """No session: go to the sign-in page."""


# ----- plumbing -----------------------------------------------------------------------------


def _sessions(request: Request) -> Sessions:
    state = request.app.state
    if not hasattr(state, "console_sessions"):
        state.console_sessions = Sessions()
    return state.console_sessions  # type: ignore[no-any-return]


async def _principal_for(request: Request, key: str) -> Principal | None:
    """The key's Principal as the API finds it: through the app's key cache."""
    keys: KeyCache = request.app.state.keys
    return await keys.principal(key)


async def _caller(request: Request) -> tuple[Session, Principal]:
    session = _sessions(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise _SignIn
    who = await _principal_for(request, session.key)
    if who is None or not allows(who.role, Right.read):
        _sessions(request).close(request.cookies.get(COOKIE))
        raise _SignIn
    return session, who


def _registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


def _scripts(request: Request) -> Scripts:
    return request.app.state.scripts  # type: ignore[no-any-return]


def _log(request: Request) -> DeliveryLog:
    return request.app.state.delivery_log  # type: ignore[no-any-return]


def render(
    request: Request,
    name: str,
    status: int = 200,
    session: Session | None = None,
    who: Principal | None = None,
    **context: Any,
) -> HTMLResponse:
    flash = None
    if session is not None and session.flash:
        flash, session.flash = session.flash, None
    html = templates.get_template(name).render(
        request=request,
        who=who,
        csrf=session.csrf if session else "",
        can_manage=bool(who and allows(who.role, Right.manage)),
        can_secrets=bool(who and allows(who.role, Right.secrets)),
        flash=flash,
        prefix=PREFIX,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded body as single values (the last of repeated names)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


Page = Callable[[Request, Session, Principal], Awaitable[Response]]


def page(fn: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page for a signed-in caller: to sign-in without a session; a service's error shown
    as a page with its message."""

    async def handler(request: Request) -> Response:
        try:
            session, who = await _caller(request)
        except _SignIn:
            if request.headers.get("HX-Request"):
                return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/login"})
            return _redirect("/login")
        try:
            return await fn(request, session, who)
        except HookcastError as exc:
            return render(request, "error.html", exc.status_code, session, who, message=exc.message)

    handler.__name__ = fn.__name__
    return handler


def action(
    right: Right = Right.manage,
) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    """A POST: the CSRF token checked first (form field `csrf` or header X-CSRF-Token), then
    the right; either missing answers 403 and changes nothing."""

    def wrap(fn: Page) -> Callable[[Request], Awaitable[Response]]:
        async def checked(request: Request, session: Session, who: Principal) -> Response:
            token = request.headers.get("X-CSRF-Token") or (await _form(request)).get("csrf")
            if not session.csrf_ok(token):
                raise Forbidden("The form's CSRF token is missing or wrong; reload the page.")
            if not allows(who.role, right):
                raise Forbidden(
                    f"This API key's role ({who.role.value}) does not have the {right.value} right."
                )
            return await fn(request, session, who)

        checked.__name__ = fn.__name__
        return page(checked)

    return wrap


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotFound(f"There is no {value!r}.") from None


# ----- sign-in ------------------------------------------------------------------------------


@router.get("")
async def home(request: Request) -> Response:
    return _redirect("/hooks")


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    key = (await _form(request)).get("key", "").strip()
    who = await _principal_for(request, key) if key else None
    if who is None:
        return render(request, "login.html", 401, error="The API key is unknown or revoked.")
    if not allows(who.role, Right.read):
        return render(
            request,
            "login.html",
            403,
            error=f"This key's role ({who.role.value}) cannot read webhooks; use another key.",
        )
    session_id, _ = _sessions(request).open(key)
    response = _redirect("/hooks")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


async def _logout(request: Request, session: Session, who: Principal) -> Response:
    _sessions(request).close(request.cookies.get(COOKIE))
    response = _redirect("/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


router.post("/logout")(action(Right.read)(_logout))

# ----- webhooks -----------------------------------------------------------------------------


async def _hooks(request: Request, session: Session, who: Principal) -> Response:
    q = request.query_params
    filters = {k: q.get(k, "") for k in ("nameFilter", "eventFilter", "statusFilter")}
    hooks = await _registry(request).list(
        who,
        name=filters["nameFilter"] or None,
        event=filters["eventFilter"] or None,
        state=filters["statusFilter"] or None,
    )
    hourly = await _log(request).hourly([h.id for h in hooks])
    charts = {i: hourly_svg(v) for i, v in hourly.items()}
    return render(
        request,
        "hooks.html",
        session=session,
        who=who,
        hooks=hooks,
        charts=charts,
        filters=filters,
        states=[s.name for s in State if s is not State.Unknown],
    )


router.get("/hooks")(page(_hooks))


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _carrier(form: dict[str, str], who: Principal, old: Any | None = None) -> WebhookIn:
    """A webhook carrier from the form; a Secret left empty keeps the stored one. "Notify
    me in the console" makes the caller one of the ErrorAssociates (NotifyVia InApp)."""
    old_secret = old.secret if old is not None else None
    headers: dict[str, str] = {}
    for line in form.get("headers", "").splitlines():
        if line.strip():
            name, sep, value = line.partition(":")
            if not sep:
                raise ValidationError(f"Headers: {line.strip()!r} is not 'Name: value'.")
            headers[name.strip()] = value.strip()
    secret = form.get("secret", "")
    body: dict[str, Any] = {
        "Name": form.get("name", ""),
        "Events": _lines(form.get("events", "")),
        "TargetUrl": form.get("target_url", "").strip(),
        "Secret": secret if secret or old_secret is None else old_secret,
        "State": form.get("state", "Active"),
        "Type": form.get("type", "webhook") or "webhook",
        "Headers": headers or None,
        "ErrorEmails": _lines(form.get("error_emails", "")),
        "Description": form.get("description") or None,
        # hookcast's delivery options: an empty number is off (null)
        "Ordering": form.get("ordering") or "None",
        "CoalesceMs": _number(form, "coalesce_ms", int) or 0,
        "AutoRecover": bool(form.get("auto_recover")),
        "MaxPerSecond": _number(form, "max_per_second", float),
        "MaxInFlight": _number(form, "max_in_flight", int),
    }
    associates = [a for a in (old.error_associates if old else []) if a["Id"] != who.associate_id]
    if form.get("notify_inapp"):
        associates.append({"Id": who.associate_id, "Name": who.name})
    body["ErrorAssociates"] = associates
    body["NotifyVia"] = int(NotifyVia.InApp if associates else NotifyVia.NONE) | int(
        NotifyVia.Email if body["ErrorEmails"] else NotifyVia.NONE
    )
    if not body["Secret"]:
        body["Secret"] = None
    return parse_body(WebhookIn, body, "a webhook")


def _number(form: dict[str, str], name: str, kind: type[int] | type[float]) -> Any:
    """A number field of the form: empty is None; text that is not a number goes to the
    API's checks as it is, so the page shows the same 400 the API gives."""
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        return raw


def _options_form(options: DeliveryOptions) -> dict[str, str]:
    return {
        "ordering": options.ordering.wire_name,
        "coalesce_ms": str(options.coalesce_ms or ""),
        "auto_recover": "on" if options.auto_recover else "",
        "max_per_second": "" if options.max_per_second is None else f"{options.max_per_second:g}",
        "max_in_flight": "" if options.max_in_flight is None else str(options.max_in_flight),
    }


def _hook_form(who: Principal, hook: Any | None) -> dict[str, str]:
    if hook is None:
        return {
            "state": "Active",
            "type": "webhook",
            "notify_inapp": "on",
            **_options_form(NO_OPTIONS),
        }
    mine = any(a["Id"] == who.associate_id for a in hook.error_associates)
    return {
        "notify_inapp": "on" if mine and hook.notify_via & NotifyVia.InApp else "",
        "name": hook.name,
        "events": "\n".join(hook.events),
        "target_url": hook.target_url,
        "state": hook.state.name,
        "type": hook.type,
        "headers": "\n".join(f"{k}: {v}" for k, v in (hook.headers or {}).items()),
        "error_emails": "\n".join(hook.error_emails),
        "description": hook.description or "",
        **_options_form(hook.options),
    }


async def _new_hook(request: Request, session: Session, who: Principal) -> Response:
    if not allows(who.role, Right.manage):
        raise Forbidden(f"This API key's role ({who.role.value}) cannot create webhooks.")
    return render(
        request, "hook_form.html", session=session, who=who, hook=None, form=_hook_form(who, None)
    )


router.get("/hooks/new")(page(_new_hook))


async def _create_hook(request: Request, session: Session, who: Principal) -> Response:
    form = await _form(request)
    try:
        hook = await _registry(request).create(who, _carrier(form, who))
    except ValidationError as exc:
        return render(
            request, "hook_form.html", 400, session, who, hook=None, form=form, error=exc.message
        )
    session.flash = f"Webhook {hook.id} created."
    return _redirect(f"/hooks/{hook.id}")


router.post("/hooks")(action()(_create_hook))


async def _hook_page(request: Request, session: Session, who: Principal) -> Response:
    hook_id = _int(request.path_params["hook_id"])
    hook = await _registry(request).get(who, hook_id)
    rows, _ = await _log(request).search(
        DeliveryFilter(tenant=who.tenant, webhook_id=hook_id), PAGE
    )
    hourly = await _log(request).hourly([hook_id])
    return render(
        request,
        "hook.html",
        session=session,
        who=who,
        hook=hook,
        form=_hook_form(who, hook),
        rows=rows,
        chart=hourly_svg(hourly[hook_id]),
        rows_url=f"{PREFIX}/hooks/{hook_id}/rows",
    )


router.get("/hooks/{hook_id}")(page(_hook_page))


async def _hook_rows(request: Request, session: Session, who: Principal) -> Response:
    hook_id = _int(request.path_params["hook_id"])
    await _registry(request).get(who, hook_id)
    rows, _ = await _log(request).search(
        DeliveryFilter(tenant=who.tenant, webhook_id=hook_id), PAGE
    )
    return render(request, "rows.html", session=session, who=who, rows=rows)


router.get("/hooks/{hook_id}/rows")(page(_hook_rows))


async def _edit_hook(request: Request, session: Session, who: Principal) -> Response:
    hook_id = _int(request.path_params["hook_id"])
    reg = _registry(request)
    old = await reg.get(who, hook_id)
    form = await _form(request)
    try:
        hook = await reg.replace(who, hook_id, _carrier(form, who, old))
    except ValidationError as exc:
        rows, _ = await _log(request).search(
            DeliveryFilter(tenant=who.tenant, webhook_id=hook_id), PAGE
        )
        return render(
            request,
            "hook.html",
            400,
            session,
            who,
            hook=old,
            form=form,
            rows=rows,
            chart="",
            rows_url=f"{PREFIX}/hooks/{hook_id}/rows",
            error=exc.message,
        )
    session.flash = f"Webhook {hook.id} saved."
    return _redirect(f"/hooks/{hook_id}")


router.post("/hooks/{hook_id}")(action()(_edit_hook))


async def _check_hook(request: Request, session: Session, who: Principal) -> Response:
    """Send the test event to the form's target (stores nothing), as POST /Webhook/Test."""
    form = await _form(request)
    hook_id = request.path_params.get("hook_id")
    old = None if hook_id is None else await _registry(request).get(who, _int(hook_id))
    try:
        result = await _registry(request).test(who, _carrier(form, who, old))
        message, ok = result.message, result.success
    except ValidationError as exc:
        message, ok = exc.message, False
    return render(request, "test_result.html", session=session, who=who, ok=ok, message=message)


router.post("/hooks/{hook_id}/check")(action()(_check_hook))
router.post("/check")(action()(_check_hook))


def _state_action(state: State) -> Page:
    async def change(request: Request, session: Session, who: Principal) -> Response:
        hook_id = _int(request.path_params["hook_id"])
        try:
            await _registry(request).patch(
                who, hook_id, {"State": state.name}, "application/merge-patch+json"
            )
        except ValidationError as exc:
            session.flash = exc.message
        else:
            session.flash = f"Webhook {hook_id} is {state.name}."
        return _redirect(f"/hooks/{hook_id}")

    change.__name__ = f"set_{state.name}"
    return change


router.post("/hooks/{hook_id}/start")(action()(_state_action(State.Active)))
router.post("/hooks/{hook_id}/stop")(action()(_state_action(State.Stopped)))


async def _delete_hook(request: Request, session: Session, who: Principal) -> Response:
    hook_id = _int(request.path_params["hook_id"])
    await _registry(request).delete(who, hook_id)
    session.flash = f"Webhook {hook_id} deleted."
    return _redirect("/hooks")


router.post("/hooks/{hook_id}/delete")(action()(_delete_hook))

# ----- deliveries: search, one delivery, replay ----------------------------------------------


def _filter(who: Principal, values: dict[str, str]) -> DeliveryFilter:
    """The search form's fields as a filter, checked as the API checks its query."""
    from datetime import UTC, datetime

    def number(name: str) -> int | None:
        raw = values.get(name, "").strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise ValidationError(f"{name}: {raw!r} is not a whole number.")
        return int(raw)

    def moment(name: str) -> float | None:
        raw = values.get(name, "").strip()
        if not raw:
            return None
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationError(f"{name}: {raw!r} is not a date and time.") from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()

    status = values.get("status", "").strip() or None
    if status is not None and status not in SEARCH_STATUSES:
        raise ValidationError(f"status: one of {', '.join(SEARCH_STATUSES)}.")
    return DeliveryFilter(
        tenant=who.tenant,
        event=values.get("event", "").strip() or None,
        primary_key=number("primaryKey"),
        status=status,
        webhook_id=number("webhookId"),
        event_id=values.get("eventId", "").strip() or None,
        delivery_uid=values.get("webhookMessageId", "").strip() or None,
        since=moment("since"),
        until=moment("until"),
    )


def _query(values: dict[str, str]) -> dict[str, str]:
    return {k: values[k] for k in FILTER_NAMES if values.get(k, "").strip()}


async def _search(request: Request, session: Session, who: Principal) -> Response:
    values = dict(request.query_params)
    query = _query(values)
    error: str | None = None
    rows: list[dict[str, Any]] = []
    cursor: int | None = None
    try:
        f = _filter(who, values)
        before = _int(values["cursor"]) if values.get("cursor") else None
        rows, cursor = await _log(request).search(f, PAGE, before)
    except ValidationError as exc:
        error = exc.message
    hooks = await _registry(request).list(who)
    return render(
        request,
        "search.html",
        400 if error else 200,
        session,
        who,
        values=values,
        rows=rows,
        error=error,
        statuses=SEARCH_STATUSES,
        hooks=hooks,
        query=urlencode(query),
        next_url=f"{PREFIX}/search?{urlencode({**query, 'cursor': cursor})}" if cursor else None,
        rows_url=f"{PREFIX}/search/rows?{urlencode(query)}" if not values.get("cursor") else None,
    )


router.get("/search")(page(_search))


async def _search_rows(request: Request, session: Session, who: Principal) -> Response:
    rows, _ = await _log(request).search(_filter(who, dict(request.query_params)), PAGE)
    return render(request, "rows.html", session=session, who=who, rows=rows)


router.get("/search/rows")(page(_search_rows))


async def _delivery(request: Request, session: Session, who: Principal) -> Response:
    found = await _log(request).delivery(who, _int(request.path_params["delivery_id"]))
    return render(request, "delivery.html", session=session, who=who, d=found)


router.get("/delivery/{delivery_id}")(page(_delivery))


async def _replay_one(request: Request, session: Session, who: Principal) -> Response:
    found = await _log(request).delivery(who, _int(request.path_params["delivery_id"]))
    count = await _log(request).redeliver(
        DeliveryFilter(tenant=who.tenant, delivery_uid=found["uid"])
    )
    session.flash = (
        "Queued again."
        if count.queued
        else "Not queued: it is pending already, or its webhook is not Active."
    )
    return _redirect(f"/delivery/{found['id']}")


router.post("/delivery/{delivery_id}/replay")(action()(_replay_one))


async def _replay_confirm(request: Request, session: Session, who: Principal) -> Response:
    values = dict(request.query_params)
    count = await _log(request).count(_filter(who, values))
    return render(
        request,
        "replay.html",
        session=session,
        who=who,
        count=count,
        values=_query(values),
        query=urlencode(_query(values)),
    )


router.get("/replay")(page(_replay_confirm))


async def _replay(request: Request, session: Session, who: Principal) -> Response:
    values = await _form(request)
    count = await _log(request).redeliver(_filter(who, values))
    session.flash = f"Queued {count.queued} of {count.matched} matching deliveries again."
    return RedirectResponse(f"{PREFIX}/search?{urlencode(_query(values))}", status_code=303)


router.post("/replay")(action()(_replay))

# ----- notifications --------------------------------------------------------------------------


async def _alerts(request: Request, session: Session, who: Principal) -> Response:
    total, items = await _registry(request).notifications(who, None, 100, 0)
    return render(request, "alerts.html", session=session, who=who, total=total, items=items)


router.get("/alerts")(page(_alerts))

# ----- CRMScript scripts and the allow-list ---------------------------------------------------


async def _script_list(request: Request, session: Session, who: Principal) -> Response:
    found = await _scripts(request).list(who)
    return render(request, "scripts.html", session=session, who=who, scripts=found)


router.get("/scripts")(page(_script_list))


def _script_form(script: Any | None) -> dict[str, str]:
    if script is None:
        return {"source": 'print("Hello");\n'}
    return {
        "name": script.name,
        "include_id": script.include_id,
        "description": script.description or "",
        "source": script.source,
    }


def _script_carrier(form: dict[str, str]) -> ScriptIn:
    return parse_body(
        ScriptIn,
        {
            "Name": form.get("name", ""),
            "IncludeId": form.get("include_id", ""),
            "Description": form.get("description") or None,
            "Source": form.get("source", ""),
        },
        "a script",
    )


async def _script_page(request: Request, session: Session, who: Principal) -> Response:
    raw = request.path_params.get("script_id")
    script = None if raw is None else await _scripts(request).get(who, _int(raw))
    return render(
        request, "script.html", session=session, who=who, script=script, form=_script_form(script)
    )


router.get("/scripts/new")(page(_script_page))
router.get("/scripts/{script_id}")(page(_script_page))


async def _save_script(request: Request, session: Session, who: Principal) -> Response:
    form = await _form(request)
    raw = request.path_params.get("script_id")
    store = _scripts(request)
    script = None if raw is None else await store.get(who, _int(raw))
    try:
        carrier = _script_carrier(form)
        saved = (
            await store.create(who, carrier)
            if script is None
            else await store.replace(who, script.id, carrier)
        )
    except ValidationError as exc:
        return render(
            request, "script.html", 400, session, who, script=script, form=form, error=exc.message
        )
    session.flash = f"Script {saved.include_id} saved."
    return _redirect(f"/scripts/{saved.id}")


router.post("/scripts")(action()(_save_script))
router.post("/scripts/{script_id}")(action()(_save_script))


async def _check_script(request: Request, session: Session, who: Principal) -> Response:
    """The editor's check as you type (the Validate API's service)."""
    source = (await _form(request)).get("source", "")
    problems = await _scripts(request).validate(who, source)
    return render(request, "problems.html", session=session, who=who, problems=problems)


router.post("/scripts-check")(action()(_check_script))


async def _run_script(request: Request, session: Session, who: Principal) -> Response:
    script_id = _int(request.path_params["script_id"])
    form = await _form(request)
    variables: dict[str, str] = {}
    for line in form.get("variables", "").splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            variables[name.strip()] = value
    started = time.perf_counter()
    result = await _scripts(request).execute(who, script_id, variables)
    return render(
        request,
        "run_result.html",
        session=session,
        who=who,
        result=result,
        ms=(time.perf_counter() - started) * 1000,
    )


router.post("/scripts/{script_id}/run")(action()(_run_script))


async def _delete_script(request: Request, session: Session, who: Principal) -> Response:
    script_id = _int(request.path_params["script_id"])
    await _scripts(request).delete(who, script_id)
    session.flash = f"Script {script_id} deleted."
    return _redirect("/scripts")


router.post("/scripts/{script_id}/delete")(action()(_delete_script))


async def _allow_list(request: Request, session: Session, who: Principal) -> Response:
    hosts = await _scripts(request).allow_list(who)
    return render(request, "allow_list.html", session=session, who=who, hosts="\n".join(hosts))


router.get("/allow-list")(page(_allow_list))


async def _save_allow_list(request: Request, session: Session, who: Principal) -> Response:
    text = (await _form(request)).get("hosts", "")
    try:
        hosts = await _scripts(request).set_allow_list(who, _lines(text))
    except ValidationError as exc:
        return render(request, "allow_list.html", 400, session, who, hosts=text, error=exc.message)
    session.flash = f"Allow-list saved: {len(hosts)} hosts."
    return _redirect("/allow-list")


router.post("/allow-list")(action()(_save_allow_list))
