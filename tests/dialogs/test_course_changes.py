"""A learner's place and figures when things change under them: a quiz left open in another chat of theirs, a lesson
retired or shortened by the course's author, another course taken meanwhile."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select, update

from dialogs.questions import choice_value
from storage.courses import Enrollment, Lesson, Question, QuestionCard
from storage.models import OfferedChoice
from tests.dialogs.learning_support import (  # noqa: F401
    PAID,
    SAMPLE,
    Learning,
    answer_until,
    at_the_first_quiz_question,
    import_sample,
    learner_row,
    learning_bot,
    onboard,
)


async def right_answer(bot, qid):
    async with bot.db.sessions() as session:
        q = await session.get(Question, qid)
    if q.kind == "choice":
        return choice_value("quiz", q, q.correct_choice), None
    if q.kind == "true_false":
        return f"quiz:{qid}:{str(q.is_true).lower()}", None
    return None, q.accepted_answers[0]


async def answer_current(t, bot):
    last = t.last()
    if last.choices and last.choices[0].value.startswith("quiz:"):
        qid = int(last.choices[0].value.split(":")[1])
        value, _ = await right_answer(bot, qid)
        return await t.say("pressed", choice=value)
    async with bot.db.sessions() as session:
        qs = list(await session.scalars(select(Question)))
    q = next(q for q in qs if q.prompt in last.text)
    return await t.say(q.accepted_answers[0])


async def test_stale_quiz_in_other_chat_moves_place_back(learning_bot):
    bot, channel = learning_bot
    a = Learning(bot, channel, chat="ann")
    await onboard(a)
    await a.press("Start my first lesson")
    await a.say("/next")
    await a.say("/next")
    await a.press("Take the quiz ▸")          # chat A: question 1 of lesson 1 is open
    code_text, *_ = await a.say("/link")      # (and the open question asked again)
    code = code_text.split("Your link code is ")[1][:11]
    b = Learning(bot, channel, chat="ann-phone")
    [linked] = await b.say(f"/link {code}")
    assert linked.startswith("Linked!")
    user, _ = await learner_row(bot, "test", "ann")

    # chat B: the whole quiz of lesson 1, then all of lesson 2, then lesson 3 begins
    await b.say("/next")
    for _ in range(3):
        await answer_current(b, bot)
    assert b.last().text.startswith("🎉 Lesson done: What a phishing message wants")
    await b.press("More now")
    for _ in range(10):
        txt = b.last().text
        if "Take the quiz" in b.labels() or "Quiz time" in txt:
            break
        await b.say("/next")
    await b.say("/next")
    for _ in range(2):
        await answer_current(b, bot)
    assert b.last().text.startswith("🎉 Lesson done: Check who is really writing"), b.last().text
    [third] = await b.press("More now")
    assert third.startswith("📘 Lesson 3 of 5")
    async with bot.db.sessions() as session:
        before = await session.scalar(select(Enrollment).where(Enrollment.user_id == user.id))
        lesson3 = await session.get(Lesson, before.current_lesson_id)
    assert lesson3.position == 3 and before.current_part == 1

    # chat A: the old quiz, still open there, is answered (each answer "already answered")
    replies = []
    async with bot.db.sessions() as session:
        l1 = await session.scalar(select(Lesson).where(Lesson.position == 1))
        qids = list(await session.scalars(select(Question.id).where(Question.lesson_id == l1.id)
                                          .order_by(Question.position)))
    for qid in qids:
        value, typed = await right_answer(bot, qid)
        replies += await a.say(typed or "pressed", choice=value)
    async with bot.db.sessions() as session:
        after = await session.scalar(select(Enrollment).where(Enrollment.user_id == user.id))
        lesson = await session.get(Lesson, after.current_lesson_id)
    [again] = await b.say("/next")
    assert lesson.position == 3, f"place moved back to lesson {lesson.position} part {after.current_part}"


async def test_retiring_current_and_earlier_lesson_skips_the_next(learning_bot, tmp_path):
    bot, channel = learning_bot
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "📘 Lesson 3 of 5")   # lessons 1 and 2 done, lesson 3 begun

    # the author drops lesson 2 (done) and lesson 3 (the learner's current one)
    yaml = (folder / "course.yaml").read_text()
    for dropped in ("02-check-the-sender.md", "03-read-a-link.md"):
        yaml = yaml.replace(f"      - lessons/{dropped}\n", "")
    (folder / "course.yaml").write_text(yaml)
    for name in ("02-check-the-sender.md", "03-read-a-link.md"):
        (folder / "lessons" / name).rename(folder / "lessons" / ("_" + name))
    await import_sample(bot, folder)

    [nxt] = await t.say("/next")
    assert nxt.startswith("📘 Lesson 2 of 3: Odd requests and attachments"), nxt[:80]


async def test_home_names_the_lesson_next_goes_on_at_when_the_author_retired_the_learners_own(learning_bot, tmp_path):
    """Her lesson (3) and the one before it retired: Home names the lesson /next brings, not the course's first."""
    bot, channel = learning_bot
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "📘 Lesson 3 of 5")
    yaml = (folder / "course.yaml").read_text()
    for dropped in ("02-check-the-sender.md", "03-read-a-link.md"):
        yaml = yaml.replace(f"      - lessons/{dropped}\n", "")
        (folder / "lessons" / dropped).rename(folder / "lessons" / ("_" + dropped))
    (folder / "course.yaml").write_text(yaml)
    await import_sample(bot, folder)

    [home] = await t.say("/home")
    assert "📘 Next: lesson 2 of 3, “Odd requests and attachments”" in home, home
    [nxt] = await t.say("/next")
    assert nxt.startswith("📘 Lesson 2 of 3: Odd requests and attachments")


async def test_shortened_lesson_resends_a_read_part(learning_bot, tmp_path):
    bot, channel = learning_bot
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await t.say("/next")
    [third] = await t.say("/next")
    assert third.endswith("(3/3)") and t.labels() == ["Take the quiz ▸", "Later"]

    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    body, quiz = lesson.read_text().split("## Quiz")
    lesson.write_text(body.rsplit("\n---\n", 1)[0] + "\n\n## Quiz" + quiz)  # its third part dropped
    await import_sample(bot, folder)

    replies = await t.press("Take the quiz ▸")
    assert replies[0].startswith("Quiz time"), replies[0][-80:]


async def test_progress_accuracy_is_not_of_the_course_shown(learning_bot):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await t.say("/next")
    await t.say("/next")
    await t.press("Take the quiz ▸")
    await t.press("Authority")           # wrong
    await t.say("true")                  # wrong
    await t.say("no idea")               # wrong
    await t.say("/settings course passwords")
    [progress] = await t.say("/progress")
    assert "Passwords that hold" in progress
    assert "0 of 3 answers right" not in progress, "accuracy of the other course shown under this course's heading"


async def finished_then_a_lesson_added(bot, channel, tmp_path, *, after: str) -> Learning:
    """A learner who finished the sample course; then its author adds "Deepfake calls" after the lesson file
    `after`."""
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🏆")
    await bot.settle()
    (folder / "lessons" / "06-new.md").write_text("---\nid: new-one\ntitle: Deepfake calls\n---\n\nNew content.\n")
    yaml = (folder / "course.yaml").read_text()
    listed = f"      - lessons/{after}\n"
    (folder / "course.yaml").write_text(yaml.replace(listed, listed + "      - lessons/06-new.md\n"))
    await import_sample(bot, folder)
    return t


async def test_a_lesson_added_after_the_learner_finished_is_theirs_to_take(learning_bot, tmp_path):
    bot, channel = learning_bot
    t = await finished_then_a_lesson_added(bot, channel, tmp_path, after="05-if-you-clicked.md")
    [progress] = await t.say("/progress")
    assert "5 of 6 done" in progress and "Next lesson" in t.labels()  # the one added is there to take
    [home] = await t.say("/home")
    assert "📘 Next: lesson 6 of 6, “Deepfake calls”" in home and "Finished" not in home, home
    [added] = await t.say("/next")
    assert added.startswith("📘 Lesson 6 of 6: Deepfake calls")


async def test_a_lesson_inserted_mid_course_after_the_learner_finished_brings_no_lesson_again(learning_bot, tmp_path):
    bot, channel = learning_bot
    t = await finished_then_a_lesson_added(bot, channel, tmp_path, after="02-check-the-sender.md")
    [added] = await t.say("/next")
    assert added.startswith("📘 Lesson 3 of 6: Deepfake calls")
    await t.say("/next")  # its end: every other lesson was done before
    assert not any(text.startswith("📘 Lesson 4 of 6") for text in await t.say("/next"))



async def at_the_first_question_then_choices_rewritten(bot, channel, tmp_path, choices: str):
    """A learner shown the sample course's first quiz question ("Authority", "Urgency", "Reward"); then its author
    writes its choices as `choices` and imports the course again. The learner, and the choices they were shown."""
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    shown = t.last().choices
    assert [choice.label for choice in shown] == ["Authority", "Urgency", "Reward"]
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    lesson.write_text(lesson.read_text().replace("- [ ] Authority\n- [x] Urgency\n- [ ] Reward", choices))
    await import_sample(bot, folder)
    return t, shown


async def test_a_quiz_button_from_before_a_re_import_is_graded_on_the_choice_it_showed(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, shown = await at_the_first_question_then_choices_rewritten(
        bot, channel, tmp_path, "- [ ] Authority\n- [ ] Reward\n- [x] Urgency")
    [feedback, _next] = await t.say("pressed", choice=shown[1].value)  # "Urgency": second then, third now
    assert feedback.startswith("✅ Right!")


async def test_a_quiz_button_whose_choice_is_gone_asks_the_question_as_it_is_now(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, shown = await at_the_first_question_then_choices_rewritten(
        bot, channel, tmp_path, "- [ ] Authority\n- [x] Urgency\n- [ ] A reward")
    [changed, _asked] = await t.say("pressed", choice=shown[2].value)  # "Reward": reworded since
    assert changed == "That question has changed since it was sent. Here it is as it is now:"
    assert t.labels() == ["Authority", "Urgency", "A reward"]
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0  # nothing graded


async def test_choices_alike_but_for_punctuation_are_each_graded_as_pressed(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, shown = await at_the_first_question_then_choices_rewritten(
        bot, channel, tmp_path, "- [ ] Authority\n- [x] Urgency\n- [ ] Reward")  # (no change: the choices as shown)
    folder = tmp_path / "course"
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    lesson.write_text(lesson.read_text().replace("- [ ] Authority\n- [x] Urgency\n- [ ] Reward",
                                                 "- [ ] C\n- [x] C#\n- [ ] C++"))
    await import_sample(bot, folder)
    await t.say("/next")  # the question as it is now
    assert t.labels() == ["C", "C#", "C++"]
    [feedback, *_] = await t.press("C#")
    assert feedback.startswith("✅ Right!")


async def test_a_quiz_button_sent_before_fingerprints_of_exact_words_is_still_graded(learning_bot, tmp_path):
    import hashlib

    from bot.text import answer_key

    bot, channel = learning_bot
    t, shown = await at_the_first_question_then_choices_rewritten(
        bot, channel, tmp_path, "- [ ] Authority\n- [x] Urgency\n- [ ] Reward")  # (no change)
    question = shown[1].value.rsplit(":", 1)[0]  # "quiz:<id>:1"
    first = hashlib.sha256(answer_key("Urgency").encode()).hexdigest()[:6]  # as the first buttons carried it
    async with bot.db.transaction() as session:  # offered as such a button was (its value is the offer's)
        await session.execute(update(OfferedChoice).where(OfferedChoice.value == shown[1].value)
                              .values(value=f"{question}:{first}"))
    [feedback, *_] = await t.say("Urgency", choice=f"{question}:{first}")
    assert feedback.startswith("✅ Right!")


async def test_a_question_taken_out_of_the_course_while_it_was_asked_goes_on_to_the_next(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    asked = t.last()
    async with bot.db.transaction() as session:  # as a re-import retires a question the file no longer has
        await session.execute(update(Question).where(Question.id == int(asked.choices[0].value.split(":")[1]))
                              .values(retired=True))
    [taken_out, following] = await t.say("pressed", choice=asked.choices[1].value)
    assert taken_out == "That question was taken out of the course since I asked it, so it does not count."
    assert following.startswith("Question 1 of 2")  # it does not count: the quiz has two questions now
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0  # nothing graded
    await answer_until(t, bot, "Question 2 of 2")
    [_feedback, done, *_] = await t.say("smishing")
    assert "Quiz: 2 of 2 right." in done, done


async def test_a_question_taken_out_of_the_course_before_its_turn_in_an_open_quiz_leaves_its_count(
        learning_bot, tmp_path):
    """A question of an open quiz that a re-import takes out before it is asked is not asked, nor counted in the
    quiz's "Question N of M", as it is not in the score at the lesson's end."""
    bot, channel = learning_bot
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    async with bot.db.transaction() as session:  # the lesson's second question, retired by a re-import
        [_first, second, _third] = await session.scalars(select(Question.id).where(
            Question.lesson_id == select(Question.lesson_id).where(
                Question.id == int(t.last().choices[0].value.split(":")[1])).scalar_subquery()
        ).order_by(Question.position))
        await session.execute(update(Question).where(Question.id == second).values(retired=True))
    [feedback, following] = await t.press("Urgency")
    assert feedback.startswith("✅ Right!")
    assert following.startswith("Question 2 of 2\nWhat is phishing by text message (SMS) often called?")
    [_feedback, done, *_] = await t.say("smishing")
    assert "Quiz: 2 of 2 right." in done, done


async def test_a_question_added_to_the_lesson_while_its_quiz_is_open_is_asked_before_the_lesson_ends(
        learning_bot, tmp_path):
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    lesson.write_text(lesson.read_text().rstrip("\n") + "\n\n### pause-first\nTrue or false: a real bank can wait "
                      "five minutes while you check.\n\nAnswer: true\n\nExplanation: Only a scam needs you to hurry.\n")
    await import_sample(bot, folder)
    await answer_until(t, bot, "Question 4 of 4")   # the three asked before, then the one added
    assert "a real bank can wait five minutes" in t.last().text
    [feedback, done, *_] = await t.say("true")
    assert feedback.startswith("✅ Right!")
    assert done.startswith("🎉 Lesson done: What a phishing message wants") and "Quiz: 4 of 4 right." in done, done


async def test_a_quiz_button_from_before_a_re_import_made_its_question_free_text_is_not_graded(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, shown = await at_the_first_question_then_choices_rewritten(
        bot, channel, tmp_path, "Accepted answers:\n- urgency\n- pressure")
    [changed, asked] = await t.say("pressed", choice=shown[1].value)  # "Urgency", a button no longer offered
    assert changed == "That question has changed since it was sent. Here it is as it is now:"
    assert asked.endswith("(Type your answer.)")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0  # nothing graded
    [feedback, *_] = await t.say("Urgency")
    assert feedback.startswith("✅ Right!")


async def test_a_question_moved_to_another_lesson_while_it_was_asked_goes_on_to_the_next(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    await t.press("Urgency")  # question 1 answered; question 2, act-at-once, asked
    first, third = folder / "lessons" / "01-what-phishing-wants.md", folder / "lessons" / "03-read-a-link.md"
    text = first.read_text()
    start, end = text.index("### act-at-once"), text.index("### smishing-name")
    first.write_text(text[:start] + text[end:])  # the author moves it to lesson 3
    third.write_text(third.read_text().rstrip("\n") + "\n\n" + text[start:end])
    await import_sample(bot, folder)
    [moved, following] = await t.press("False")
    assert moved == "That question has moved to another lesson since I asked it, so it does not count here."
    assert following.startswith("Question 2 of 2\nWhat is phishing by text message (SMS) often called?")
    [feedback, done, *_] = await t.say("smishing")
    assert feedback.startswith("✅ Right!") and "Quiz: 2 of 2 right." in done
