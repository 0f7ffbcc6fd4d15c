"""Model version lineage: the version a new run continues from, and the "v3 ← v2 ← v1" chains
that pages show. Called by app.services.jobs (job creation) and the project and job pages.

A run that continues from a version starts its LoRA weights from that version's adapter, so the
adapter's shape (rank, target modules, DoRA) and scale (alpha, rsLoRA) must be the version's:
those fields are taken from the version's config, whatever the form said. Everything else
(learning rate, epochs, data, dropout) is the new run's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import FieldError, InvalidInput
from app.models import ModelVersion, Project, TrainingJob

ADAPTER_FIELDS = ("rank", "alpha", "target_modules", "use_dora", "use_rslora")
# A chain longer than this is cut (ids are never reused, so a loop cannot happen; this is a cap).
MAX_DEPTH = 50

Chain = list[int | None]  # version numbers, newest first; None: a parent that was deleted


def parent_version(session: Session, project: Project, number: int) -> ModelVersion:
    """Version `number` of the project, usable as a starting point, else a `continue_from`
    field error: it must exist and be trained on the project's current base model."""
    version = session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.version == number
        )
    )
    if version is None:
        raise InvalidInput(
            [FieldError("continue_from", "errors.continue_from_not_found", {"version": number})]
        )
    if version.base_model != project.base_model:
        params = {"version": number, "model": version.base_model, "base": project.base_model}
        raise InvalidInput([FieldError("continue_from", "errors.continue_from_other_base", params)])
    return version


def inherit_adapter(raw_config: dict[str, Any], parent: ModelVersion) -> dict[str, Any]:
    """The config with the parent's adapter fields (ADAPTER_FIELDS) in place of its own."""
    inherited = {k: parent.config[k] for k in ADAPTER_FIELDS if k in parent.config}
    return {**raw_config, **inherited}


def version_number(session: Session, version_id: int | None) -> int | None:
    """The project-level number (2 for v2) of a version id; None when gone or not given."""
    if version_id is None:
        return None
    version = session.get(ModelVersion, version_id)
    return version.version if version is not None else None


def chains(versions: list[ModelVersion]) -> dict[int, Chain]:
    """Each version's chain, from the project's versions (parents are always in the list)."""
    by_id = {v.id: v for v in versions}
    return {v.id: _walk(v, by_id.get) for v in versions}


def chain_of(session: Session, version: ModelVersion) -> Chain:
    return _walk(version, lambda vid: session.get(ModelVersion, vid))


def _walk(version: ModelVersion, find: Any) -> Chain:
    out: Chain = [version.version]
    parent_id = version.parent_id
    while parent_id is not None and len(out) < MAX_DEPTH:
        parent = find(parent_id)
        if parent is None:
            out.append(None)
            break
        out.append(parent.version)
        parent_id = parent.parent_id
    return out


def job_lineage(session: Session, job: TrainingJob) -> dict[str, Any]:
    """For the job page: the version the job produced (if any), the chain from it (or, before
    it exists, from the version the job continues from), and that parent's number."""
    version = session.scalar(
        select(ModelVersion).where(ModelVersion.job_id == job.id).order_by(ModelVersion.id.desc())
    )
    parent = session.get(ModelVersion, job.parent_version_id) if job.parent_version_id else None
    chain: Chain = []
    if version is not None:
        chain = chain_of(session, version)
    elif parent is not None:
        chain = chain_of(session, parent)
    elif job.parent_version_id is not None:
        chain = [None]
    return {
        "version": version,
        "chain": chain,
        "continues_from": job.parent_version_id is not None,
        "parent_number": parent.version if parent is not None else None,
    }
