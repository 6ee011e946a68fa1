"""REST routes of the CRMScript store under /api/v1/CRMScript: scripts (tenant-scoped like
webhooks), Validate and Execute in the sandbox, and the tenant's HTTP allow-list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from ..model import MAX_ID, Links, format_date
from ..scripts import MAX_SOURCE_CHARS, AllowListIn, ScriptIn, Scripts, default_carrier
from ..store.scripts import StoredScript
from .webhooks import ERRORS, PATCH_MEDIA_TYPES, Caller, PatchBody

router = APIRouter(prefix="/api/v1/CRMScript", tags=["CRMScript"], responses=ERRORS)
ScriptIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The EjscriptId")]
ScriptBody = Annotated[ScriptIn, Body(description="A script carrier.")]


class ScriptOut(BaseModel):
    """A script as returned in lists."""

    EjscriptId: int
    UniqueIdentifier: str | None
    Name: str | None
    Description: str | None
    IncludeId: str | None
    Source: str
    Registered: str
    RegisteredAssociateId: int
    Updated: str
    UpdatedAssociateId: int


class ScriptWithLinks(ScriptOut):
    """A single script, with `_Links`."""

    model_config = ConfigDict(populate_by_name=True)
    links: Links = Field(alias="_Links", serialization_alias="_Links")


class ValidateIn(BaseModel):
    Source: StrictStr = Field(max_length=MAX_SOURCE_CHARS, description="CRMScript text to check")


class CompileProblemOut(BaseModel):
    Line: int
    Column: int
    Kind: str  # SyntaxError, NameError, TypeError, IncludeError, UnsupportedFeature, ...
    Message: str


class ValidateOut(BaseModel):
    Valid: bool
    Errors: list[CompileProblemOut]


class ExecuteIn(BaseModel):
    Variables: dict[str, StrictStr] | None = Field(
        default=None, description="Variables the script reads with getVariable(name)"
    )


class ExecuteOut(BaseModel):
    Output: str
    Success: bool
    Error: str | None = Field(description="The `ERROR: <Kind>: <message>` line of a failed run")


class AllowListOut(BaseModel):
    Hosts: list[str]


def scripts(request: Request) -> Scripts:
    return request.app.state.scripts  # type: ignore[no-any-return]


def script_out(script: StoredScript) -> dict[str, Any]:
    return {
        "EjscriptId": script.id,
        "UniqueIdentifier": script.uid,
        "Name": script.name,
        "Description": script.description,
        "IncludeId": script.include_id,
        "Source": script.source,
        "Registered": format_date(script.registered),
        "RegisteredAssociateId": script.registered_associate_id,
        "Updated": format_date(script.updated),
        "UpdatedAssociateId": script.updated_associate_id,
    }


def with_links(request: Request, script: StoredScript) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/api/v1/CRMScript"
    return {**script_out(script), "_Links": {"Self": f"{base}/{script.id}", "Archive": base}}


@router.get("/default", summary="A pre-filled script carrier", response_model=ScriptOut)
async def get_default(_: Caller) -> dict[str, Any]:
    return default_carrier()


@router.get("", summary="The caller's scripts, optionally filtered", response_model=list[ScriptOut])
async def list_scripts(
    request: Request,
    who: Caller,
    nameFilter: Annotated[str | None, Query(description="exact script name")] = None,
    includeIdFilter: Annotated[str | None, Query(description="exact IncludeId")] = None,
) -> list[dict[str, Any]]:
    found = await scripts(request).list(who, name=nameFilter, include_id=includeIdFilter)
    return [script_out(s) for s in found]


@router.post("", summary="Store a script (it must compile)", response_model=ScriptWithLinks)
async def create_script(request: Request, who: Caller, body: ScriptBody) -> dict[str, Any]:
    return with_links(request, await scripts(request).create(who, body))


@router.post(
    "/Validate",
    summary="Compile a text against the caller's scripts; stores nothing",
    response_model=ValidateOut,
)
async def validate(request: Request, who: Caller, body: ValidateIn) -> ValidateOut:
    diagnostics = await scripts(request).validate(who, body.Source)
    return ValidateOut(
        Valid=not diagnostics,
        Errors=[
            CompileProblemOut(Line=d.line, Column=d.column, Kind=d.kind, Message=d.message)
            for d in diagnostics
        ],
    )


@router.get(
    "/HttpAllowList",
    summary="The hosts the caller's scripts may reach over HTTP",
    response_model=AllowListOut,
)
async def get_allow_list(request: Request, who: Caller) -> AllowListOut:
    return AllowListOut(Hosts=await scripts(request).allow_list(who))


@router.put(
    "/HttpAllowList",
    summary="Replace the hosts the caller's scripts may reach over HTTP",
    response_model=AllowListOut,
)
async def put_allow_list(request: Request, who: Caller, body: AllowListIn) -> AllowListOut:
    return AllowListOut(Hosts=await scripts(request).set_allow_list(who, body.Hosts))


@router.get("/{scriptId:int}", summary="One script", response_model=ScriptWithLinks)
async def get_script(request: Request, who: Caller, scriptId: ScriptIdPath) -> dict[str, Any]:
    return with_links(request, await scripts(request).get(who, scriptId))


@router.put(
    "/{scriptId:int}",
    summary="Replace the writable fields (it must compile)",
    response_model=ScriptWithLinks,
)
async def put_script(
    request: Request,
    who: Caller,
    scriptId: ScriptIdPath,
    body: ScriptBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    return with_links(
        request, await scripts(request).replace(who, scriptId, body, if_unmodified_since)
    )


@router.patch(
    "/{scriptId:int}",
    summary="JSON Patch (array) or JSON Merge Patch (object)",
    response_model=ScriptWithLinks,
    openapi_extra=PATCH_MEDIA_TYPES,
)
async def patch_script(
    request: Request,
    who: Caller,
    scriptId: ScriptIdPath,
    body: PatchBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    media_type = (
        request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    )
    patch = [op.model_dump(exclude_unset=True) for op in body] if isinstance(body, list) else body
    script = await scripts(request).patch(who, scriptId, patch, media_type, if_unmodified_since)
    return with_links(request, script)


@router.delete(
    "/{scriptId:int}", status_code=204, response_class=Response, summary="Delete a script"
)
async def delete_script(
    request: Request,
    who: Caller,
    scriptId: ScriptIdPath,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> Response:
    await scripts(request).delete(who, scriptId, if_unmodified_since)
    return Response(status_code=204)


@router.post(
    "/{scriptId:int}/Execute",
    summary="Run a script now in the sandbox",
    response_model=ExecuteOut,
    openapi_extra={"requestBody": {"required": False}},
)
async def execute(
    request: Request,
    who: Caller,
    scriptId: ScriptIdPath,
    body: Annotated[ExecuteIn | None, Body(description="The run's variables")] = None,
) -> ExecuteOut:
    variables = (body.Variables if body else None) or {}
    result = await scripts(request).execute(who, scriptId, variables)
    return ExecuteOut(Output=result.output, Success=result.success, Error=result.error_line)
