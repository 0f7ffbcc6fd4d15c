"""Browser pages for one model version: what it is (base model, data, lineage, results, config)
and its Exports card (ask for a format, follow it while it runs, download it when ready).

The card is one partial (`#exports-card`) that the page includes, the htmx poll re-fetches
every 2 s while an export is queued or running, and the Export form's POST returns. The JSON
API for the same exports is api_exports.py; both go through app.services.exports.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, Response

from app.errors import InvalidInput
from app.models import Export, JobStatus, ModelVersion, Project
from app.schemas.common import RowId
from app.services import evaluations as evaluation_service
from app.services import exports as service
from app.services import lineage, model_choices
from app.web.deps import CurrentUser, IsHtmx, SessionDep, SettingsDep, TranslatorDep
from app.web.errors import field_details
from app.web.routes.pages_projects import redirect
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


def row_state(export: Export | None) -> str:
    """What a format's row shows: none (never asked), queued, running, ready, failed, or
    missing (it succeeded but its file has since been deleted: export it again)."""
    if export is None:
        return "none"
    if export.status == JobStatus.SUCCEEDED:
        return "ready" if service.is_ready(export) else "missing"
    return str(export.status)


def exports_context(session: SessionDep, version: ModelVersion, project: Project) -> dict[str, Any]:
    rows = [
        {"format": fmt, "export": export, "state": row_state(export)}
        for fmt, export in service.list_exports(session, version).items()
    ]
    return {
        "version": version,
        "project": project,
        "rows": rows,
        # The card polls only while something can still change by itself.
        "polling": any(r["state"] in ("queued", "running") for r in rows),
        "download_base": f"/api/versions/{version.id}/download?format=",
    }


@router.get("/versions/{version_id}")
def version_page(
    version_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    version, project = service.get_version(session, user, version_id)
    headlines = evaluation_service.latest_headlines(session, project)
    return render(
        request,
        "pages/version.html",
        model=model_choices.find_choice(session, user, version.base_model, settings.data_dir),
        chain=lineage.chain_of(session, version),
        headline=headlines.get(f"v{version.version}"),
        **exports_context(session, version, project),
    )


@router.get("/versions/{version_id}/exports")
def exports_card(
    version_id: RowId, request: Request, session: SessionDep, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    version, project = service.get_version(session, user, version_id)
    return render(
        request, "partials/version_exports.html", **exports_context(session, version, project)
    )


@router.post("/versions/{version_id}/exports")
def request_export(
    version_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    htmx: IsHtmx,
    format: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    version, project = service.get_version(session, user, version_id)
    try:
        service.request_export(session, version, format)
    except InvalidInput as exc:  # only a hand-made request names an unknown format
        message = " ".join(d["message"] for d in field_details(exc.errors, t))
        context = exports_context(session, version, project)
        return render(
            request, "partials/version_exports.html", status_code=422, error=message, **context
        )
    if not htmx:
        return redirect(f"/versions/{version.id}#exports-card", htmx)
    return render(
        request, "partials/version_exports.html", **exports_context(session, version, project)
    )
