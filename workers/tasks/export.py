"""`export` queue: write one model version in one format, verify it, and offer it.

Thin: claim the row, gather what the version needs (base model, adapter, chat template,
lineage for the README), call workers.export, record size, sha256 and the verification.
`python -m workers.tasks.export PROJECT:vN --format F --out PATH` (what `tunelab export`
runs) does the same in this process, without the web or a worker running.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.error_codes import ExportError, error_of
from app.models import Export, JobStatus, ModelVersion, Project
from app.queue import TaskName
from app.services import exports as states
from app.services.model_choices import loader_source
from workers.artifacts import local_tree, publish_file
from workers.celery_app import celery_app
from workers.disk import disk_full_error
from workers.export import (
    ExportFailed,
    export_adapter,
    export_merged,
    sha256_file,
    verify_merged,
    zip_folder,
)
from workers.export.merged import PROBE_MESSAGES
from workers.reporting import RowHeartbeat

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    name: str  # slug:vN
    slug: str
    number: int
    base: str  # what the loader takes
    adapter_dir: Path
    template: str | None
    readme: dict[str, Any]


def _version_info(export_id: int) -> tuple[str, int, VersionInfo]:
    with session_scope() as session:
        export = session.get(Export, export_id)
        assert export is not None
        version = session.get(ModelVersion, export.version_id)
        assert version is not None
        project = session.get(Project, version.project_id)
        assert project is not None
        info = VersionInfo(
            name=f"{project.slug}:v{version.version}",
            slug=project.slug,
            number=version.version,
            base=loader_source(version.base_model),
            adapter_dir=local_tree(version.adapter_path),  # from the store if made elsewhere
            template=project.chat_template,
            readme={
                "name": f"{project.slug}-v{version.version}",
                "base_model": version.base_model,
                "training_config": version.config,
                "dataset": {"name": version.dataset_name, "sha256": version.dataset_sha256},
                "metrics": version.metrics,
                "library_versions": version.libraries,
            },
        )
        return export.format, version.id, info


def build(fmt: str, info: VersionInfo, folder: Path, progress: Any) -> tuple[Path, dict[str, Any]]:
    """Write `fmt` for the version into `folder`; returns (file, verification)."""
    from workers.ml.loading import load_model

    if not info.adapter_dir.is_dir():
        raise ExportFailed(
            f"the adapter folder {info.adapter_dir} is gone",
            ExportError.ADAPTER_MISSING,
            path=str(info.adapter_dir),
        )
    progress({"phase": "load"})
    loaded = load_model(info.base, data_dir=get_settings().data_dir, device="cpu", dtype="float32")
    name = f"{info.slug}-v{info.number}-{fmt}"
    if fmt == "adapter":
        out = export_adapter(
            info.adapter_dir, loaded.tokenizer, info.template, info.readme,
            folder / f"{name}.zip", progress=lambda phase: progress({"phase": phase}),
        )  # fmt: skip
        return out, {"check": "files", "ok": True}
    if fmt == "merged":
        merged_dir = folder / "merged"
        if merged_dir.exists():
            shutil.rmtree(merged_dir)
        export_merged(
            loaded.info.path, loaded.tokenizer, info.adapter_dir, info.template, merged_dir,
            progress=lambda phase: progress({"phase": phase}),
        )  # fmt: skip
        progress({"phase": "verify"})
        verification = {"check": "merged_logits", **verify_merged(
            loaded.info.path, info.adapter_dir, merged_dir, loaded.tokenizer,
            chat_template=info.template,
        )}  # fmt: skip
        if not verification["ok"]:
            raise ExportFailed(
                f"merged logits differ from base + adapter by {verification['max_abs_diff']}",
                ExportError.VERIFY_FAILED,
                check="merged_logits",
                detail=f"max |Δlogit| {verification['max_abs_diff']} > {verification['tolerance']}",
            )
        progress({"phase": "zip"})
        return zip_folder(merged_dir, folder / f"{name}.zip"), verification
    return _gguf(fmt, info, loaded, folder, progress)


GGUF_TYPES = {"gguf-f16": "f16", "gguf-q8_0": "q8_0", "gguf-q4_k_m": "q4_k_m"}
# How far a quantized file's perplexity may drift from the f16 file's (relative), measured on
# SmolLM2 and the Zhangjiajie held-out rows: q8_0 +0.26 %, Q4_K_M +9.5 % (docs/export.md).
PERPLEXITY_TOLERANCE = {"q8_0": 0.02, "q4_k_m": 0.15}
PROBE_ROWS = 5


def _merged_dir(info: VersionInfo, loaded: Any, folder: Path, progress: Any) -> Path:
    """The verified merged folder of the version (the merged export's, reused when there)."""
    merged = folder / "merged"
    if (merged / "config.json").is_file():
        return merged
    export_merged(loaded.info.path, loaded.tokenizer, info.adapter_dir, info.template, merged,
                  progress=lambda phase: progress({"phase": phase}))  # fmt: skip
    check = verify_merged(loaded.info.path, info.adapter_dir, merged, loaded.tokenizer,
                          chat_template=info.template)  # fmt: skip
    if not check["ok"]:
        shutil.rmtree(merged, ignore_errors=True)
        raise ExportFailed(
            "the merged model does not match base + adapter",
            ExportError.VERIFY_FAILED,
            check="merged_logits",
            detail=f"max |Δlogit| {check['max_abs_diff']} > {check['tolerance']}",
        )
    return merged


def _probe_texts(merged: Path) -> list[str]:
    """A few general-sample conversations as the model reads them (its chat template)."""
    from transformers import AutoTokenizer

    from workers.evaluation.run import general_rows

    tokenizer = AutoTokenizer.from_pretrained(merged)
    return [
        str(tokenizer.apply_chat_template(row.conversation, tokenize=False))
        for row in general_rows()[:PROBE_ROWS]
    ]


def _gguf(
    fmt: str, info: VersionInfo, loaded: Any, folder: Path, progress: Any
) -> tuple[Path, dict[str, Any]]:
    from workers.export.gguf import (
        convert_to_gguf,
        gguf_perplexity,
        quantize,
        read_chat_template,
        read_metadata,
        verify_gguf_greedy,
    )
    from workers.export.modelfile import ollama_modelfile

    merged = _merged_dir(info, loaded, folder, progress)
    qtype = GGUF_TYPES[fmt]
    f16 = folder / f"{info.slug}-v{info.number}-gguf-f16.gguf"
    if not f16.is_file():
        progress({"phase": "convert"})
        convert_to_gguf(merged, f16, "f16", model_name=info.name)
    out = folder / f"{info.slug}-v{info.number}-{fmt}.gguf"
    progress({"phase": "verify"})
    if qtype == "f16":
        check = verify_gguf_greedy(f16, merged, PROBE_MESSAGES)
        verification = {
            "check": "gguf_greedy",
            "ok": check["ok"],
            "tokens": len(check["hf_tokens"]),
            "first_mismatch": check["first_mismatch"],
        }
        if not check["ok"]:
            raise ExportFailed(
                "llama.cpp's greedy answer differs from the merged model's",
                ExportError.VERIFY_FAILED, check="gguf_greedy",
                detail=f"first different token at {check['first_mismatch']}",
            )  # fmt: skip
    else:
        progress({"phase": "quantize"})
        if qtype == "q8_0":
            convert_to_gguf(merged, out, "q8_0", model_name=info.name)
        else:
            quantize(f16, out, qtype)
        progress({"phase": "verify"})
        texts = _probe_texts(merged)
        base_ppl = gguf_perplexity(f16, texts)["perplexity"]
        ppl = gguf_perplexity(out, texts)["perplexity"]
        drift = ppl / base_ppl - 1
        verification = {"check": "gguf_perplexity", "perplexity": round(ppl, 4),
                        "f16_perplexity": round(base_ppl, 4), "drift": round(drift, 5),
                        "tolerance": PERPLEXITY_TOLERANCE[qtype],
                        "ok": drift <= PERPLEXITY_TOLERANCE[qtype]}  # fmt: skip
        if not verification["ok"]:
            out.unlink(missing_ok=True)
            raise ExportFailed(
                f"{qtype} perplexity drifts {drift:.1%} from f16",
                ExportError.VERIFY_FAILED, check="gguf_perplexity",
                detail=f"{drift:.1%} > {PERPLEXITY_TOLERANCE[qtype]:.0%}",
            )  # fmt: skip
        verification["chat_template"] = read_chat_template(out) is not None
    target = f16 if qtype == "f16" else out
    # The Ollama Modelfile beside the GGUF (downloaded with ?part=modelfile).
    try:
        add_bos = read_metadata(target, ["tokenizer.ggml.add_bos_token"]).get(
            "tokenizer.ggml.add_bos_token"
        )
        template = read_chat_template(target) or ""
        modelfile = ollama_modelfile(
            target.name, template, eos_token=loaded.tokenizer.eos_token or "", add_bos=add_bos
        )
        staged = target.with_name(f".{target.stem}.Modelfile.tmp")
        try:
            staged.write_text(modelfile.text, encoding="utf-8")
            os.replace(staged, modelfile_path(target))
        finally:
            staged.unlink(missing_ok=True)  # a full disk leaves no half-written Modelfile
        verification["modelfile"] = modelfile.family
    except ExportFailed as exc:  # an unsupported chat format: the GGUF still stands alone
        verification["modelfile"] = None
        verification["modelfile_error"] = str(exc)
    return target, verification


def modelfile_path(gguf_file: Path) -> Path:
    return gguf_file.with_suffix(".Modelfile")


def run_export(export_id: int) -> bool:
    """Claim, build, verify and record one export; False when it was not queued."""
    with session_scope() as session:
        if not states.claim(session, export_id):
            # A redelivered message (or the reconciler's copy) of an export already done or
            # under way: the compare-and-set claim lets exactly one delivery write the file.
            logger.info("export %s is not queued (redelivered or done); skipping", export_id)
            return False
    fmt, version_id, info = _version_info(export_id)
    folder = get_settings().paths.export_dir(version_id)
    folder.mkdir(parents=True, exist_ok=True)

    def progress(value: dict[str, Any]) -> None:
        try:
            with session_scope() as session:
                states.record_progress(session, export_id, value)
        except Exception:
            logger.warning("export %s: progress not recorded", export_id)

    beat = partial(states.heartbeat, export_id=export_id)
    try:
        with RowHeartbeat(beat, get_settings().job_heartbeat_s, f"export {export_id}"):
            path, verification = build(fmt, info, folder, progress)
            # The web (maybe on another machine) serves the file from the artifact store.
            publish_file(path)
            if modelfile_path(path).is_file():
                publish_file(modelfile_path(path))
    except Exception as exc:
        # The writers removed their partial files (temp names, renamed only when complete); a
        # full disk is said as such, without the paths the OS error names.
        full = disk_full_error(exc, folder)
        if full is not None:
            logger.warning("export %s: %s", export_id, full)
            exc = full
        elif not isinstance(exc, ExportFailed):
            logger.exception("export %s failed", export_id)
        code, params = error_of(exc)
        if code == "internal":
            code, params = ExportError.EXPORT_FAILED, {"detail": str(exc)[:1000]}
        with session_scope() as session:
            states.fail(session, export_id, code, str(exc), params)
        return True
    with session_scope() as session:
        states.finish(
            session,
            export_id,
            file_name=path.name,
            size_bytes=path.stat().st_size,
            sha256=sha256_file(path),
            verification=verification,
        )
    return True


@celery_app.task(name=TaskName.EXPORT, acks_late=True, max_retries=0)
def export_version(export_id: int) -> None:
    run_export(export_id)


def main(argv: list[str] | None = None) -> int:
    """`tunelab export PROJECT:vN --format F --out PATH`."""
    parser = argparse.ArgumentParser(prog="tunelab export")
    parser.add_argument("name")
    parser.add_argument("--format", required=True, choices=states.FORMATS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    slug, _, label = args.name.partition(":")
    if not label.startswith("v") or not label[1:].isdigit():
        sys.stderr.write("tunelab export: name the version as PROJECT:vN, e.g. guide:v2\n")
        return 2
    from app import migrate

    migrate.upgrade()
    with session_scope() as session:
        version = session.scalar(
            select(ModelVersion)
            .join(Project, Project.id == ModelVersion.project_id)
            .where(Project.slug == slug, ModelVersion.version == int(label[1:]))
        )
        if version is None:
            sys.stderr.write(f"tunelab export: no version {args.name} (see the project page)\n")
            return 1
        export = session.scalar(
            select(Export).where(Export.version_id == version.id, Export.format == args.format)
        )
        if export is None:
            export = Export(version_id=version.id, format=args.format)
            session.add(export)
        if states.path_of(export) is None and export.status != JobStatus.RUNNING:
            export.status = JobStatus.QUEUED
        session.flush()
        export_id = export.id
    run_export(export_id)
    with session_scope() as session:
        export = session.get(Export, export_id)
        assert export is not None
        path = states.path_of(export)
        if path is None:
            sys.stderr.write(f"tunelab export: failed: {export.error}\n")
            return 1
        shutil.copyfile(path, args.out)
        sys.stdout.write(f"{args.out}  {export.size_bytes} bytes  sha256 {export.sha256}\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(main())
