"""API key authentication (§7): `Authorization: Bearer <key>` names a tenant and associate."""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import NotFound, Unauthorized
from ..keys import authenticate
from ..model import Principal
from .binding import context_identifier

bearer = HTTPBearer(auto_error=False, description="An API key from `hookcast keys create`.")


async def principal(request: Request) -> Principal:
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    if credentials is None:
        raise Unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    who = await authenticate(request.app.state.db, credentials.credentials)
    if who is None:
        raise Unauthorized("The API key is unknown or revoked.")
    tenant = context_identifier(request)
    if tenant is not None and tenant.lower() != who.tenant.lower():
        # As for another tenant's webhook: the key does not learn whether that tenant exists.
        raise NotFound(f"There is no tenant {tenant!r} for this API key.")
    return who
