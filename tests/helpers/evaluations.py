"""Evaluations written straight to the database (no worker), for page and browser tests.

A finished evaluation of "base", "v1" and "v2" on four examples whose per-example scores are
chosen so that every sort puts a different example first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.models import Evaluation, EvaluationExample, JobStatus
from tests.helpers.versions import add_version

VERSIONS = ["base", "v1", "v2"]
# position -> (v1 perplexity, v1 rougeL): worst v1 perplexity is position 2, worst ROUGE-L 3.
V1_SCORES = {0: (3.0, 40.0), 1: (5.0, 20.0), 2: (9.0, 30.0), 3: (4.0, 10.0)}
RESULTS = [
    {"version": "base", "n": 4, "perplexity": 12.5, "general_perplexity": 8.0, "bleu4": 5.0,
     "rouge1": 20.0, "rouge2": 8.0, "rougeL": 18.0, "avg_answer_tokens": 40.0, "hit_limit": 2},
    {"version": "v1", "n": 4, "perplexity": 4.25, "general_perplexity": 8.5, "bleu4": 21.0,
     "rouge1": 41.0, "rouge2": 22.0, "rougeL": 25.0, "avg_answer_tokens": 22.0, "hit_limit": 0},
    {"version": "v2", "n": 4, "perplexity": 5.5, "general_perplexity": 9.1, "bleu4": 23.5,
     "rouge1": 39.0, "rouge2": 20.0, "rougeL": 26.5, "avg_answer_tokens": 25.0, "hit_limit": 1},
]  # fmt: skip
METHODS = {
    "perplexity": {
        "level": "corpus",
        "formula": "exp(total answer-token NLL / total answer tokens)",
    },
    "bleu4": {"library": "sacrebleu", "version": "2.4.3", "tokenize": "zh", "level": "corpus"},
    "rouge": {"library": "rouge-score", "version": "0.1.2", "tokenizer": "jieba 0.42.1 words"},
    "language": "zh",
    "skipped_rows": 1,
    "general_rows": 20,
}
SETTINGS = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0,
            "include_general": True}  # fmt: skip


def add_versions(session: Session, project_id: int, count: int = 2) -> None:
    for number in range(1, count + 1):
        add_version(
            session,
            project_id,
            number,
            f"/nowhere/adapter-{number}",
            "smollm2-135m-instruct",
            dataset_name="train.jsonl",
            metrics={"train_loss": 1.5, "eval_loss": 1.75},
        )


def _outputs(position: int) -> dict[str, Any]:
    ppl, rouge = V1_SCORES[position]
    return {
        "base": {"answer": f"基础回答 {position}", "perplexity": 10.0 + position, "bleu4": 1.0,
                 "rougeL": 15.0, "completion_tokens": 64, "hit_limit": position < 2},
        "v1": {"answer": f"Adapter one says {position} " + "long " * (100 if position == 0 else 1),
               "perplexity": ppl, "bleu4": 20.0 + position, "rougeL": rouge,
               "completion_tokens": 20, "hit_limit": False},
        "v2": {"answer": f"Adapter two says {position}", "perplexity": 5.0, "bleu4": 22.0,
               "rougeL": 26.0, "completion_tokens": 25, "hit_limit": position == 3},
    }  # fmt: skip


def insert_evaluation(
    session: Session,
    project_id: int,
    status: str = JobStatus.SUCCEEDED,
    versions: list[str] | None = None,
    **fields: Any,
) -> Evaluation:
    """An evaluation in `status`; a succeeded one gets results, methods and four examples."""
    versions = versions or VERSIONS
    succeeded = status == JobStatus.SUCCEEDED
    evaluation = Evaluation(
        project_id=project_id,
        source_name="held_out.jsonl",
        source_sha256="ab" * 32,
        versions=versions,
        settings=SETTINGS,
        status=status,
        results=[r for r in RESULTS if r["version"] in versions] if succeeded else None,
        methods=METHODS if succeeded else None,
        example_count=len(V1_SCORES) if succeeded else 0,
        **fields,
    )
    session.add(evaluation)
    session.commit()
    if succeeded:
        for position in V1_SCORES:
            outputs = {k: v for k, v in _outputs(position).items() if k in versions}
            session.add(
                EvaluationExample(
                    evaluation_id=evaluation.id,
                    position=position,
                    messages=[{"role": "user", "content": f"问题 {position}：天门山在哪里？"}],
                    reference=f"参考答案 {position}",
                    outputs=outputs,
                )
            )
        session.commit()
    return evaluation
