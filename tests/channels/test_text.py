from channels.text import split_text


def test_short_text_is_one_part():
    assert split_text("hello", 10) == ["hello"]


def test_paragraphs_stay_whole_when_they_fit():
    text = "First paragraph here.\n\nSecond one.\n\nThird."
    parts = split_text(text, 25)
    assert parts == ["First paragraph here.", "Second one.\n\nThird."]


def test_long_paragraph_breaks_at_sentences():
    text = "One sentence. Two sentence! Three sentence? Four."
    parts = split_text(text, 30)
    assert all(len(p) <= 30 for p in parts)
    assert parts == ["One sentence. Two sentence!", "Three sentence? Four."]


def test_giant_word_is_cut_but_nothing_is_lost():
    text = "a " + "x" * 25 + " b"
    parts = split_text(text, 10)
    assert all(len(p) <= 10 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_every_part_fits_on_real_text(fixtures_dir):
    text = (fixtures_dir / "squad/articles/Steam_engine.txt").read_text()
    for limit in (1600, 4096, 300):
        parts = split_text(text, limit)
        assert all(0 < len(p) <= limit for p in parts)
        assert " ".join(" ".join(parts).split()) == " ".join(text.split())
