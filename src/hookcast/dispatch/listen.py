"""PostgreSQL LISTEN/NOTIFY: a signal committed on any machine wakes idle dispatchers
within milliseconds. The dispatcher's slow poll covers a notification lost while the
listening connection was down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import make_url

from ..outage import OutageReporter
from ..store.dialect import NOTIFY_CHANNEL

log = logging.getLogger("hookcast.dispatch")


def conninfo(url: str) -> str:
    from psycopg.conninfo import make_conninfo

    parsed = make_url(url)
    parts: dict[str, str | int | None] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        # a query option given twice arrives as a tuple: the last one counts
        **{k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()},
    }
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


async def listen(
    url: str,
    on_notify: Callable[[], None],
    *,
    ready: asyncio.Event | None = None,
    health: OutageReporter | None = None,
) -> None:
    """Call `on_notify` for every notification, reconnecting after failures, until cancelled.
    With `health` (the database's outage reporter) a lost connection is one more failed
    operation of the outage, not a line of its own each second."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo(url), autocommit=True
            ) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if health is not None:
                    health.succeeded()
                if ready is not None:
                    ready.set()
                on_notify()  # anything committed while we were not listening
                async for _ in conn.notifies():
                    on_notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if health is not None:
                health.failed(exc)
            else:
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            await asyncio.sleep(1.0)
