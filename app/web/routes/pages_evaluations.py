"""Browser pages for evaluations: a project's list with the new-evaluation form, one
evaluation's report (live progress, metrics table, charts, per-example table) and cancel.
The blind review's pages are in pages_reviews.py; the JSON API in api_evaluations.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from app.errors import AppError, FieldError, InvalidInput
from app.i18n import Translator
from app.models import Evaluation, JobStatus, Project, TrainingJob
from app.schemas.common import RowId
from app.services import datasets as dataset_service
from app.services import evaluations as service
from app.services import jobs as job_service
from app.services import reviews
from app.services.votes import QUALITIES
from app.web.deps import CurrentUser, IsHtmx, ProjectDep, SessionDep, TranslatorDep
from app.web.errors import field_details
from app.web.routes.pages_projects import redirect
from app.web.templating import render, templates

router = APIRouter(tags=["pages"], include_in_schema=False)
templates.env.globals["prompt_text"] = service.prompt_text

# Columns of the results table, in order; the charts group the first two and the overlap ones.
PERPLEXITY_METRICS = ("perplexity", "general_perplexity")
OVERLAP_METRICS = ("bleu4", "rouge1", "rouge2", "rougeL")
TABLE_METRICS = (*PERPLEXITY_METRICS, *OVERLAP_METRICS, "avg_answer_tokens", "hit_limit")
EXAMPLES_SHOWN = 200  # rows in the page's table; the downloads hold every row
DEFAULTS = {"max_new_tokens": 256, "temperature": 0, "top_p": 1, "include_general": False}


def validation_jobs(session: SessionDep, project: Project) -> list[TrainingJob]:
    """Finished runs that held data out: their validation split is a test set to offer."""
    return [
        job
        for job in job_service.list_jobs(session, project)
        if job.status == JobStatus.SUCCEEDED
        and (job.val_dataset_id is not None or int(job.config.get("val_percent", 0)) > 0)
    ]


def form_context(session: SessionDep, project: Project, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "project": project,
        "datasets": dataset_service.list_datasets(session, project),
        "val_jobs": validation_jobs(session, project),
        "labels": service.version_labels(session, project),
        "values": values,
        "max_tokens_limit": service.MAX_NEW_TOKENS_LIMIT,
    }


def default_values(context: dict[str, Any]) -> dict[str, Any]:
    # Newest dataset first: a held-out file is usually uploaded after the training set.
    test_set = ""
    if context["datasets"]:
        test_set = f"dataset:{max(d.id for d in context['datasets'])}"
    elif context["val_jobs"]:
        test_set = f"job:{context['val_jobs'][0].id}"
    return {**DEFAULTS, "test_set": test_set, "versions": context["labels"]}


def _number(form: FormData, name: str, cast: type[int] | type[float]) -> int | float:
    # Unreadable input becomes -1, which every range check rejects with its own message.
    try:
        return cast(str(form.get(name, DEFAULTS[name])).strip())
    except ValueError:
        return -1


def parse_form(form: FormData) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form → (create_evaluation's keyword arguments, the values to show again)."""
    kind, _, raw_id = str(form.get("test_set", "")).partition(":")
    source_id = int(raw_id) if raw_id.isdigit() else None
    args: dict[str, Any] = {
        "dataset_id": source_id if kind == "dataset" else None,
        "job_id": source_id if kind == "job" else None,
        "versions": [str(v) for v in form.getlist("versions")],
        "max_new_tokens": _number(form, "max_new_tokens", int),
        "temperature": _number(form, "temperature", float),
        "top_p": _number(form, "top_p", float),
        "include_general": form.get("include_general") in ("on", "true", "1"),
    }
    values = {k: form.get(k, "") for k in ("test_set", "max_new_tokens", "temperature", "top_p")}
    values.update(versions=args["versions"], include_general=args["include_general"])
    return args, values


def form_errors(exc: InvalidInput, t: Translator) -> dict[str, str]:
    errors: dict[str, str] = {}
    for detail in field_details(exc.errors, t):
        # Both halves of the test-set choice are one select on the page.
        field = "test_set" if detail["field"] in ("dataset_id", "job_id") else detail["field"]
        errors.setdefault(field, detail["message"])
    return errors


@router.get("/projects/{project_id}/evaluations")
def evaluations_page(
    request: Request, project: ProjectDep, session: SessionDep, _t: TranslatorDep
) -> HTMLResponse:
    context = form_context(session, project, {})
    context["values"] = default_values(context)
    items = service.list_evaluations(session, project)
    return render(request, "pages/evaluations.html", evaluations=items, errors={}, **context)


@router.post("/projects/{project_id}/evaluations")
async def create_evaluation(
    request: Request, project: ProjectDep, session: SessionDep, t: TranslatorDep, htmx: IsHtmx
) -> Response:
    args, values = parse_form(await request.form())
    try:
        if not args["versions"]:  # the service reads "no list" as "every model"
            raise InvalidInput([FieldError("versions", "errors.eval_no_versions")])
        evaluation = service.create_evaluation(session, project, **args)
    except InvalidInput as exc:
        context = form_context(session, project, values)
        name = "partials/evaluation_form.html" if htmx else "pages/evaluations.html"
        items = [] if htmx else service.list_evaluations(session, project)
        errors = form_errors(exc, t)
        return render(request, name, status_code=422, evaluations=items, errors=errors, **context)
    return redirect(f"/evaluations/{evaluation.id}", htmx)


def examples_context(
    session: SessionDep, evaluation: Evaluation, t: Translator, sort: str | None
) -> dict[str, Any]:
    rows = service.examples(session, evaluation, sort=sort or None)
    options = [
        (
            f"{label}:{m}",
            t("evaluations.sort_worst", version=model_name(t, label), metric=metric_name(t, m)),
        )
        for label in evaluation.versions
        for m in service.SORT_METRICS
    ]
    return {
        "evaluation": evaluation,
        "rows": rows[:EXAMPLES_SHOWN],
        "row_count": len(rows),
        "sort": sort or "",
        "sort_options": options,
    }


def metric_name(t: Translator, metric: str) -> str:
    return t(f"evaluations.metric_{metric}")


def model_name(t: Translator, label: str) -> str:
    return t("evaluations.base_model") if label == "base" else label


def chart_groups(t: Translator, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Grouped bars, one trace per model: {perplexity: {...}, overlap: {...}} for the JS."""

    def group(metrics: tuple[str, ...]) -> dict[str, Any]:
        shown = [m for m in metrics if any(r.get(m) is not None for r in results)]
        return {
            "categories": [metric_name(t, m) for m in shown],
            "series": [
                {"name": model_name(t, r["version"]), "values": [r.get(m) for m in shown]}
                for r in results
            ],
        }

    return {"perplexity": group(PERPLEXITY_METRICS), "overlap": group(OVERLAP_METRICS)}


@router.get("/evaluations/{evaluation_id}")
def evaluation_page(
    evaluation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    sort: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    results = evaluation.results or []
    context: dict[str, Any] = {"evaluation": evaluation, "results": results}
    if evaluation.status == JobStatus.SUCCEEDED:
        context.update(examples_context(session, evaluation, t, sort))
        context.update(
            best=service.best_by_metric(results),
            metrics=[m for m in TABLE_METRICS if any(r.get(m) is not None for r in results)],
            charts=chart_groups(t, results),
            tally=reviews.tally(session, evaluation),
            qualities=QUALITIES,
        )
    project = session.get(Project, evaluation.project_id)
    return render(request, "pages/evaluation.html", project=project, **context)


@router.get("/evaluations/{evaluation_id}/examples")
def examples_partial(
    evaluation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    sort: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The per-example table alone, in the order `sort` asks (htmx swaps it in)."""
    evaluation = service.get_evaluation(session, user, evaluation_id)
    context = examples_context(session, evaluation, t, sort)
    return render(request, "partials/evaluation_examples.html", **context)


@router.post("/evaluations/{evaluation_id}/cancel")
def cancel_evaluation(
    evaluation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    error = None
    try:
        service.request_cancel(session, evaluation)
    except AppError as exc:
        error = t(exc.key, **exc.params)
    session.refresh(evaluation)
    return render(request, "partials/evaluation_status.html", evaluation=evaluation, error=error)
