"""Course authoring: the course format authors write in a text editor, and bringing a course into the bot.

- `authoring.format`: read a course folder, check it, and say what is wrong where (file:line, how to fix it);
- `authoring.importer`: write a checked course to the database, idempotently, learners' progress kept;
- `authoring.indexing`: put a course's lessons into the knowledge store, so questions are answered from them.

Authoring is not a conversation: the dialogs read courses from the database (storage.courses), never from here.
It may import storage, knowledge and the bot's vocabulary (bot.text), never dialogs or channels.
"""
