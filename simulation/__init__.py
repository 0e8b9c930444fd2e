"""Simulated learners that show whether the learning works: `lessonbot simulate reviews|nudges` (docs/learning.md).

- `memory.py`: what a simulated learner really remembers (the FSRS-6 memory model with the learner's own parameters),
  how they answer (right, wrong, quick, slow, away) and on which days they show up.
- `reviews.py`: learners take a course's questions under a review policy — the bot's own scheduler
  (`dialogs.review.schedule`) at its desired retention and at others, SM-2, fixed intervals, no review.
- `nudges.py`: learners keep a streak or drift away, and maybe come back when nudged; the bot's nudge planner
  (`scheduler.nudges.decide`) and bandit (`scheduler.nudges.pick_template`) against uniform and fixed choices.
- `report.py`: the tables, the JSON and the PNG charts.

The simulator drives the bot's scheduling functions as they are; nothing in the bot imports it but the command line.
"""
