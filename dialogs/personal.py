"""Your data: /export sends a learner everything the bot keeps about them as a JSON file, and `erase` deletes it.

Both carry out storage.personal_data (the table-by-table contract, described in docs/data.md) and add the files that
belong to a person: certificate PDFs, and the exports themselves, written under DATA_DIR/exports/user-<id>/ and
deleted with the person. The learner reaches them with /export and /stop → delete, an admin with /admin export and
/admin erase, an operator with `lessonbot learner export|erase`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Document
from dialogs.i18n import Translator
from dialogs.learner import tr
from dialogs.turn import Turn
from storage.personal_data import Erasure, erase_person, export_person, without_member

JSON_TYPE = "application/json"
EXPORT_FILENAME = "lessonbot-data.json"


def export_folder(data_dir: Path, user_id: int) -> Path:
    return Path(data_dir) / "exports" / f"user-{user_id}"


async def write_export(session: AsyncSession, user_id: int, *, data_dir: Path, now: datetime) -> Path:
    """The person's data as a JSON file under DATA_DIR/exports (one per request, named by its time)."""
    document = await export_person(session, user_id, now=now)
    folder = export_folder(data_dir, user_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lessonbot-data-{now:%Y%m%d-%H%M%S-%f}.json"
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def export_document(_: Translator, path: Path, *, caption: str | None = None) -> Document:
    return Document(filename=EXPORT_FILENAME, path=str(path), media_type=JSON_TYPE,
                    caption=caption or _("Everything I keep about you, as a JSON file. To delete it, send /stop."))


async def erase(
    session: AsyncSession, user_id: int, *, by: str, keep_inbound_id: int | None = None
) -> Erasure:
    """Erase a person (storage.personal_data.erase_person) in `session`'s transaction. Their files go once it has
    committed (`remove_files`): a rollback then leaves the person, and their certificates, whole."""
    return await erase_person(session, user_id, by=by, keep_inbound_id=keep_inbound_id)


def forget_in_state(turn: Turn, erasure: Erasure) -> None:
    """The turn's copy of its conversation's state, which it writes back when it commits, as the erasure left the
    row: empty in a chat of the person's own, without their steps in a group's (or another person's) chat."""
    mine = turn.conversation is not None and turn.conversation.id in erasure.own_conversations
    if mine or (turn.message.private and turn.user.id == erasure.user_id):
        turn.state.clear()
        return
    kept = dict(turn.state)
    for channel, external in erasure.identities:
        if channel == turn.message.channel:
            kept = without_member(kept, external)
    turn.state.clear()
    turn.state.update(kept)


def remove_files(erasure: Erasure, data_dir: Path | None) -> None:
    """The erased person's files: their certificates' PDFs and their exports. Call it after the erasure's commit."""
    remove_paths(erasure.files)
    if data_dir is not None:
        shutil.rmtree(export_folder(data_dir, erasure.user_id), ignore_errors=True)


def remove_paths(paths: Iterable[str]) -> None:
    """Files of rows deleted (certificates' PDFs), once the deletion has committed."""
    for path in paths:
        Path(path).unlink(missing_ok=True)


async def export(turn: Turn, _args: str) -> None:
    """/export: the learner's data, as a file, in their private chat only."""
    _ = tr(turn)
    if not turn.message.private:
        turn.say(_("I send your data only in a private chat: send /export to me there, not in a group."))
        return
    if turn.data_dir is None:
        raise RuntimeError("exports need a data folder (DATA_DIR)")
    path = await write_export(turn.session, turn.user.id, data_dir=turn.data_dir, now=turn.now)
    turn.send(export_document(_, path))
