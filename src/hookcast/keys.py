"""API keys: random, shown once, stored only as a SHA-256 hash.

A key carries 256 bits of randomness, so a fast hash is as safe as a slow one and keeps
authentication to one indexed lookup per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

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


class KeyCache:
    """Principals by key, each trusted for at most `ttl` seconds after it was read.

    Without it every request is a read transaction queued behind the group commits on the
    database thread. Keys are revoked by any process (`hookcast keys revoke`), so nothing
    tells this one: an entry simply expires, and a revoked key stops working within `ttl`
    plus one lookup. Unknown keys are not cached (a key created elsewhere works at once);
    concurrent lookups of one key share one read. Bounded: the least recently used entry
    goes first."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float = 0.5,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}

    async def principal(self, key: str) -> Principal | None:
        digest = hash_key(key)
        entry = self._entries.get(digest)
        if entry is not None:
            if self._clock() - entry[1] < self._ttl:
                self._entries.move_to_end(digest)
                return entry[0]
            del self._entries[digest]
        loading = self._loading.get(digest)
        if loading is None:  # one read for every request with this key; none cancels it
            loading = self._loading[digest] = asyncio.ensure_future(self._load(digest))
        return await asyncio.shield(loading)

    async def _load(self, digest: str) -> Principal | None:
        try:
            read_at = self._clock()
            who = await self._db.read(queries.principal_for_key, digest)
        finally:
            del self._loading[digest]
        if who is not None:
            self._entries[digest] = (who, read_at)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return who

    def forget(self) -> None:
        """Drop every entry (a key was revoked in this process)."""
        self._entries.clear()
