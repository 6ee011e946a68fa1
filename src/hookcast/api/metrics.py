"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from .. import metrics
from ..store import queue

router = APIRouter(tags=["hookcast"])
STALE_AFTER = 30.0  # seconds without a heartbeat before a dispatcher counts as gone


class WorkerOut(BaseModel):
    Id: str
    Kind: str
    Hostname: str
    Pid: int
    StartedAt: float
    HeartbeatAt: float
    InFlight: int
    Attempts: int
    Alive: bool


class HealthOut(BaseModel):
    Status: str
    Database: str
    Workers: list[WorkerOut]


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Liveness, the database, and every dispatcher's heartbeat",
)
async def health(request: Request) -> HealthOut:
    rows = await request.app.state.db.read(queue.list_workers)
    now = time.time()
    return HealthOut(
        Status="ok",
        Database="ok",
        Workers=[
            WorkerOut(
                Id=w["id"],
                Kind=w["kind"],
                Hostname=w["hostname"],
                Pid=w["pid"],
                StartedAt=w["started_at"],
                HeartbeatAt=w["heartbeat_at"],
                InFlight=w["in_flight"],
                Attempts=w["attempts"],
                Alive=now - w["heartbeat_at"] < STALE_AFTER,
            )
            for w in rows
        ],
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def prometheus(request: Request) -> Response:
    def snapshot(conn):  # type: ignore[no-untyped-def]
        return queue.queue_depth(conn), queue.webhooks_by_state(conn)

    metrics.store_snapshot.depth, metrics.store_snapshot.states = await request.app.state.db.read(
        snapshot
    )
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
