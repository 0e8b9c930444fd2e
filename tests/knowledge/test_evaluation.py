"""`lessonbot eval knowledge`: a small SQuAD-format set made from the real dataset, asked through the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from knowledge import ranking
from knowledge.evaluation import evaluate


@pytest.fixture
def small_squad(fixtures_dir: Path, tmp_path: Path) -> Path:
    """Two real articles cut to their first five paragraphs, with their real questions, laid out like squad-dev."""
    data = json.loads((fixtures_dir / "squad/dev-v2.0.first-2-articles-5-paragraphs.json").read_text())["data"]
    folder = tmp_path / "squad-small"
    (folder / "articles").mkdir(parents=True)
    articles = []
    for article in data[:2]:
        paragraphs = article["paragraphs"][:5]
        articles.append({"title": article["title"], "paragraphs": paragraphs})
        (folder / "articles" / f"{article['title']}.txt").write_text("\n\n".join(p["context"] for p in paragraphs))
    (folder / "dev-small.json").write_text(json.dumps({"version": "v2.0", "data": articles}))
    return folder


def test_eval_reports_retrieval_answers_declines_and_latency(
    offline_settings, data_dir, small_squad, monkeypatch, capsys
):
    monkeypatch.setenv("DATA_DIR", str(data_dir))

    status = main(["eval", "knowledge", str(small_squad), "--sample", "30", "--seed", "3", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["questions"] == 30 and result["answerable"] + result["unanswerable"] == 30
    assert result["answers"] == "extractive"
    assert result["recall_at_5"] >= 0.8 and result["recall_at_1"] <= result["recall_at_5"]
    assert 0 < result["answer_hit_rate"] <= 1 and 0 <= result["decline_rate_unanswerable"] <= 1
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p95"]
    assert 0 < result["answer_chars_mean"] <= 420 and 0 < result["citation_correct"] <= 1
    answered = [row["answered_answerable"] for row in result["tradeoff"]]
    assert answered == sorted(answered, reverse=True) and answered[0] >= 0.9, "the trade-off, loosest first"
    assert not (data_dir / "chroma").exists(), "the evaluation keeps to a scratch store"


def test_fitting_writes_the_models_reports_the_held_out_half_and_leaves_the_bots_own_alone(
    offline_settings, data_dir, small_squad, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    shipped = ranking.in_use()
    fitted = tmp_path / "fitted.json"

    status = main(["eval", "knowledge", str(small_squad), "--fit", str(fitted), "--json"])

    result = json.loads(capsys.readouterr().out)
    models = json.loads(fitted.read_text())
    assert status == 0 and len(models["fitted_on"]) == 1, "every other article: one of the two"
    assert 0 < models["threshold"] < 1 and models["passages"]["features"] == list(ranking.PASSAGE_FEATURES)
    assert 0 < result["held_out"]["questions"] < result["questions"]
    assert result["fitted"]["written"] == str(fitted)
    assert ranking.in_use() is shipped and ranking.MODEL_FILE.read_text() != fitted.read_text()


def test_with_a_model_the_eval_reports_whether_its_citations_are_right(model_settings, small_squad, openai):
    result = evaluate(model_settings, small_squad, sample=12, seed=1)

    assert result["answers"] == "model standin-chat" and result["model_tokens"] > 0
    assert openai.chat_requests
    assert 0 < result["citation_correct"] <= 1, "the stand-in cites passage 1, the best one"


def test_eval_explains_a_folder_that_is_not_a_dataset(offline_settings, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    assert main(["eval", "knowledge", str(tmp_path)]) == 2
    assert "exactly one SQuAD JSON file" in capsys.readouterr().err
