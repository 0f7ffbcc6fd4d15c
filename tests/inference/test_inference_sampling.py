"""Per-row sampling: seeds, greedy equivalents, top-k/top-p filters and repetition penalty."""

import torch

from workers.inference.sampling import RowSampler, SamplingParams, choose_tokens

VOCAB = 50


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def _draws(params: SamplingParams, n: int = 30) -> list[int]:
    sampler = RowSampler(params, [], VOCAB, torch.device("cpu"))
    return [sampler.choose(_logits(i)) for i in range(n)]


def test_seeded_rows_replay_and_differ_by_seed() -> None:
    params = SamplingParams(temperature=1.0, seed=7)
    assert _draws(params) == _draws(params)
    assert _draws(params) != _draws(SamplingParams(temperature=1.0, seed=8))


def test_greedy_equivalents() -> None:
    argmaxes = [int(_logits(i).argmax()) for i in range(30)]
    assert _draws(SamplingParams(temperature=0.0)) == argmaxes
    assert _draws(SamplingParams(temperature=1.0, top_k=1, seed=1)) == argmaxes
    assert _draws(SamplingParams(temperature=1.0, top_p=1e-6, seed=1)) == argmaxes


def test_top_k_limits_choices() -> None:
    logits = _logits()
    allowed = set(torch.topk(logits, 3).indices.tolist())
    sampler = RowSampler(
        SamplingParams(temperature=5.0, top_k=3, seed=0), [], VOCAB, torch.device("cpu")
    )
    assert {sampler.choose(logits) for _ in range(200)} == allowed


def test_top_p_keeps_the_smallest_sufficient_head() -> None:
    logits = torch.full((VOCAB,), -20.0)
    logits[[3, 9, 11]] = torch.tensor([2.0, 1.5, 1.0])  # ~0.5, 0.3, 0.2 of the mass
    sampler = RowSampler(
        SamplingParams(temperature=1.0, top_p=0.7, seed=0), [], VOCAB, torch.device("cpu")
    )
    assert {sampler.choose(logits) for _ in range(300)} == {3, 9}


def test_repetition_penalty_avoids_seen_tokens_greedily() -> None:
    logits = torch.zeros(VOCAB)
    logits[4], logits[5] = 2.0, 1.5
    params = SamplingParams(temperature=0.0, repetition_penalty=2.0)
    sampler = RowSampler(params, [4], VOCAB, torch.device("cpu"))  # 4 is in the prompt
    assert sampler.choose(logits) == 5
    plain = RowSampler(SamplingParams(temperature=0.0), [4], VOCAB, torch.device("cpu"))
    assert plain.choose(logits) == 4


def test_batch_rows_use_their_own_settings() -> None:
    logits = torch.stack([_logits(1), _logits(2)])
    samplers = [
        RowSampler(SamplingParams(temperature=0.0), [], VOCAB, torch.device("cpu")),
        RowSampler(
            SamplingParams(temperature=1.0, top_k=1, seed=3), [], VOCAB, torch.device("cpu")
        ),
    ]
    assert choose_tokens(logits, samplers) == logits.argmax(-1).tolist()
