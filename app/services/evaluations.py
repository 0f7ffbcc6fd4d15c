"""Evaluations: create one (which models, which test set, which decoding), read it, cancel it,
and turn its per-example rows into tables and downloads. The work itself runs on the `eval`
queue (workers/tasks/evaluate.py); status moves go through `evaluation_states`."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import Conflict, FieldError, InvalidInput, NotFound
from app.models import (
    ComparisonVote,
    Dataset,
    Evaluation,
    EvaluationExample,
    JobStatus,
    ModelVersion,
    Project,
    TrainingJob,
    User,
)
from app.models.job import TERMINAL
from app.queue import TaskName, enqueue_or_fail
from app.services import evaluation_states as states
from app.services.access import project_scope
from app.services.generation import resolve_model

MAX_NEW_TOKENS_LIMIT = 2048
# Lower is better for perplexity; higher for the overlap scores.
LOWER_IS_BETTER = ("perplexity", "general_perplexity")
HIGHER_IS_BETTER = ("bleu4", "rouge1", "rouge2", "rougeL")
SORT_METRICS = ("perplexity", "bleu4", "rougeL")
_LABEL = re.compile(r"^(base|v[1-9][0-9]*)$")


def version_labels(session: Session, project: Project) -> list[str]:
    """ "base" and every version of the project, oldest first."""
    numbers = session.scalars(
        select(ModelVersion.version)
        .where(ModelVersion.project_id == project.id)
        .order_by(ModelVersion.version)
    )
    return ["base", *(f"v{n}" for n in numbers)]


def _source(
    session: Session, project: Project, dataset_id: int | None, job_id: int | None
) -> tuple[dict[str, Any], str, str]:
    """(what the worker reads, a name for people, a checksum) of the test set."""
    if (dataset_id is None) == (job_id is None):
        raise InvalidInput([FieldError("dataset_id", "errors.eval_pick_test_set")])
    if dataset_id is not None:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or dataset.project_id != project.id:
            raise InvalidInput([FieldError("dataset_id", "errors.pick_dataset")])
        return _dataset_source(dataset.id), dataset.name, dataset.sha256
    job = session.get(TrainingJob, job_id)
    if job is None or job.project_id != project.id:
        raise InvalidInput([FieldError("job_id", "errors.eval_pick_job")])
    if job.val_dataset_id is not None:
        dataset = session.get(Dataset, job.val_dataset_id)
        if dataset is None:
            raise InvalidInput([FieldError("job_id", "errors.eval_job_no_validation")])
        return _dataset_source(dataset.id), dataset.name, dataset.sha256
    val_percent = int(job.config.get("val_percent", 0))
    if val_percent <= 0 or job.dataset_id is None:
        raise InvalidInput([FieldError("job_id", "errors.eval_job_no_validation")])
    split = {"val_percent": val_percent, "seed": int(job.config.get("seed", 42))}
    source = {**_dataset_source(job.dataset_id), "split": split}
    return source, f"{job.dataset_name} · {val_percent} %", job.dataset_sha256


def _dataset_source(dataset_id: int) -> dict[str, Any]:
    """The test rows by dataset id: a worker on another machine fetches them from the artifact
    store (workers.artifacts.local_dataset)."""
    return {"dataset_id": dataset_id}


def create_evaluation(
    session: Session,
    project: Project,
    *,
    dataset_id: int | None = None,
    job_id: int | None = None,
    versions: list[str] | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    include_general: bool = False,
) -> Evaluation:
    available = version_labels(session, project)
    wanted = list(dict.fromkeys(versions)) if versions else available
    errors = []
    unknown = [label for label in wanted if not _LABEL.match(label) or label not in available]
    if unknown:
        errors.append(
            FieldError("versions", "errors.eval_unknown_versions", {"versions": ", ".join(unknown)})
        )
    elif not wanted:
        errors.append(FieldError("versions", "errors.eval_no_versions"))
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        errors.append(
            FieldError(
                "max_new_tokens", "errors.eval_max_new_tokens", {"limit": MAX_NEW_TOKENS_LIMIT}
            )
        )
    if not 0 <= temperature <= 2:
        errors.append(FieldError("temperature", "errors.eval_temperature"))
    if not 0 < top_p <= 1:
        errors.append(FieldError("top_p", "errors.eval_top_p"))
    if errors:
        raise InvalidInput(errors)
    source, name, sha = _source(session, project, dataset_id, job_id)
    # The report lists models in a stable order: base first, then versions by number.
    wanted.sort(key=lambda label: -1 if label == "base" else int(label[1:]))
    refs = [resolve_model(session, project, label) for label in wanted]
    evaluation = Evaluation(
        project_id=project.id,
        dataset_id=dataset_id,
        job_id=job_id,
        source_name=name[:255],
        source_sha256=sha,
        versions=wanted,
        settings={
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "include_general": include_general,
            "base": refs[0].base,
            "source": source,
            "models": [
                {
                    "label": ref.label,
                    "adapter_id": ref.adapter_id,
                    "adapter_path": ref.adapter_path,
                    "template": ref.template,
                }
                for ref in refs
            ],
        },
        status=JobStatus.QUEUED,
    )
    session.add(evaluation)
    session.commit()
    enqueue_or_fail(session, evaluation, TaskName.EVALUATE, states.fail)
    return evaluation


def get_evaluation(session: Session, owner: User, evaluation_id: int) -> Evaluation:
    evaluation = session.scalar(
        select(Evaluation)
        .join(Project, Project.id == Evaluation.project_id)
        .where(Evaluation.id == evaluation_id, project_scope(owner))
    )
    if evaluation is None:
        raise NotFound("errors.evaluation_not_found", id=evaluation_id)
    return evaluation


def list_evaluations(session: Session, project: Project) -> list[Evaluation]:
    query = select(Evaluation).where(Evaluation.project_id == project.id)
    return list(session.scalars(query.order_by(Evaluation.id.desc())))


def request_cancel(session: Session, evaluation: Evaluation) -> Evaluation:
    """A queued evaluation is cancelled at once; a running one stops within a second or two."""
    if evaluation.status in TERMINAL:
        raise Conflict("errors.evaluation_finished", status=evaluation.status)
    # The flag first: a worker that claims it meanwhile stops at its next check.
    evaluation.cancel_requested = True
    session.commit()
    states.cancel(session, evaluation.id, only_queued=True)
    session.refresh(evaluation)
    return evaluation


def delete_evaluation(session: Session, evaluation: Evaluation) -> None:
    if evaluation.status not in TERMINAL:
        raise Conflict("errors.evaluation_running")
    session.execute(delete(ComparisonVote).where(ComparisonVote.evaluation_id == evaluation.id))
    session.delete(evaluation)
    session.commit()


def best_by_metric(results: list[dict[str, Any]]) -> dict[str, str]:
    """metric -> the version with the best value (ties: the first listed)."""
    best: dict[str, str] = {}
    for metric in (*LOWER_IS_BETTER, *HIGHER_IS_BETTER):
        scored = [(r[metric], r["version"]) for r in results if r.get(metric) is not None]
        if len(scored) < 2:
            continue
        pick = min if metric in LOWER_IS_BETTER else max
        value = pick(v for v, _ in scored)
        best[metric] = next(label for v, label in scored if v == value)
    return best


def examples(
    session: Session,
    evaluation: Evaluation,
    *,
    sort: str | None = None,
    subset: str = "domain",
) -> list[EvaluationExample]:
    """The evaluation's rows; `sort` = "<version>:<metric>" puts the worst first (highest
    perplexity, lowest BLEU/ROUGE), rows without that score last."""
    rows = list(
        session.scalars(
            select(EvaluationExample)
            .where(EvaluationExample.evaluation_id == evaluation.id)
            .where(EvaluationExample.subset == subset)
            .order_by(EvaluationExample.position)
        )
    )
    if not sort:
        return rows
    label, _, metric = sort.partition(":")
    if label not in evaluation.versions or metric not in SORT_METRICS:
        raise InvalidInput([FieldError("sort", "errors.eval_bad_sort", {"sort": sort})])
    worse_is_higher = metric in LOWER_IS_BETTER

    def key(row: EvaluationExample) -> tuple[int, float]:
        value = (row.outputs.get(label) or {}).get(metric)
        if value is None:
            return (1, 0.0)
        return (0, -value if worse_is_higher else value)

    return sorted(rows, key=key)


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The question as people read it: the last user turn (earlier turns are in the JSONL)."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


EXAMPLE_FIELDS = ("answer", "perplexity", "bleu4", "rougeL", "completion_tokens", "hit_limit")


def example_records(
    evaluation: Evaluation, rows: list[EvaluationExample]
) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {
            "position": row.position,
            "subset": row.subset,
            "messages": row.messages,
            "prompt": prompt_text(row.messages),
            "reference": row.reference,
            "outputs": {
                label: {k: (row.outputs.get(label) or {}).get(k) for k in EXAMPLE_FIELDS}
                for label in evaluation.versions
            },
        }


def examples_jsonl(evaluation: Evaluation, rows: list[EvaluationExample]) -> str:
    return "".join(
        json.dumps(record, ensure_ascii=False) + "\n"
        for record in example_records(evaluation, rows)
    )


def examples_csv(evaluation: Evaluation, rows: list[EvaluationExample]) -> str:
    """One line per example, one group of columns per version (UTF-8 with a BOM, so Excel
    reads Chinese text correctly)."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["position", "prompt", "reference"]
    for label in evaluation.versions:
        header += [f"{label}_{field}" for field in EXAMPLE_FIELDS]
    writer.writerow(header)
    for record in example_records(evaluation, rows):
        line = [record["position"], record["prompt"], record["reference"]]
        for label in evaluation.versions:
            line += [record["outputs"][label][field] for field in EXAMPLE_FIELDS]
        writer.writerow(line)
    return "\ufeff" + out.getvalue()


def latest_headlines(session: Session, project: Project) -> dict[str, dict[str, Any]]:
    """version label -> its figures from the project's latest finished evaluation that
    included it (for the project page's version list)."""
    found: dict[str, dict[str, Any]] = {}
    query = (
        select(Evaluation)
        .where(Evaluation.project_id == project.id, Evaluation.status == JobStatus.SUCCEEDED)
        .order_by(Evaluation.id.desc())
        .limit(20)
    )
    for evaluation in session.scalars(query):
        for result in evaluation.results or []:
            found.setdefault(result["version"], {**result, "evaluation_id": evaluation.id})
    return found
