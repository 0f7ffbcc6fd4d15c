"""Evaluation metrics against the libraries called directly, and by hand where it is small.

The Chinese examples are where a wrong tokenizer shows: sacrebleu's "13a" and rouge-score's
default tokenizer give different (or zero) scores on the same pairs.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata

import jieba
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from workers.evaluation import metrics

# Partial overlap, an exact match, a poor answer.
ZH_HYPS = [
    "张家界国家森林公园位于湖南省西北部，以奇特的石英砂岩峰林闻名。",
    "天门山索道全长七千四百五十五米，是世界上最长的高山客运索道之一。",
    "我不知道。",
]
ZH_REFS = [
    "张家界国家森林公园在湖南省西北部，因独特的石英砂岩峰林地貌而闻名于世。",
    "天门山索道全长七千四百五十五米，是世界上最长的高山客运索道之一。",
    "游客可以乘坐百龙天梯从水绕四门直达袁家界景区，全程约需两分钟。",
]
EN_HYPS = [
    "The park is located in the northwest of Hunan province and is known for its sandstone pillars.",
    "The cable car is 7,455 meters long and is one of the longest in the world.",
    "I am not sure.",
]
EN_REFS = [
    "The park lies in northwestern Hunan province and is famous for its quartz sandstone pillars.",
    "The cable car is 7,455 meters long and is one of the longest in the world.",
    "Visitors can ride the Bailong Elevator from the valley floor to Yuanjiajie in about two minutes.",
]


class IndependentJiebaTokenizer:
    """Built here rather than imported, so the test checks the module's tokenizer."""

    def tokenize(self, text: str) -> list[str]:
        jieba.setLogLevel(logging.WARNING)
        return [
            word.lower()
            for word in jieba.lcut(text)
            if word.strip() and not all(unicodedata.category(c).startswith("P") for c in word)
        ]


def library_rouge(scorer: rouge_scorer.RougeScorer, hyps: list[str], refs: list[str]):
    return [
        {
            name: scorer.score(ref, hyp)[name].fmeasure * 100
            for name in ("rouge1", "rouge2", "rougeL")
        }
        for hyp, ref in zip(hyps, refs, strict=True)
    ]


# --- language -------------------------------------------------------------------------------


def test_detect_language() -> None:
    assert metrics.detect_language(ZH_REFS) == "zh"
    assert metrics.detect_language(EN_REFS) == "en"
    # Chinese with English terms: 7 ideographs of 18 non-space characters (39 %).
    assert metrics.detect_language(["我们用 PyTorch 训练 LoRA 模型"]) == "zh"
    # English naming one Chinese place: 3 ideographs of about 50 characters.
    assert metrics.detect_language(["We walked up to Tianmen Mountain, 天门山, on Monday."]) == "en"
    # The share is over all texts together, not per text.
    assert metrics.detect_language(["张家界", *EN_REFS]) == "en"
    assert metrics.detect_language([]) == "en"
    assert metrics.detect_language(["   ", "1234 !!"]) == "en"


# --- BLEU -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyps", "refs", "language", "tokenize"),
    [(ZH_HYPS, ZH_REFS, "zh", "zh"), (EN_HYPS, EN_REFS, "en", "13a")],
)
def test_corpus_bleu4_is_sacrebleu(hyps, refs, language, tokenize) -> None:
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    score = metrics.corpus_bleu4(hyps, refs, language)
    assert score == expected
    assert 0 < score < 100


def test_chinese_bleu_depends_on_the_tokenizer() -> None:
    as_zh = metrics.corpus_bleu4(ZH_HYPS, ZH_REFS, "zh")
    as_13a = sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="13a").score
    assert as_zh != pytest.approx(as_13a, abs=1.0)


def test_sentence_bleu4() -> None:
    for hyp, ref in zip(ZH_HYPS, ZH_REFS, strict=True):
        expected = sacrebleu.sentence_bleu(hyp, [ref], tokenize="zh").score
        assert metrics.sentence_bleu4(hyp, ref, "zh") == expected
    for hyp, ref in zip(EN_HYPS, EN_REFS, strict=True):
        expected = sacrebleu.sentence_bleu(hyp, [ref], tokenize="13a").score
        assert metrics.sentence_bleu4(hyp, ref, "en") == expected
    assert metrics.sentence_bleu4(ZH_HYPS[1], ZH_REFS[1], "zh") == pytest.approx(100.0)
    assert metrics.sentence_bleu4(ZH_HYPS[2], ZH_REFS[2], "zh") < 10


# --- ROUGE ----------------------------------------------------------------------------------


def test_chinese_rouge_is_rouge_score_with_jieba_words() -> None:
    scorer = rouge_scorer.RougeScorer(
        ["rouge1", "rouge2", "rougeL"], tokenizer=IndependentJiebaTokenizer()
    )
    rows = metrics.rouge_scores(ZH_HYPS, ZH_REFS, "zh")
    assert rows == library_rouge(scorer, ZH_HYPS, ZH_REFS)
    assert 0 < rows[0]["rouge1"] < 100
    assert rows[1] == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    assert rows[2]["rouge1"] < rows[0]["rouge1"]
    # Why the tokenizer is needed: the default one deletes every Chinese character.
    default = rouge_scorer.RougeScorer(["rouge1"]).score(ZH_REFS[1], ZH_HYPS[1])
    assert default["rouge1"].fmeasure == 0


def test_chinese_rouge_tokens_drop_punctuation_and_spaces() -> None:
    tokens = metrics.JiebaTokenizer().tokenize("我们 用 PyTorch 训练模型。")
    assert tokens == IndependentJiebaTokenizer().tokenize("我们 用 PyTorch 训练模型。")
    assert "pytorch" in tokens
    assert not any(t.strip() == "" or t in {"。", " "} for t in tokens)


def test_english_rouge_is_rouge_score_default_with_stemmer() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = metrics.rouge_scores(EN_HYPS, EN_REFS, "en")
    assert rows == library_rouge(scorer, EN_HYPS, EN_REFS)
    assert rows[1]["rougeL"] == pytest.approx(100.0)


def test_rouge_by_hand() -> None:
    # hyp: the cat sat on a mat (6)      ref: the cat sat on the red mat (7)
    # unigrams in common: the, cat, sat, on, mat = 5  -> F1 = 2*5 / (6+7)
    # bigrams in common: the cat, cat sat, sat on = 3 of 5 and 6 -> F1 = 2*3 / (5+6)
    # longest common subsequence: the cat sat on mat = 5 -> same as unigrams
    [row] = metrics.rouge_scores(["the cat sat on a mat"], ["the cat sat on the red mat"], "en")
    assert row["rouge1"] == pytest.approx(100 * 10 / 13)
    assert row["rouge2"] == pytest.approx(100 * 6 / 11)
    assert row["rougeL"] == pytest.approx(100 * 10 / 13)


def test_mean_rouge() -> None:
    rows = [
        {"rouge1": 10.0, "rouge2": 0.0, "rougeL": 5.0},
        {"rouge1": 30.0, "rouge2": 20.0, "rougeL": 15.0},
    ]
    assert metrics.mean_rouge(rows) == {"rouge1": 20.0, "rouge2": 10.0, "rougeL": 10.0}
    assert metrics.mean_rouge([]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_needs_one_reference_per_hypothesis() -> None:
    with pytest.raises(ValueError):
        metrics.rouge_scores(EN_HYPS, EN_REFS[:2], "en")


# --- perplexity -----------------------------------------------------------------------------


def test_corpus_perplexity_weighs_tokens_not_examples() -> None:
    # A short answer the model finds hard and a long one it finds easy.
    nlls = [12.0, 40.0]
    tokens = [4, 100]
    corpus = metrics.corpus_perplexity(nlls, tokens)
    assert corpus == pytest.approx(math.exp(52.0 / 104))
    per_example = [metrics.example_perplexity(n, t) for n, t in zip(nlls, tokens, strict=True)]
    assert per_example == pytest.approx([math.exp(3.0), math.exp(0.4)])
    assert corpus != pytest.approx(sum(per_example) / 2, rel=0.05)


def test_perplexity_needs_tokens() -> None:
    with pytest.raises(ValueError):
        metrics.corpus_perplexity([], [])
    with pytest.raises(ValueError):
        metrics.corpus_perplexity([1.0], [0])
    with pytest.raises(ValueError):
        metrics.example_perplexity(0.0, 0)


# --- methods --------------------------------------------------------------------------------


def test_methods_describe_every_metric() -> None:
    assert set(metrics.METHODS) == {
        "perplexity",
        "bleu4",
        "rouge",
        "avg_answer_tokens",
        "hit_limit",
    }
    assert metrics.METHODS["bleu4"]["version"] == sacrebleu.__version__
    json.dumps(metrics.METHODS)


def test_methods_for_picks_the_language_tokenizers() -> None:
    zh = metrics.methods_for("zh")
    en = metrics.methods_for("en")
    assert zh["bleu4"]["tokenize"] == "zh"
    assert en["bleu4"]["tokenize"] == "13a"
    assert zh["rouge"]["tokenizer"].startswith(f"jieba {jieba.__version__}")
    assert "Porter" in en["rouge"]["tokenizer"]
    assert zh["perplexity"] == metrics.METHODS["perplexity"]
    # A copy: storing and editing one report's methods leaves the table alone.
    zh["bleu4"]["level"] = "changed"
    assert metrics.METHODS["bleu4"]["level"] == "corpus"
    assert metrics.METHODS["bleu4"]["tokenize"] == {"zh": "zh", "en": "13a"}
    json.dumps(zh)
