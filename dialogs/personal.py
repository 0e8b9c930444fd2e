"""Your data: /export sends a learner everything the bot keeps about them as a JSON file, and `erase` deletes it.

Both carry out storage.personal_data (the table-by-table contract, described in docs/data.md) and add the files that
belong to a person: certificate PDFs, and the exports themselves, written under DATA_DIR/exports/user-<id>/ and
deleted with the person. The learner reaches them with /export and /stop → delete, an admin with /admin export and
/admin erase, an operator with `lessonbot learner export|erase`.

Erasing a person is one sequence, owned here: the roles refusal, what could still charge them stopped (subscriptions,
open payment pages), the erasure, their files once it has committed (and, in a turn, the turn's copy of the chat's
state). `erase_in_turn` runs it from a message (/stop → delete, /admin erase), `erase_outside_turn` from the
dashboard and the command line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Document, address_as_named
from dialogs import flow
from dialogs.i18n import Translator
from dialogs.learner import tr
from dialogs.turn import Turn
from storage.admins import AdminRole
from storage.db import Database
from storage.learners import Certificate
from storage.models import OutboxMessage, User
from storage.outbox import OutboxStatus
from storage.personal_data import Erasure, Person, erase_person, export_person, find_person, person_of, without_member

if TYPE_CHECKING:
    from dialogs.payments import PaymentDesk

JSON_TYPE = "application/json"
EXPORT_FILENAME = "lessonbot-data.json"
EXPORT_DAYS = 7  # an export file is kept this long after it was written (its send is long done), then swept
# A file younger than this that no row names yet may be one whose turn has not committed (a certificate rendered
# before its row is written, an export for a person just made): the sweep leaves it for the next night.
UNNAMED_GRACE = timedelta(hours=1)
_IN_CHUNK = 500  # codes looked up in one statement


EXPORTS_FOLDER = "exports"  # DATA_DIR/exports/user-<id>/


async def person_at(session: AsyncSession, address: str) -> Person | None:
    """The person an admin or an operator names as `channel:id`, the address read as its channel names people, as
    ADMINS and roles read it (`address_as_named`: whatsapp:15551234567 is whatsapp:+15551234567); None: nobody."""
    return await find_person(session, address_as_named(address.strip()) or address)


def export_folder(data_dir: Path, user_id: int) -> Path:
    return Path(data_dir) / EXPORTS_FOLDER / f"user-{user_id}"


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


class ChargesElsewhere(Exception):
    """The person has subscriptions with platforms this process is not connected to (`platforms`): erased here, they
    would go on renewing, charging someone no longer known."""

    def __init__(self, platforms: list[str]) -> None:
        super().__init__(", ".join(platforms))
        self.platforms = platforms


class NotThatPerson(Exception):
    """The user number no longer names the person it was read for: they were erased, and (SQLite gives an erased
    person's number to the next new one: its users table has no AUTOINCREMENT) someone else may have it now."""


def person_stamp(created_at: datetime) -> str:
    """Who a user number named when a page or a link was made: their row's creation time, to the microsecond. A
    number can be given again; this, with it, names one person only."""
    return f"{created_at.astimezone(timezone.utc):%Y%m%d%H%M%S%f}"


async def refuse_another_person(session: AsyncSession, user_id: int, stamp: str | None) -> None:
    """NotThatPerson, unless `user_id` is still the person `stamp` (their `person_stamp`) was made for."""
    created_at = await session.scalar(select(User.created_at).where(User.id == user_id))
    if created_at is None or person_stamp(created_at) != stamp:
        raise NotThatPerson(user_id)


class HoldsRoles(Exception):
    """The person holds admin roles, and whoever asked for their erasure or their export may not deal with roles
    (only an owner may): an erasure would take the roles away; an export would hand over what the person does and
    is shown as an admin (their commands and the answers: figures, other learners' data) beyond the asker's role."""


async def refuse_roles_holder(
    session: AsyncSession, user_id: int, *, may_deal_with_roles: bool, owners: Collection[str] = ()
) -> None:
    """HoldsRoles, if the person holds admin roles (`holds_roles`) and whoever asks may not deal with roles (the
    area "roles" of dialogs/roles.py: an owner): the one rule of an erasure and an export by someone else."""
    if not may_deal_with_roles and await holds_roles(session, user_id, owners):
        raise HoldsRoles(user_id)


async def erase(
    session: AsyncSession, user_id: int, *, by: str, keep_inbound_id: int | None = None, may_take_roles: bool = True,
    owners: Collection[str] = (),
) -> Erasure:
    """Erase a person (storage.personal_data.erase_person) in `session`'s transaction. Their files go once it has
    committed (`remove_files`): a rollback then leaves the person, and their certificates, whole. `may_take_roles`:
    whether the one who asked may take admin roles away (the person themselves, an owner, the command line); if not
    and the person holds any, HoldsRoles is raised and nothing is erased."""
    await refuse_roles_holder(session, user_id, may_deal_with_roles=may_take_roles, owners=owners)
    return await erase_person(session, user_id, by=by, keep_inbound_id=keep_inbound_id)


async def erase_in_turn(turn: Turn, user_id: int, *, by: str, may_take_roles: bool = True) -> Erasure:
    """Erase a person from a message being processed (/stop → delete, /admin erase), in order: HoldsRoles if
    `may_take_roles` is false and they hold any (raised before anything is stopped), ChargesElsewhere if a
    subscription of theirs is with a platform this process is not connected to (a web chat's, without Telegram:
    raised before anything is stopped or erased), their subscriptions cancelled
    and their open payment pages closed with the platforms (outside the transaction: the turn is replayed, the roles
    checked again), the erasure in the turn's transaction keeping the message being processed, their files once it
    has committed, and the turn's copy of the chat's state as the erasure left the row. `by`: who asked, for the
    audit. What is said is the caller's."""
    from dialogs.payments import stop_charges_of  # payments → linking → personal: imported when needed

    await refuse_roles_holder(turn.session, user_id, may_deal_with_roles=may_take_roles, owners=turn.owners)
    await stop_charges_of(turn, user_id)  # nothing is charged again for a person no longer known
    # The roles were checked above, in this same transaction.
    erasure = await erase(turn.session, user_id, by=by, keep_inbound_id=turn.inbound_id)
    turn.after_commit.append(partial(remove_files, erasure, turn.data_dir))
    forget_in_state(turn, erasure)  # typed in a group they took part in: their steps there go too
    return erasure


async def erase_outside_turn(
    db: Database, user_id: int, *, by: str, may_take_roles: bool, data_dir: Path | None,
    desk: Callable[[], AbstractAsyncContextManager[PaymentDesk]], owners: Collection[str] = (),
    stamp: str | None = None,
) -> Erasure:
    """Erase a person from outside a turn (the dashboard, `lessonbot learner erase`), in `erase_in_turn`'s order:
    HoldsRoles if `may_take_roles` is false and they hold any (raised before anything is stopped), their
    subscriptions cancelled and open payment pages closed through `desk` (entered only if there are any: the command
    line opens a channel for it), the erasure in a transaction of its own (which checks the roles again: they may
    have been granted meanwhile), and their files once it has committed. ChargesElsewhere, before anything is
    stopped or erased, when a subscription's platform is not connected to `desk`. `stamp`, when given (a page's
    `person_stamp` of the person it showed): NotThatPerson, before anything is stopped and again in the erasure's
    transaction, if the number names someone else by then. What is said is the caller's."""
    # payments → linking → personal: imported when needed
    from dialogs.payments import open_charges, platforms_out_of_reach, stop_charges

    async with db.sessions() as session:
        if stamp is not None:
            await refuse_another_person(session, user_id, stamp)
        await refuse_roles_holder(session, user_id, may_deal_with_roles=may_take_roles, owners=owners)
        charges = await open_charges(session, user_id)
    if charges:  # nothing is charged again for a person no longer known
        async with desk() as payments:
            if elsewhere := platforms_out_of_reach(payments, charges):
                raise ChargesElsewhere(elsewhere)
            await stop_charges(payments, charges)
    async with db.transaction() as session:
        if stamp is not None:
            await refuse_another_person(session, user_id, stamp)
        erasure = await erase(session, user_id, by=by, may_take_roles=may_take_roles, owners=owners)
    remove_files(erasure, data_dir)  # committed
    return erasure


async def holds_roles(session: AsyncSession, user_id: int, owners: Collection[str] = ()) -> bool:
    """Whether any address of the person holds an admin role: a stored one (an erasure would take it away), or an
    owner's by configuration (`owners`, the ADMINS setting: an erasure would take their audit trail and sessions)."""
    person = await person_of(session, user_id)
    if set(person.addresses) & set(owners):
        return True
    return await session.scalar(
        select(AdminRole.id).where(AdminRole.identity.in_(person.addresses)).limit(1)
    ) is not None


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


async def sweep_files(session: AsyncSession, data_dir: Path, *, now: datetime) -> dict[str, int]:
    """The nightly sweep of DATA_DIR's personal files: certificates' PDFs no certificate row names, export folders
    of people who no longer exist, and exports older than EXPORT_DAYS that no reply still to be sent carries. It
    closes what `remove_files` cannot: files of an erasure whose process stopped between its commit and their
    removal, a PDF rendered for a turn that then failed. Returns the files (and folders) removed, by kind."""
    folder = Path(data_dir)
    settled = (now - UNNAMED_GRACE).timestamp()
    pdfs = await asyncio.to_thread(_files_before, folder / "certificates", "*.pdf", settled)
    named: set[str] = set()
    stems = sorted(path.stem for path in pdfs)
    for start in range(0, len(stems), _IN_CHUNK):
        chunk = stems[start:start + _IN_CHUNK]
        named.update(await session.scalars(select(Certificate.code).where(Certificate.code.in_(chunk))))
    unnamed = [path for path in pdfs if path.stem not in named]
    people = await asyncio.to_thread(_export_folders, folder / EXPORTS_FOLDER)
    ids = sorted(people)
    living: set[int] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        living.update(await session.scalars(select(User.id).where(User.id.in_(ids[start:start + _IN_CHUNK]))))
    gone = [people[user_id] for user_id in ids if user_id not in living]
    expired = (now - timedelta(days=EXPORT_DAYS)).timestamp()
    old = await asyncio.to_thread(_old_exports, [people[i] for i in ids if i in living], expired)
    waiting = await _files_still_to_send(session) if old else set()
    return await asyncio.to_thread(_sweep, unnamed, gone, [path for paths in old.values() for path in paths
                                                            if path.resolve() not in waiting], settled)


# A reply not sent yet may still carry a file: an export waiting for WhatsApp's window to open, or dead until an admin
# sends it again
_UNSENT = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.WAITING, OutboxStatus.DEAD)


async def _files_still_to_send(session: AsyncSession) -> set[Path]:
    """The export files that unsent replies carry, to whichever chat (a learner's own, or an admin's /admin export):
    an export older than EXPORT_DAYS stays for them. Few replies wait with a file: the database finds those whose
    payload names an exports folder, and their paths are read here."""
    payloads = await session.scalars(
        select(OutboxMessage.payload).where(OutboxMessage.status.in_(_UNSENT),
                                            cast(OutboxMessage.payload, Text).contains(EXPORTS_FOLDER))
    )
    return {Path(payload["path"]).resolve() for payload in payloads if isinstance(payload.get("path"), str)}


def _old_exports(folders: list[Path], expired: float) -> dict[int, list[Path]]:
    """The exports written before `expired`, by the person's id (of their folder's name)."""
    found = {int(folder.name.removeprefix("user-")): _files_before(folder, "*.json", expired) for folder in folders}
    return {user_id: paths for user_id, paths in found.items() if paths}


def _files_before(folder: Path, pattern: str, moment: float) -> list[Path]:
    """The files of `folder` matching `pattern` last written before `moment` (a POSIX time)."""
    if not folder.is_dir():
        return []
    return [path for path in folder.glob(pattern) if path.is_file() and path.stat().st_mtime < moment]


def _export_folders(exports: Path) -> dict[int, Path]:
    """DATA_DIR/exports/user-<id> folders, by the person's id."""
    if not exports.is_dir():
        return {}
    found = {}
    for path in exports.iterdir():
        number = path.name.removeprefix("user-")
        if path.is_dir() and path.name.startswith("user-") and number.isascii() and number.isdigit():
            found[int(number)] = path
    return found


def _sweep(unnamed: list[Path], gone: list[Path], expired: list[Path], settled: float) -> dict[str, int]:
    removed = {"certificates": 0, "exports": 0}
    for path in unnamed:
        path.unlink(missing_ok=True)
        removed["certificates"] += 1
    for folder in gone:  # a person erased: everything, unless something was written there within the grace
        files = [path for path in folder.glob("*") if path.is_file()]
        if any(path.stat().st_mtime >= settled for path in files):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed["exports"] += len(files)
    for path in expired:
        path.unlink(missing_ok=True)
        removed["exports"] += 1
    return removed



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
    await flow.resume(turn)  # in the middle of setting up: its question, asked again after the file
