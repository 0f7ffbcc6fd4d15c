"""Evaluation metrics: corpus BLEU-4, per-example ROUGE, corpus perplexity, and how each is made.

Pure functions over strings and numbers (no torch): the evaluation task computes NLLs and
answers, this module turns them into scores. Chinese needs its own tokenization everywhere:
sacrebleu's "13a" and rouge-score's default tokenizer treat a Chinese sentence as one word or
delete it outright, so every text-overlap metric takes the test set's `language`.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import unicodedata
from collections.abc import Sequence
from importlib.metadata import version
from types import ModuleType
from typing import Any, Literal

import sacrebleu
from rouge_score import rouge_scorer

Language = Literal["zh", "en"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
BLEU_TOKENIZE: dict[str, str] = {"zh": "zh", "en": "13a"}
# Below this share of CJK ideographs a text is scored as English: a few Chinese names in an
# English answer should not switch the tokenizer, a Chinese answer quoting code should.
ZH_SHARE = 0.2

# CJK Unified Ideographs with extension A, compatibility ideographs, extensions B onwards.
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def detect_language(texts: Sequence[str]) -> Language:
    """ "zh" when CJK ideographs are at least ZH_SHARE of all non-space characters, else "en"."""
    total = cjk = 0
    for text in texts:
        for char in text:
            if not char.isspace():
                total += 1
                cjk += _is_cjk(char)
    return "zh" if total and cjk / total >= ZH_SHARE else "en"


def corpus_bleu4(hypotheses: Sequence[str], references: Sequence[str], language: Language) -> float:
    """sacrebleu corpus BLEU-4 (0-100), one reference per hypothesis."""
    result = sacrebleu.corpus_bleu(
        list(hypotheses), [list(references)], tokenize=BLEU_TOKENIZE[language]
    )
    return float(result.score)


def sentence_bleu4(hypothesis: str, reference: str, language: Language) -> float:
    """sacrebleu sentence BLEU-4 (0-100, with its default smoothing) for the per-example table."""
    result = sacrebleu.sentence_bleu(hypothesis, [reference], tokenize=BLEU_TOKENIZE[language])
    return float(result.score)


@functools.cache
def _jieba() -> ModuleType:
    # Imported and initialised on first use: loading the dictionary takes about a second and
    # logs to stderr at INFO, neither of which an English evaluation should pay for.
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(char).startswith("P") for char in token)


class JiebaTokenizer:
    """rouge-score tokenizer for Chinese: jieba words, lowercased (for the Latin words mixed
    in, as the default tokenizer does), without whitespace or punctuation tokens."""

    def tokenize(self, text: str) -> list[str]:
        words = (word.strip().lower() for word in _jieba().lcut(text))
        return [word for word in words if word and not _is_punctuation(word)]


@functools.cache
def _rouge_scorer(language: Language) -> rouge_scorer.RougeScorer:
    if language == "zh":
        return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=JiebaTokenizer())
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_scores(
    hypotheses: Sequence[str], references: Sequence[str], language: Language
) -> list[dict[str, float]]:
    """Per-example ROUGE-1/2/L F1 (0-100)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    scorer = _rouge_scorer(language)
    rows = []
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        # rouge-score takes (target, prediction).
        scores = scorer.score(reference, hypothesis)
        rows.append({name: scores[name].fmeasure * 100 for name in ROUGE_TYPES})
    return rows


def mean_rouge(per_example: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each ROUGE F1 over the examples (0.0 each for no examples)."""
    n = len(per_example)
    return {name: sum(row[name] for row in per_example) / n if n else 0.0 for name in ROUGE_TYPES}


def corpus_perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """exp(total NLL / total tokens): every answer token weighs the same, so long answers count
    for more than in a mean of per-example perplexities."""
    tokens = sum(token_counts)
    if tokens <= 0:
        raise ValueError("no answer tokens to compute a perplexity over")
    return math.exp(math.fsum(nll_sums) / tokens)


def example_perplexity(nll_sum: float, tokens: int) -> float:
    """exp(NLL / tokens) of one answer."""
    return corpus_perplexity([nll_sum], [tokens])


JIEBA_VERSION = version("jieba")

# What each reported number means, stored next to the results so a report never shows a bare
# number. Tokenizers are per language; `methods_for` picks the one a test set used.
METHODS: dict[str, dict[str, Any]] = {
    "perplexity": {
        "level": "corpus",
        "formula": "exp(total answer-token NLL / total answer tokens)",
        "tokens": "assistant tokens the training loss counts",
    },
    "bleu4": {
        "library": "sacrebleu",
        "version": sacrebleu.__version__,
        "tokenize": dict(BLEU_TOKENIZE),
        "level": "corpus",
        "per_example": "sacrebleu sentence_bleu, default smoothing",
    },
    "rouge": {
        "library": "rouge-score",
        "version": version("rouge-score"),
        "types": list(ROUGE_TYPES),
        "tokenizer": {
            "zh": f"jieba {JIEBA_VERSION} words, lowercased, punctuation dropped",
            "en": "rouge-score default, Porter stemmer",
        },
        "score": "F1",
        "level": "mean over examples",
    },
    "avg_answer_tokens": {
        "level": "mean over examples",
        "tokens": "generated answer tokens in the model's own tokenizer",
    },
    "hit_limit": {
        "level": "count over examples",
        "formula": "answers that stopped at max_new_tokens instead of an end-of-turn token",
    },
}


def methods_for(language: Language) -> dict[str, dict[str, Any]]:
    """METHODS with the tokenizers of the test set's language picked (a fresh copy to store)."""
    methods = copy.deepcopy(METHODS)
    methods["bleu4"]["tokenize"] = BLEU_TOKENIZE[language]
    methods["rouge"]["tokenizer"] = METHODS["rouge"]["tokenizer"][language]
    return methods
