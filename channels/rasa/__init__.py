"""Rasa: Lessonbot's lessons, quizzes and answers inside an organisation's Rasa assistant.

A Rasa server calls Lessonbot's action server (bot/rasa_actions.py, `lessonbot rasa-actions`); what the tracker says
becomes a message here (`tracker.py`), a reply becomes Rasa's response JSON (`render.py`), and a reply nobody asked
for (a lesson at the learner's hour, a nudge) goes to the Rasa server's `trigger_intent` (`channel.py`).
"""

from channels.rasa.channel import RasaChannel

__all__ = ["RasaChannel"]
