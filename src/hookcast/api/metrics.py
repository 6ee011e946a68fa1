"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import metrics
from ..store import queue

router = APIRouter(tags=["hookcast"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus(request: Request) -> Response:
    def snapshot(conn):  # type: ignore[no-untyped-def]
        return queue.queue_depth(conn), queue.webhooks_by_state(conn)

    metrics.store_snapshot.depth, metrics.store_snapshot.states = await request.app.state.db.run(snapshot)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
