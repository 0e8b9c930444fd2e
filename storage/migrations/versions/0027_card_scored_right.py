"""question_cards.scored_right: whether a question counted right at the first try in its lesson's score, set when
the lesson was finished, so the pass mark counts what the learner scored then, whatever a later review or a
re-import does; cards of lessons finished before are filled in from what the lesson's score says

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# The cards of each lesson a learner finished (their question's lesson, the learner's progress in it done).
_OF_FINISHED_LESSONS = (
    "FROM lesson_progress p JOIN questions q ON q.lesson_id = p.lesson_id "
    "WHERE p.completed_at IS NOT NULL AND q.id = question_cards.question_id AND p.user_id = question_cards.user_id"
)


def upgrade() -> None:
    with op.batch_alter_table("question_cards") as batch:
        batch.add_column(sa.Column("scored_right", sa.Boolean(), nullable=True))
    # A card never answered wrong was right at the first try, as the lesson's end counted it; one answered wrong
    # since may have been right then (a review later went wrong): first marked not right, then the lesson's score
    # (its share right) tells how many of its cards were, and the likeliest of them are marked right up to that.
    op.execute(
        "UPDATE question_cards SET scored_right = CASE WHEN attempts > 0 AND correct = attempts THEN "
        f"{_true()} ELSE {_false()} END WHERE EXISTS (SELECT 1 {_OF_FINISHED_LESSONS})"
    )
    _reconcile_with_lesson_scores()


def _true() -> str:
    return "TRUE" if op.get_bind().dialect.name == "postgresql" else "1"


def _false() -> str:
    return "FALSE" if op.get_bind().dialect.name == "postgresql" else "0"


def _reconcile_with_lesson_scores() -> None:
    bind = op.get_bind()
    short = bind.execute(sa.text(
        "SELECT p.user_id, p.lesson_id, p.score, COUNT(c.id), "
        f"SUM(CASE WHEN c.scored_right = {_true()} THEN 1 ELSE 0 END) "
        "FROM lesson_progress p JOIN questions q ON q.lesson_id = p.lesson_id "
        "JOIN question_cards c ON c.question_id = q.id AND c.user_id = p.user_id "
        "WHERE p.completed_at IS NOT NULL AND p.score IS NOT NULL "
        "GROUP BY p.user_id, p.lesson_id, p.score"
    )).all()
    for user_id, lesson_id, score, cards, right in short:
        missing = round(float(score) * cards) - int(right or 0)
        if missing <= 0:
            continue
        candidates = bind.execute(sa.text(
            "SELECT c.id FROM question_cards c JOIN questions q ON q.id = c.question_id "
            f"WHERE c.user_id = :user AND q.lesson_id = :lesson AND c.scored_right = {_false()} AND c.correct > 0 "
            "ORDER BY c.correct * 1.0 / c.attempts DESC, c.id LIMIT :missing"
        ), {"user": user_id, "lesson": lesson_id, "missing": missing}).scalars().all()
        if candidates:
            bind.execute(sa.text(f"UPDATE question_cards SET scored_right = {_true()} WHERE id = :id"),
                         [{"id": card} for card in candidates])


def downgrade() -> None:
    with op.batch_alter_table("question_cards") as batch:
        batch.drop_column("scored_right")
