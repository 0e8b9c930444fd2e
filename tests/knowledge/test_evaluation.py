"""`lessonbot eval knowledge`: a small SQuAD-format set made from the real dataset, asked through the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from knowledge import extractive, ranking
from knowledge.evaluation import Question, answerability_examples, evaluate
from knowledge.retrieval import Passage


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


def test_the_answerability_model_learns_from_quotes_that_answer_and_from_unanswerable_questions_only():
    passage = Passage(
        chunk_id="c", course_id="eval", lesson_id="a.txt", lesson_title="A", heading_path="", source="a.txt",
        text="Watt improved the engine in 1776.", score=1.0, similarity=0.5, keyword_score=1.0,
    )

    def quote(features: float) -> extractive.Quote:
        return extractive.Quote(((0, 0, "Watt improved the engine in 1776."),), (passage,), 0.5, True, (features,))

    def question(answers: tuple[str, ...]) -> Question:
        return Question("When was the engine improved?", "a.txt", 0, answers, answerable=bool(answers))

    asked = [question(("1776",)), question(("1712",)), question(())]
    quotes = [quote(1.0), quote(2.0), quote(3.0), extractive.Quote((), (passage,), 0.0, False)]

    rows, labels, answerable_rows = answerability_examples([*asked, question(("1776",))], quotes)

    assert rows == [(1.0,), (3.0,)] and labels == [True, False], "the quote that misses 1712 teaches nothing"
    assert answerable_rows == [(1.0,), (2.0,)], "the threshold is set on every answerable question that got a quote"
