"""Next-token choice for one sequence of the llama.cpp engine.

Greedy requests without a repetition penalty (the benchmark, eval and temperature-0 chat case)
take numpy's argmax over a zero-copy view of llama.cpp's logits row: first maximum wins, as
llama.cpp's greedy sampler, and a sampler chain's copy of the row into a candidate array is
skipped. Every other request gets its own llama.cpp sampler chain, in the order
workers/inference/sampling.py and transformers' generate() use: repetition penalty (over the
prompt and the answer so far), temperature, top-k, top-p, then a draw from a generator seeded
by the request (so a seeded request replays its draws whatever shares its batch).

Cost per token on SmolLM2's 49k vocabulary (one core, against a 13 ms decode step): argmax
7 us; chain with temperature, top-k 40 and top-p 58 us; top-p alone (a sort of the whole
vocabulary) 520 us; adding the repetition penalty about 250 us (llama.cpp looks every candidate
up in its token counts; it warns of exactly that). A numpy reimplementation would save nothing
worth its code.
"""

import secrets
from collections.abc import Sequence

import llama_cpp

from workers.inference.events import GenerationRequest
from workers.inference.llamacpp.model import GGUFModel


class SequenceSampler:
    """Sampling state of one sequence; close() frees its llama.cpp chain."""

    def __init__(self, request: GenerationRequest, prompt: Sequence[int], model: GGUFModel) -> None:
        greedy = request.temperature <= 0 or request.top_k == 1
        penalty = request.repetition_penalty != 1.0
        self.greedy_argmax = greedy and not penalty
        self._chain = None
        if self.greedy_argmax:
            return
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        add = llama_cpp.llama_sampler_chain_add  # the chain owns (and frees) what it is given
        if penalty:
            # A window as long as the context: every token seen so far counts, as in generate().
            add(chain, llama_cpp.llama_sampler_init_penalties(
                model.vocab.size, model.context_length, request.repetition_penalty, 0.0, 0.0,
            ))  # fmt: skip
            for token in prompt:
                llama_cpp.llama_sampler_accept(chain, token)
        if greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return
        add(chain, llama_cpp.llama_sampler_init_temp(request.temperature))
        if request.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(request.top_k))
        if request.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(request.top_p, 1))
        # LLAMA_DEFAULT_SEED (0xFFFFFFFF) would ask llama.cpp for a random seed itself.
        seed = request.seed if request.seed is not None else secrets.randbits(32)
        add(chain, llama_cpp.llama_sampler_init_dist(seed % 0xFFFFFFFF))

    def choose(self, model: GGUFModel, index: int) -> int:
        """The next token from batch row `index` of the model's last decode (the chain also
        records it, for the repetition penalty)."""
        if self._chain is None:
            return int(model.logits(index).argmax())
        return int(llama_cpp.llama_sampler_sample(self._chain, model.ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
