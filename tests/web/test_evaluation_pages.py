"""Evaluation pages: the project's list and form (errors next to fields), one evaluation in each
state, the per-example sort, the blind review, and both languages. Finished evaluations are
written straight to the database (tests/helpers/evaluations.py); no worker runs here."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers.evaluations import add_versions, insert_evaluation

HTMX = {"HX-Request": "true"}
ROWS = [{"instruction": f"景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源。"} for i in range(4)]


@pytest.fixture
def project(client, db_session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "eval pages"}).json()
    add_versions(db_session, project["id"])
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("held_out.jsonl", content)}
    )
    assert dataset.status_code in (200, 201), dataset.text
    return {**project, "dataset_id": dataset.json()["id"]}


def positions(html: str) -> list[int]:
    return [int(p) for p in re.findall(r'<tr data-position="(\d+)"', html)]


def form(project: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = {
        "test_set": f"dataset:{project['dataset_id']}",
        "versions": ["base", "v1", "v2"],
        "max_new_tokens": "256",
        "temperature": "0",
        "top_p": "1",
    }
    return {**data, **changes}


def test_list_page_empty_state_and_form_defaults(client, project) -> None:  # type: ignore[no-untyped-def]
    page = client.get(f"/projects/{project['id']}/evaluations")
    assert page.status_code == 200
    assert 'id="evaluations-empty"' in page.text
    assert f'<option value="dataset:{project["dataset_id"]}" selected>' in page.text
    for label in ("base", "v1", "v2"):  # every model is checked by default
        assert re.search(rf'value="{label}" id="f-version-{label}" checked', page.text)
    assert 'name="max_new_tokens"' in page.text and 'value="256"' in page.text
    assert 'id="f-include_general"' in page.text and "did it forget?" in page.text


def test_form_errors_render_next_to_fields(client, project) -> None:  # type: ignore[no-untyped-def]
    url = f"/projects/{project['id']}/evaluations"
    cases = [
        ({"versions": []}, "versions", "Pick at least one model"),
        ({"max_new_tokens": "0"}, "max_new_tokens", "between 1 and 2048"),
        ({"temperature": "hot"}, "temperature", "between 0 (greedy) and 2"),
        ({"top_p": "0"}, "top_p", "Top-p must be above 0"),
        ({"test_set": ""}, "test_set", "Pick a test set"),
        ({"test_set": "job:999999"}, "test_set", "Pick a training run"),
    ]
    for change, field, message in cases:
        response = client.post(url, data=form(project, **change), headers=HTMX)
        assert response.status_code == 422, (change, response.text)
        assert "<html" not in response.text  # the form partial only
        error = re.search(rf'id="f-{field}-error"[^>]*>([^<]*)<', response.text)
        assert error and message in error.group(1), (change, response.text)
    # Without htmx the whole page comes back, the values kept.
    response = client.post(url, data=form(project, max_new_tokens="0", top_p="0.5"))
    assert response.status_code == 422 and "<html" in response.text
    assert 'id="f-top_p"' in response.text and 'value="0.5"' in response.text


def test_form_starts_an_evaluation_that_can_be_cancelled(client, project) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/projects/{project['id']}/evaluations",
        data=form(project, versions=["base", "v2"], include_general="on"),
        headers=HTMX,
    )
    assert response.status_code == 204, response.text
    url = response.headers["HX-Redirect"]
    evaluation = client.get(f"/api{url}").json()
    assert evaluation["versions"] == ["base", "v2"]
    assert evaluation["settings"]["include_general"] is True

    page = client.get(url)
    assert page.status_code == 200
    assert 'data-status="queued"' in page.text and 'id="evaluation-progress"' in page.text
    assert 'id="cancel-evaluation"' in page.text and "/static/js/evaluation.js" in page.text
    cancelled = client.post(f"{url}/cancel", headers=HTMX)
    assert 'data-status="cancelled"' in cancelled.text and "<html" not in cancelled.text
    again = client.post(f"{url}/cancel", headers=HTMX)
    assert "already ended" in again.text
    listing = client.get(f"/projects/{project['id']}/evaluations").text
    assert f'href="{url}"' in listing and "status-cancelled" in listing


def test_running_and_failed_pages(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    running = insert_evaluation(
        db_session,
        project["id"],
        status="running",
        progress={"phase": "generation", "done": 3, "total": 12},
    )
    page = client.get(f"/evaluations/{running.id}").text
    assert "Generating answers" in page and "3 / 12" in page and "width: 25.0%" in page
    failed = insert_evaluation(
        db_session, project["id"], status="failed", error_code="no_test_rows", error="English"
    )
    page = client.get(f"/evaluations/{failed.id}").text
    assert 'id="evaluation-error"' in page and "final assistant answer" in page
    assert 'id="cancel-evaluation"' not in page and 'id="results-table"' not in page


def test_succeeded_page_shows_scores_methods_charts_examples(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"])
    page = client.get(f"/evaluations/{evaluation.id}").text
    start = page.index('id="results-table"')
    table = page[start : page.index("</table>", start)]
    star = '<span class="star" role="img" aria-label="best in this column"'
    for metric, winner in (("perplexity", "v1"), ("general_perplexity", "base"),
                           ("bleu4", "v2"), ("rougeL", "v2")):  # fmt: skip
        row = re.search(rf'<tr data-version="{winner}">(.*?)</tr>', table, re.S)
        assert row and re.search(rf'data-metric="{metric}" class="best">[^<]*{star}', row.group(1))
    assert table.count('class="best"') == 6
    assert "2 / 4" in table  # hit the limit, out of n
    assert "exp(total answer-token NLL / total answer tokens)" in page
    assert "sacrebleu 2.4.3" in page and "jieba 0.42.1 words" in page
    assert "Greedy (temperature 0), at most 64 new tokens" in page
    assert "do not end in an answer to compare with: 1." in page
    charts = re.search(r"id=\"overlap-chart\" data-bars='([^']*)'", page)
    assert charts
    bars = json.loads(charts.group(1).replace("&#34;", '"'))
    assert bars["categories"] == ["BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L"]
    assert [s["name"] for s in bars["series"]] == ["base", "v1", "v2"]
    assert positions(page) == [0, 1, 2, 3]
    assert "基础回答 0" in page and "参考答案 3" in page and 'class="clamp answer"' in page
    assert f"/api/evaluations/{evaluation.id}/examples?format=csv" in page
    assert f"/api/evaluations/{evaluation.id}/examples?format=jsonl" in page
    assert f'href="/evaluations/{evaluation.id}/review"' in page
    assert 'id="review-tally"' not in page  # no votes yet


def test_sort_param_orders_worst_first(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"])
    page = client.get(f"/evaluations/{evaluation.id}?sort=v1:perplexity").text
    assert positions(page) == [2, 1, 3, 0]
    assert '<option value="v1:perplexity" selected>' in page
    assert "format=csv&amp;sort=v1%3Aperplexity" in page
    partial = client.get(f"/evaluations/{evaluation.id}/examples?sort=v1:rougeL", headers=HTMX)
    assert "<html" not in partial.text and 'id="examples"' in partial.text
    assert positions(partial.text) == [3, 1, 2, 0]
    assert client.get(f"/evaluations/{evaluation.id}/examples?sort=v9:rougeL").status_code == 422


def test_blind_review_votes_then_shows_win_rates(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"], versions=["base", "v1"])
    url = f"/evaluations/{evaluation.id}/review"
    page = client.get(url).text
    assert "Answer A" in page and "Answer B" in page and "0 of 4 judged" in page
    visible = re.sub(r"<[^>]+>", " ", page)  # labels only in hidden inputs, never as text
    assert not re.search(r"\bv1\b", visible) and 'name="left" value=' in page
    for n in range(4):
        left = re.search(r'name="left" value="(\w+)"', page).group(1)
        position = re.search(r'name="position" value="(\d+)"', page).group(1)
        data = {"position": position, "left": left, "right": "v1" if left == "base" else "base",
                "choice": ("left" if left == "v1" else "right") if n < 3 else "tie",
                "scores.left.fluency": "4"}  # fmt: skip
        response = client.post(url, data=data, headers=HTMX)
        assert response.status_code == 200, response.text
        page = response.text
        assert f"{n + 1} of 4 judged" in page
    assert 'id="review-done"' in page and 'id="review-tally"' in page
    assert "v1 88 %" in page and "12 %" in page  # v1: 3 wins and half a tie of 4 votes
    assert "0 : 1 : 3" in page
    report = client.get(f"/evaluations/{evaluation.id}").text
    assert 'id="review-tally"' in report


def test_review_rejects_a_bad_score_next_to_the_same_pair(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"], versions=["base", "v1"])
    data = {"position": "2", "left": "v1", "right": "base", "choice": "tie",
            "scores.right.accuracy": "9"}  # fmt: skip
    response = client.post(f"/evaluations/{evaluation.id}/review", data=data, headers=HTMX)
    assert response.status_code == 422
    assert 'id="review-error"' in response.text and "9" in response.text
    assert (
        'name="position" value="2"' in response.text and 'name="left" value="v1"' in response.text
    )
    assert "0 of 4 judged" in response.text


def test_project_page_links_evaluations_and_shows_headlines(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"])
    page = client.get(f"/projects/{project['id']}").text
    assert 'id="evaluate-section"' in page and "4 · Evaluate" in page
    assert f'href="/projects/{project["id"]}/evaluations"' in page
    assert "Perplexity 4.25 · BLEU-4 21.0 · ROUGE-L 25.0" in page  # v1's row
    assert "Perplexity 12.50 · BLEU-4 5.0 · ROUGE-L 18.0" in page  # the base, in the step card
    assert f'href="/evaluations/{evaluation.id}"' in page
    listing = client.get(f"/projects/{project['id']}/evaluations").text
    assert "v1: perplexity 4.25 · ROUGE-L 25.0<" in listing


def test_pages_in_chinese(client, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"])
    zh = {"lang": "zh-CN"}
    checks = [
        (f"/projects/{project['id']}/evaluations", ["新建评估", "测试集", "开始评估", "通用能力"],
         ["New evaluation", "Start evaluation", "did it forget", "Models to compare"]),
        (f"/evaluations/{evaluation.id}", ["困惑度", "这些数字是如何计算的", "本列最佳", "开始盲评"],
         ["How these numbers were computed", "Worst first by", "best in this column",
          "Start the blind review", "lower is better"]),
        (f"/evaluations/{evaluation.id}/review", ["回答 A", "回答 B", "A 更好", "平局", "相关性", "指令跟随"],
         ["Answer A", "A is better", "Show the reference", "Relevance"]),
        (f"/projects/{project['id']}", ["4 · 评估", "最近评估"], ["Latest evaluation", "4 · Evaluate"]),
    ]  # fmt: skip
    for url, chinese, english in checks:
        page = client.get(url, cookies=zh).text
        for text in chinese:
            assert text in page, (url, text)
        for text in english:
            assert text not in page, (url, text)
