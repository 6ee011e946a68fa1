"""API key authentication and rights (§7): `Authorization: Bearer <key>` names a tenant, an
associate and a role; each route asks for one Right (`caller`), checked here and only here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import Forbidden, NotFound, Unauthorized
from ..keys import KeyCache
from ..model import Principal
from ..rights import Right, allows
from .access import note_caller
from .binding import context_identifier

bearer = HTTPBearer(auto_error=False, description="An API key from `hookcast keys create`.")


async def principal(request: Request) -> Principal:
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    if credentials is None:
        raise Unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    keys: KeyCache = request.app.state.keys
    who = await keys.principal(credentials.credentials)
    if who is None:
        raise Unauthorized("The API key is unknown or revoked.")
    note_caller(request, who)
    tenant = context_identifier(request)
    if tenant is not None and tenant.lower() != who.tenant.lower():
        # As for another tenant's webhook: the key does not learn whether that tenant exists.
        raise NotFound(f"There is no tenant {tenant!r} for this API key.")
    return who


def caller(right: Right) -> Callable[[Request], Awaitable[Principal]]:
    """The dependency of a route that needs `right`: the caller, or 401 / 404 / 403."""

    async def checked(request: Request) -> Principal:
        who = await principal(request)
        if not allows(who.role, right):
            raise Forbidden(
                f"This API key's role ({who.role.value}) does not have the {right.value} "
                "right; use a key created with a role that does (hookcast keys create --role)."
            )
        return who

    return checked
