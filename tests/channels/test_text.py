from channels.text import split_text, split_utf16, utf16_units


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


LIST = "Here is how to check a message:\n" + "\n".join(
    f"- **Step {n}:** check the sender's address. Then the link's real domain!" for n in range(1, 18)
)


def test_a_long_list_breaks_between_its_lines_and_keeps_every_line_break():
    parts = split_text(LIST, 300)
    assert len(parts) > 1 and all(len(p) <= 300 for p in parts)
    assert "\n".join(parts) == LIST
    assert all(part.startswith(("Here", "- **Step")) for part in parts)


def test_a_line_too_long_breaks_at_sentences_then_words_and_the_lines_around_it_stay():
    text = "First line.\nOne sentence here. Two sentence here.\nlast"
    assert split_text(text, 20) == ["First line.", "One sentence here.", "Two sentence here.", "last"]
    assert split_text("a\n" + "word " * 6 + "\nb", 12) == ["a\nword word", "word word", "word word\nb"]


CODE = "```python\n" + "\n".join(f"print({n})  # line {n}" for n in range(40)) + "\n```"


def test_a_code_block_that_fits_a_part_stays_whole_blank_lines_and_all():
    block = "```\nx = 1\n\n\ny = 2\n```"
    text = "Intro.\n\n" + block + "\n\nOutro."
    assert split_text(text, len(block) + 3) == ["Intro.", block, "Outro."]


def test_a_code_block_cut_across_parts_is_closed_and_opened_again_in_each():
    parts = split_text("Look:\n\n" + CODE, 200)
    assert len(parts) > 2 and all(len(p) <= 200 for p in parts)
    assert parts[0].startswith("Look:\n\n```python\n")
    parts[0] = parts[0].removeprefix("Look:\n\n")
    code = []
    for part in parts:
        assert part.startswith("```python\n") and part.endswith("\n```")
        code += part.removeprefix("```python\n").removesuffix("\n```").split("\n")
    assert code == CODE.split("\n")[1:-1]


def test_parts_can_be_measured_in_utf16_units():
    text = "\n".join(f"🏆 {n:02d}. 🔥🔥 Learner {n} ⭐⭐⭐ 12 lessons 🎉" for n in range(1, 41))
    parts = split_utf16(text, 1600)
    assert len(text) < 1600 < utf16_units(text) and len(parts) == 2
    assert all(utf16_units(p) <= 1600 for p in parts) and "\n".join(parts) == text
    assert split_text("🎉" * 5, 4, measure=utf16_units) == ["🎉🎉", "🎉🎉", "🎉"]


def test_bold_and_italic_cut_by_a_break_are_closed_and_opened_again_so_each_part_shows_them():
    from channels.markdown import TELEGRAM_HTML, render

    text = ("**Never type your password after following a link. Open the site yourself.** Then _check the address "
            "bar twice before you sign in_ and close the tab.")
    parts = split_text(text, 60)
    assert all(len(p) <= 60 for p in parts)
    assert parts == ["**Never type your password after following a link.**",
                     "**Open the site yourself.** Then _check the address bar_",
                     "_twice before you sign in_ and close the tab."]
    words = split_text("**" + "bold words " * 10 + "end.**", 30)
    assert words[0] == "**bold words bold words**"  # a run's words kept together, marks around them
    shown = [render(part, TELEGRAM_HTML) for part in parts]
    assert shown[0] == "<b>Never type your password after following a link.</b>"
    assert "*" not in "".join(shown) and "_" not in "".join(shown)  # no mark left to show as a character
    assert "".join(shown).count("<i>") >= 2


def test_italic_inside_bold_cut_by_a_break_is_closed_and_opened_again_inside_it():
    from channels.markdown import TELEGRAM_HTML, render

    text = "**Bold start with _nested italic words that go on and on for a while_ and the bold goes on too.**"
    parts = split_text(text, 40)
    assert all(len(part) <= 40 for part in parts)
    shown = [render(part, TELEGRAM_HTML) for part in parts]
    assert shown[0] == "<b>Bold start with <i>nested italic</i></b>"
    assert all(part.startswith("<b>") and part.endswith("</b>") for part in shown)
    assert "*" not in "".join(shown) and "_" not in "".join(shown)  # no mark left to show as a character
    assert "".join(shown).count("<i>") == len([part for part in shown if "<i>" in part]) >= 2


def test_a_sentence_end_inside_an_inline_code_span_or_a_link_is_no_place_to_break():
    """A break inside `…` or a link's [text](address) would show their marks as text in both parts: the sentence
    holding them goes whole, where it fits."""
    lure = "A parcel text is a common lure. "
    code = "It says `Your parcel is held. Pay the fee.` and links away."
    link = "Instead, [call the number on your card. Never the one in it.](https://bank.example/help) and wait."
    for held in (code, link):
        text = lure * 3 + held
        parts = split_text(text, len(lure * 3) + 40)
        assert held in parts, parts
        assert all(part.count("`") % 2 == 0 and part.count("[") == part.count("]") for part in parts), parts
