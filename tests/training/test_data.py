"""Data preparation: tokenizing and filtering, the split, length-grouped batches, padding."""

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.conftest import arithmetic_rows, chat, write_jsonl
from workers.ml.chat_format import IGNORE_INDEX
from workers.training.data import (
    LengthGroupedBatches,
    collate,
    load_datasets,
    padding_fraction,
    split_rows,
    tokenize_rows,
)
from workers.training.errors import EmptyDataset


def test_tokenize_rows_drops_rows_without_trainable_tokens(tiny_tokenizer: Any) -> None:
    long_prompt = chat("word " * 80, "the answer")  # the answer falls past max_length
    rows = [*arithmetic_rows(3), long_prompt, {"messages": [{"role": "user", "content": "hi"}]}]
    examples, stats = tokenize_rows(tiny_tokenizer, [*rows, "not a row"], max_length=48)
    assert len(examples) == 3
    assert stats.dropped == Counter(no_trainable_tokens=1, chat_format=1, invalid_row=1)
    for ex in examples:
        assert ex.input_ids.dtype == torch.int32
        assert ex.n_targets == int((ex.labels[1:] != IGNORE_INDEX).sum()) > 0


def test_split_is_deterministic_and_matches_the_platform_rule() -> None:
    rows = list(range(50))
    train, val = split_rows(rows, 10, seed=7)
    assert (train, val) == split_rows(rows, 10, seed=7)
    assert len(val) == 5 and sorted(train + val) == rows
    assert split_rows(rows, 10, seed=8)[1] != val
    assert len(split_rows([1, 2, 3], 10, seed=0)[1]) == 1  # at least one row each side
    assert split_rows([1], 10, seed=0) == ([1], [])
    assert split_rows(rows, 0, seed=0)[1] == []


def test_split_matches_app_datasets_split(tmp_path: Path) -> None:
    from app.datasets.split import split_rows as split_file

    rows = arithmetic_rows(23)
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    split_file(src, tmp_path / "t.jsonl", tmp_path / "v.jsonl", 0.2, seed=3)
    expected_val = [line for line in (tmp_path / "v.jsonl").read_text().splitlines() if line]
    import json

    assert [json.loads(x) for x in expected_val] == split_rows(rows, 20, seed=3)[1]


def test_explicit_val_file_and_empty_dataset(tiny_tokenizer: Any, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", arithmetic_rows(6))
    val = write_jsonl(tmp_path / "v.jsonl", arithmetic_rows(2))
    kw = {"max_length": 64, "val_percent": 30, "seed": 0}
    tr, va, stats = load_datasets(tiny_tokenizer, train, val, **kw)
    assert (len(tr), len(va)) == (6, 2) and stats["val"]["examples"] == 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(EmptyDataset, match="could not be formatted"):
        load_datasets(tiny_tokenizer, bad, None, **kw)
    with pytest.raises(EmptyDataset, match="has no rows"):
        load_datasets(tiny_tokenizer, write_jsonl(tmp_path / "e.jsonl", []), None, **kw)


def _varied_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 512) for _ in range(n)]


@pytest.mark.parametrize(("n", "batch_size"), [(400, 4), (1000, 8), (37, 4), (3, 4)])
def test_length_grouping_covers_each_example_once_with_little_padding(
    n: int, batch_size: int
) -> None:
    lengths = _varied_lengths(n)
    sampler = LengthGroupedBatches(lengths, batch_size, seed=1)
    plans = [sampler.epoch(e) for e in range(3)]
    for plan in plans:
        assert sorted(i for b in plan for i in b) == list(range(n))
        assert len(plan) == len(sampler)
        assert sum(len(b) != batch_size for b in plan) == (1 if n % batch_size else 0)
        if n >= 100:
            assert padding_fraction(plan, lengths) < 0.10
    if n >= 100:
        assert plans[0] != plans[1]  # reshuffled every epoch
        order = list(range(n))
        random.Random(0).shuffle(order)
        naive = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        assert padding_fraction(naive, lengths) > 0.25  # what random order would waste
    assert LengthGroupedBatches(lengths, batch_size, seed=1).epoch(1) == plans[1]
    assert LengthGroupedBatches(lengths, batch_size, seed=2).epoch(1) != plans[1] or n < 10


def test_longest_batch_comes_first() -> None:
    lengths = _varied_lengths(200)
    plan = LengthGroupedBatches(lengths, 4, seed=3).epoch(0)
    costs = [len(b) * max(lengths[i] for i in b) for b in plan]
    assert costs[0] == max(costs)


def test_collate_pads_right_and_masks_labels(tiny_tokenizer: Any) -> None:
    examples, _ = tokenize_rows(tiny_tokenizer, arithmetic_rows(12)[9:12], max_length=64)
    batch = collate(examples, pad_id=5)
    width = max(len(e) for e in examples)
    assert batch["input_ids"].shape == (3, width) and batch["input_ids"].dtype == torch.long
    for row, ex in enumerate(examples):
        n = len(ex)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][row, n:].eq(5).all()
        assert batch["labels"][row, n:].eq(IGNORE_INDEX).all()
        assert batch["labels"][row, :n].tolist() == ex.labels.tolist()
