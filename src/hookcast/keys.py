"""API keys: random, shown once, stored only as a SHA-256 hash.

A key carries 256 bits of randomness, so a fast hash is as safe as a slow one and keeps
authentication to one indexed lookup per request.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from .model import ApiKey, Principal
from .rights import DEFAULT_ROLE, Role
from .store import queries
from .store.database import Database

KEY_PREFIX = "hc_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    db: Database,
    *,
    tenant: str,
    associate_id: int,
    name: str = "",
    full_name: str = "",
    role: Role = DEFAULT_ROLE,
) -> tuple[ApiKey, str]:
    """Create a key for (tenant, associate) with `role` (§7); returns its record and the key
    itself."""
    key = new_key()

    def work(conn):  # type: ignore[no-untyped-def]
        queries.upsert_associate(conn, tenant, associate_id, name, full_name or name)
        key_id = queries.insert_key(
            conn,
            tenant=tenant,
            associate_id=associate_id,
            name=name,
            prefix=key[: len(KEY_PREFIX) + 6],
            key_hash=hash_key(key),
            now=time.time(),
            role=role,
        )
        return next(k for k in queries.list_keys(conn, tenant) if k.id == key_id)

    return db.run_sync(work), key


async def authenticate(db: Database, key: str) -> Principal | None:
    return await db.read(queries.principal_for_key, hash_key(key))
