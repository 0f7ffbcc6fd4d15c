"""GET /healthz (JSON) and the header's worker-status fragment (polled by every page)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse

from app.services.health import check_health
from app.web.deps import SessionDep, TranslatorDep
from app.web.templating import render

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> JSONResponse:
    health = check_health(session)
    body = {
        "status": "ok" if health.ok else "degraded",
        "database": {"ok": health.database},
        "redis": {"ok": health.redis},
        "workers": {"ok": bool(health.workers), "alive": health.workers},
        "queues": sorted(health.queues_served()),
        # What `tunelab up` runs: each child's pid, restarts, last exit code (empty when the
        # pieces run under another process manager: compose, systemd).
        "supervisors": health.supervisors,
        "problems": health.problems,
    }
    return JSONResponse(body, status_code=200 if health.database and health.redis else 503)


@router.get("/partials/status-banner", include_in_schema=False)
def status_banner(request: Request, session: SessionDep, _t: TranslatorDep) -> HTMLResponse:
    return render(request, "partials/status_banner.html", health=check_health(session))
