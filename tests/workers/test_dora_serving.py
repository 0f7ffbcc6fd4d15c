"""A DoRA version trained through the platform (API → prefork train worker → version) answers in
chat (chat page → infer worker → SSE) exactly as peft's own PeftModel decodes greedily."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.versions import adapter_dir
from tests.workers.test_chat_serving import read_stream, send
from tests.workers.test_training_jobs import FAST, ROWS, finished, wait_job
from workers.inference.decoding import REPLACEMENT_CHAR

# The answer is compared token for token with peft in float32; a CPU with native bf16 would
# otherwise serve in bf16 (workers/inference/hardware.py).
WORKER_ENV = {"TUNELAB_INFERENCE_DTYPE": "float32", "TUNELAB_CHAT_ENGINE": "transformers"}
QUESTION = ROWS[3]["instruction"]
MAX_NEW_TOKENS = 24


def _chat(client, project: dict, model: str) -> tuple[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """One greedy answer from `model` (base or vN): its streamed text and its done event."""
    response = client.post(
        f"/projects/{project['id']}/chat", data={"model": model}, headers={"HX-Request": "true"}
    )
    conversation = int(response.headers["HX-Redirect"].rsplit("/", 1)[1])
    settings = {"model": model, "temperature": 0, "max_new_tokens": MAX_NEW_TOKENS}
    client.post(f"/chat/{conversation}/settings", data=settings)
    [request_id] = send(client, conversation, QUESTION)
    events = read_stream(client, request_id)
    assert events[-1][0] == "done", events[-3:]
    return "".join(d["text"] for kind, d in events if kind == "token"), events[-1][1]


def _peft_greedy(base_dir: Path, adapter: str | None) -> tuple[list[int], str]:
    """Greedy new tokens from transformers + peft (PeftModel on the base, unmerged), fp32,
    for the prompt the platform renders (the model's own chat template)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
        )
    new = out[0, ids.shape[1] :].tolist()
    return new, tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dora_version_answers_like_peft(client, worker, tiny_model_dir, database_url) -> None:  # type: ignore[no-untyped-def]
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "dora", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    # Enough steps at a high rate that the tiny model's greedy answer turns into varied text
    # (with fewer it repeats one token, which would make the comparison below weak).
    config = {**FAST, "use_dora": True, "epochs": 6, "learning_rate": 1e-2}
    response = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": dataset["id"], "config": config},
    )
    assert response.status_code == 201, response.text
    job = wait_job(client, response.json()["id"], finished, timeout=600)  # a busy 2-core CI
    assert job["status"] == "succeeded", job["error"]
    [version] = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
    adapter = str(adapter_dir(version["id"]))
    assert json.loads((Path(adapter) / "adapter_config.json").read_text())["use_dora"] is True

    expected_ids, expected_text = _peft_greedy(tiny_model_dir, adapter)
    assert len(set(expected_ids)) > 4
    text, done = _chat(client, project, "v1")
    assert done["finish_reason"] in ("stop", "length")
    assert done["completion_tokens"] == len(expected_ids)
    # The chat never shows half a character (workers/inference/decoding.py), which a full
    # decode of an answer cut off at the token limit ends with.
    assert text == expected_text.rstrip(REPLACEMENT_CHAR)

    base_ids, base_text = _peft_greedy(tiny_model_dir, None)
    assert base_ids != expected_ids  # the DoRA version really answers differently
    assert _chat(client, project, "base")[0] == base_text != text
