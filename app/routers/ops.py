"""Operations endpoints at the root: liveness, readiness (database reachable), Prometheus metrics."""
from __future__ import annotations

import logging
import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from app.deps import DatabaseDep
from app.errors import error_response

router = APIRouter(tags=["operations"])
log = logging.getLogger("coopgig.ops")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DatabaseDep) -> JSONResponse:
    try:
        await db.ping()
    except Exception:  # any driver/network failure means "not ready", never a 500
        log.warning("readiness check failed", exc_info=True)
        return error_response(503, "database_unavailable", "The database is not reachable")
    return JSONResponse({"status": "ready", "database": db.engine.dialect.name})


@router.get("/metrics")
async def metrics() -> Response:
    # With several uvicorn workers, PROMETHEUS_MULTIPROC_DIR makes every worker's samples visible here.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
