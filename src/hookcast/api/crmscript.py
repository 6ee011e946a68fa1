"""REST routes of the CRMScript store under /api/v1/CRMScript: scripts (tenant-scoped like
webhooks), Validate and Execute in the sandbox, and the tenant's HTTP allow-list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response

from ..model import MAX_ID
from ..store.scripts import StoredScript
from .deps import (
    ERRORS,
    PATCH_MEDIA_TYPES,
    Manager,
    PatchBody,
    Reader,
    ScriptsDep,
    links,
    patch_request,
)
from .limits import ParsedJSONRoute
from .schemas import (
    AllowListIn,
    AllowListOut,
    CompileProblemOut,
    ExecuteIn,
    ExecuteOut,
    ScriptIn,
    ScriptOut,
    ScriptWithLinks,
    ValidateIn,
    ValidateOut,
)

router = APIRouter(
    prefix="/api/v1/CRMScript", tags=["CRMScript"], responses=ERRORS, route_class=ParsedJSONRoute
)
ScriptIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The EjscriptId")]
ScriptBody = Annotated[ScriptIn, Body(description="A script carrier.")]


def with_links(request: Request, script: StoredScript) -> ScriptWithLinks:
    return ScriptWithLinks.of_linked(script, links(request, "CRMScript", script.id))


@router.get("/default", summary="A pre-filled script carrier", response_model=ScriptOut)
async def get_default(_: Reader) -> ScriptOut:
    return ScriptOut.default()


@router.get("", summary="The caller's scripts, optionally filtered", response_model=list[ScriptOut])
async def list_scripts(
    store: ScriptsDep,
    who: Reader,
    nameFilter: Annotated[str | None, Query(description="exact script name")] = None,
    includeIdFilter: Annotated[str | None, Query(description="exact IncludeId")] = None,
) -> list[ScriptOut]:
    found = await store.list(who, name=nameFilter, include_id=includeIdFilter)
    return [ScriptOut.of(s) for s in found]


@router.post("", summary="Store a script (it must compile)", response_model=ScriptWithLinks)
async def create_script(
    request: Request, store: ScriptsDep, who: Manager, body: ScriptBody
) -> ScriptWithLinks:
    return with_links(request, await store.create(who, body))


@router.post(
    "/Validate",
    summary="Compile a text against the caller's scripts; stores nothing",
    response_model=ValidateOut,
)
async def validate(store: ScriptsDep, who: Manager, body: ValidateIn) -> ValidateOut:
    diagnostics = await store.validate(who, body.source)
    return ValidateOut(valid=not diagnostics, errors=[CompileProblemOut.of(d) for d in diagnostics])


@router.get(
    "/HttpAllowList",
    summary="The hosts the caller's scripts may reach over HTTP",
    response_model=AllowListOut,
)
async def get_allow_list(store: ScriptsDep, who: Reader) -> AllowListOut:
    return AllowListOut(hosts=await store.allow_list(who))


@router.put(
    "/HttpAllowList",
    summary="Replace the hosts the caller's scripts may reach over HTTP",
    response_model=AllowListOut,
)
async def put_allow_list(store: ScriptsDep, who: Manager, body: AllowListIn) -> AllowListOut:
    return AllowListOut(hosts=await store.set_allow_list(who, body.hosts))


@router.get("/{scriptId:int}", summary="One script", response_model=ScriptWithLinks)
async def get_script(
    request: Request, store: ScriptsDep, who: Reader, scriptId: ScriptIdPath
) -> ScriptWithLinks:
    return with_links(request, await store.get(who, scriptId))


@router.put(
    "/{scriptId:int}",
    summary="Replace the writable fields (it must compile)",
    response_model=ScriptWithLinks,
)
async def put_script(
    request: Request,
    store: ScriptsDep,
    who: Manager,
    scriptId: ScriptIdPath,
    body: ScriptBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> ScriptWithLinks:
    return with_links(request, await store.replace(who, scriptId, body, if_unmodified_since))


@router.patch(
    "/{scriptId:int}",
    summary="JSON Patch (array) or JSON Merge Patch (object)",
    response_model=ScriptWithLinks,
    openapi_extra=PATCH_MEDIA_TYPES,
)
async def patch_script(
    request: Request,
    store: ScriptsDep,
    who: Manager,
    scriptId: ScriptIdPath,
    body: PatchBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> ScriptWithLinks:
    patch, media_type = patch_request(request, body)
    script = await store.patch(who, scriptId, patch, media_type, if_unmodified_since)
    return with_links(request, script)


@router.delete(
    "/{scriptId:int}", status_code=204, response_class=Response, summary="Delete a script"
)
async def delete_script(
    store: ScriptsDep,
    who: Manager,
    scriptId: ScriptIdPath,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> Response:
    await store.delete(who, scriptId, if_unmodified_since)
    return Response(status_code=204)


@router.post(
    "/{scriptId:int}/Execute",
    summary="Run a script now in the sandbox",
    response_model=ExecuteOut,
    openapi_extra={"requestBody": {"required": False}},
)
async def execute(
    store: ScriptsDep,
    who: Manager,
    scriptId: ScriptIdPath,
    body: Annotated[ExecuteIn | None, Body(description="The run's variables")] = None,
) -> ExecuteOut:
    variables = (body.variables if body else None) or {}
    result = await store.execute(who, scriptId, variables)
    return ExecuteOut(output=result.output, success=result.success, error=result.error_line)
