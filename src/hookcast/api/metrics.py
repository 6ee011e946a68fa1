"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import metrics
from ..store import queue
from .deps import DatabaseDep, HubDep
from .limits import ParsedJSONRoute
from .schemas import HealthOut, WorkerOut

router = APIRouter(tags=["hookcast"], route_class=ParsedJSONRoute)
STALE_AFTER = 30.0  # seconds without a heartbeat before a dispatcher counts as gone


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Liveness, the database, and every dispatcher's heartbeat",
)
async def health(db: DatabaseDep) -> HealthOut:
    rows = await db.read(queue.list_workers)
    now = time.time()
    return HealthOut(
        status="ok",
        database="ok",
        workers=[
            WorkerOut.model_validate({**w, "alive": now - w["heartbeat_at"] < STALE_AFTER})
            for w in rows
        ],
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def prometheus(db: DatabaseDep, hub: HubDep) -> Response:
    now = time.time()

    def snapshot(conn):  # type: ignore[no-untyped-def]
        return (
            queue.queue_depth(conn),
            queue.pending_by_due(conn, now),
            queue.webhooks_by_state(conn),
        )

    store = metrics.store_snapshot
    store.depth, store.queued, store.states = await db.read(snapshot)
    store.in_flight = hub.dispatcher.occupancy if hub.dispatcher is not None else {}
    metrics.rerank_tenants(now)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
