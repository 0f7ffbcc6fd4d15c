"""One evaluation: every model (the base and its versions) on one test set, through the engine.

Three phases, each reported to `progress` and interruptible by `should_stop`:
1. perplexity: the reference answers' tokens (the ones the training loss counts) scored by each
   model, one teacher-forced forward per row (InferenceEngine.score); also on the general sample;
2. generation: every (row, model) pair submitted to the engine's scheduler at once, so a decode
   step carries several rows and several adapters in one forward pass (continuous batching),
   interleaved row by row so the versions of one prompt share passes;
3. scoring: BLEU-4 and ROUGE-1/2/L against the references, per example and per model.

Pure ML: no Celery, database or Redis. The task (workers/tasks/evaluate.py) feeds it rows and
stores what it returns.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from workers.evaluation import metrics
from workers.evaluation.perplexity import answer_nll
from workers.inference import (
    DoneEvent,
    GenerationHandle,
    GenerationRequest,
    InferenceEngine,
    PromptTooLong,
    Scheduler,
)
from workers.ml.errors import ChatFormatError

Progress = Callable[[str, int, int], None]  # phase, done, total
STOP_CHECK_S = 1.0  # how often generation asks should_stop (each ask may read the database)


class EvaluationCancelled(Exception):
    """should_stop() said so; the caller marks the evaluation cancelled."""


@dataclass(frozen=True)
class ModelUnderTest:
    label: str  # "base", "v1", ...
    adapter_id: str | None = None
    adapter_path: Path | None = None
    template: str | None = None  # the chat template the version was trained with


@dataclass(frozen=True)
class TestRow:
    prompt: list[dict[str, str]]  # the conversation up to the answer being scored
    reference: str
    conversation: list[dict[str, str]]  # the whole row, as training saw it (perplexity)
    subset: str = "domain"  # "domain" or "general"


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy by default: scores that do not move between runs
    top_p: float = 1.0
    seed: int = 0


@dataclass
class EvaluationReport:
    results: list[dict[str, Any]]  # one summary per model, in the order given
    examples: list[dict[str, Any]]  # one per test row: outputs[label] = answer and scores
    methods: dict[str, Any]
    skipped_rows: int = 0
    language: str = "en"
    general_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def test_rows(conversations: Sequence[Any], subset: str = "domain") -> tuple[list[TestRow], int]:
    """Rows whose conversation ends in an assistant answer (the reference), and how many did
    not (skipped)."""
    rows: list[TestRow] = []
    skipped = 0
    for row in conversations:
        messages = row.get("messages") if isinstance(row, dict) else None
        if (
            not isinstance(messages, list)
            or len(messages) < 2
            or not all(isinstance(m, dict) for m in messages)
            or messages[-1].get("role") != "assistant"
            or not str(messages[-1].get("content", "")).strip()
        ):
            skipped += 1
            continue
        rows.append(TestRow(messages[:-1], str(messages[-1]["content"]), messages, subset))
    return rows, skipped


def general_rows() -> list[TestRow]:
    """The general-purpose sample shipped with Tunelab (workers/evaluation/data/README.md)."""
    text = resources.files("workers.evaluation").joinpath("data/general.jsonl").read_text("utf-8")
    rows, _ = test_rows([json.loads(line) for line in text.splitlines() if line.strip()], "general")
    return rows


def _check(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise EvaluationCancelled()


def _perplexities(
    engine: InferenceEngine,
    base_id: str,
    models: Sequence[ModelUnderTest],
    rows: Sequence[TestRow],
    progress: Progress,
    should_stop: Callable[[], bool],
) -> dict[tuple[int, str], tuple[float, int, bool] | None]:
    """(row index, label) -> (NLL sum, answer tokens, truncated), None where a row cannot be
    scored (its chat template fails, or it has no answer token within the context)."""
    out: dict[tuple[int, str], tuple[float, int, bool] | None] = {}
    total, done = len(rows) * len(models), 0
    for model in models:
        for index, row in enumerate(rows):
            _check(should_stop)
            try:
                out[(index, model.label)] = answer_nll(
                    engine, base_id, model.adapter_id, row.conversation, model.template
                )
            except (ChatFormatError, ValueError):
                out[(index, model.label)] = None
            done += 1
            progress("perplexity", done, total)
    return out


def _generate(
    scheduler: Scheduler,
    base_id: str,
    models: Sequence[ModelUnderTest],
    rows: Sequence[TestRow],
    settings: GenerationSettings,
    progress: Progress,
    should_stop: Callable[[], bool],
) -> dict[tuple[int, str], dict[str, Any]]:
    """Every (row, model) answer, generated together; cancelled as a whole on should_stop."""
    handles = []
    for index, row in enumerate(rows):
        for model in models:
            request = GenerationRequest(
                request_id=f"eval-{index}-{model.label}",
                base_id=base_id,
                adapter_id=model.adapter_id,
                messages=row.prompt,
                template=model.template,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_new_tokens=settings.max_new_tokens,
                seed=settings.seed + index,
            )
            handles.append(((index, model.label), scheduler.submit(request)))
    answers: dict[tuple[int, str], dict[str, Any]] = {}
    try:
        for done, (key, handle) in enumerate(handles, start=1):
            text, last = _collect(handle, should_stop)
            error = last.error
            answers[key] = {
                "answer": text,
                "completion_tokens": last.completion_tokens,
                "finish_reason": last.finish_reason,
                "hit_limit": last.finish_reason == "length",
                "error": (
                    "prompt_too_long"
                    if isinstance(error, PromptTooLong)
                    else (str(error) if error else None)
                ),
            }
            progress("generation", done, len(handles))
    except BaseException:
        for _, handle in handles:
            handle.cancel()
        raise
    return answers


def _collect(handle: GenerationHandle, should_stop: Callable[[], bool]) -> tuple[str, DoneEvent]:
    """The whole answer of one request, asking should_stop about once a second whether tokens
    flow or not."""
    pieces: list[str] = []
    next_check = time.monotonic() + STOP_CHECK_S
    while True:
        if time.monotonic() >= next_check:
            _check(should_stop)
            next_check = time.monotonic() + STOP_CHECK_S
        try:
            event = handle.next_event(timeout=STOP_CHECK_S)
        except queue.Empty:
            continue
        if isinstance(event, DoneEvent):
            return "".join(pieces), event
        pieces.append(event.text)


def evaluate(
    engine: InferenceEngine,
    scheduler: Scheduler,
    base_id: str,
    models: Sequence[ModelUnderTest],
    rows: Sequence[TestRow],
    settings: GenerationSettings,
    *,
    general: Sequence[TestRow] = (),
    progress: Progress = lambda phase, done, total: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EvaluationReport:
    """Score `models` (all on `base_id`) on `rows`; `general` rows get perplexity only."""
    if not rows:
        raise ValueError("the test set has no row ending in an answer")
    for model in models:
        if model.adapter_id is not None and model.adapter_path is not None:
            engine.register_adapter(base_id, model.adapter_id, model.adapter_path)
    everything = [*rows, *general]
    nll = _perplexities(engine, base_id, models, everything, progress, should_stop)
    answers = _generate(scheduler, base_id, models, rows, settings, progress, should_stop)
    _check(should_stop)

    language = metrics.detect_language([r.reference for r in rows])
    examples: list[dict[str, Any]] = []
    for index, row in enumerate(everything):
        outputs: dict[str, Any] = {}
        for model in models:
            scored = nll.get((index, model.label))
            entry: dict[str, Any] = {
                "perplexity": metrics.example_perplexity(scored[0], scored[1]) if scored else None,
                "nll": scored[0] if scored else None,
                "answer_tokens": scored[1] if scored else None,
                "truncated": scored[2] if scored else None,
            }
            entry.update(answers.get((index, model.label), {}))
            outputs[model.label] = entry
        examples.append(
            {
                "position": index,
                "subset": row.subset,
                "messages": row.prompt,
                "reference": row.reference,
                "outputs": outputs,
            }
        )

    results = []
    references = [r.reference for r in rows]
    for model in models:
        hyps = [answers[(i, model.label)]["answer"] for i in range(len(rows))]
        rouge = metrics.rouge_scores(hyps, references, language)
        for i, scores in enumerate(rouge):
            out = examples[i]["outputs"][model.label]
            out.update(scores)
            out["bleu4"] = metrics.sentence_bleu4(hyps[i], references[i], language)
        results.append(
            {
                "version": model.label,
                "n": len(rows),
                "perplexity": _corpus_ppl(nll, model.label, range(len(rows))),
                "general_perplexity": _corpus_ppl(
                    nll, model.label, range(len(rows), len(everything))
                ),
                "bleu4": metrics.corpus_bleu4(hyps, references, language),
                **metrics.mean_rouge(rouge),
                "avg_answer_tokens": sum(
                    answers[(i, model.label)]["completion_tokens"] for i in range(len(rows))
                )
                / len(rows),
                "hit_limit": sum(answers[(i, model.label)]["hit_limit"] for i in range(len(rows))),
                "scored_rows": sum(1 for i in range(len(rows)) if nll.get((i, model.label))),
            }
        )
    return EvaluationReport(
        results=results,
        examples=examples,
        methods=metrics.methods_for(language),
        language=language,
        general_rows=len(general),
    )


def _corpus_ppl(
    nll: dict[tuple[int, str], tuple[float, int, bool] | None], label: str, indices: range
) -> float | None:
    scored = [nll[(i, label)] for i in indices if nll.get((i, label))]
    if not scored:
        return None
    return metrics.corpus_perplexity([s[0] for s in scored], [s[1] for s in scored])
