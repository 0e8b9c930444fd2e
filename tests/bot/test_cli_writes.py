"""Where a command writes what it made (`learner export --output`, `simulate --charts`): a place it cannot write is
said in one line, "Cannot write PATH: why", with exit status 2 and no traceback, before the work when it can be seen
then, and nothing is left half-written."""

from __future__ import annotations

import asyncio

import pytest

from bot.cli import main
from bot.core import Lessonbot
from tests.dialogs.learning_support import import_sample
from tests.simulation.test_command import simulate  # noqa: F401
from tests.support import RecordingChannel, Transcript


async def cli(*argv: str) -> int:
    """`lessonbot …` as typed; in a thread, since each command runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
async def ann_known(settings, monkeypatch):
    """A learner, test:ann, in the database the command line is pointed at."""
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])
    await import_sample(bot)
    await Transcript(bot, channel, chat="ann").say("hello")
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    yield
    await bot.stop()


async def test_learner_export_names_an_output_it_cannot_write(ann_known, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "ann.json"
    # seen before the export is read: even an unknown learner gets this answer first
    assert await cli("learner", "export", "test:nobody", "--output", str(missing)) == 2
    assert capsys.readouterr().err == (f"Cannot write {missing}: there is no folder {missing.parent}. Make it, or give "
                                       "--output a file in a folder that exists.\n")
    assert await cli("learner", "export", "test:ann", "--output", str(tmp_path)) == 2
    assert capsys.readouterr().err == (f"Cannot write {tmp_path}: it is a folder. Give --output a file name, e.g. "
                                       f"{tmp_path / 'learner.json'}.\n")
    assert not (tmp_path / "no").exists() and not (tmp_path / "learner.json").exists()
    # met only as it is written: a full disk
    assert await cli("learner", "export", "test:ann", "--output", "/dev/full") == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == ("Cannot write /dev/full: No space left on device. Give --output a file you "
                                         "may write.\n")
    assert await cli("learner", "export", "test:ann", "--output", str(tmp_path / "ann.json")) == 0  # a good one
    assert '"test:ann"' in (tmp_path / "ann.json").read_text(encoding="utf-8")


SMALL = ("--learners", "10", "--days", "5")


@pytest.mark.parametrize("kind", ["reviews", "nudges"])
def test_simulate_names_a_charts_folder_it_cannot_write_before_it_simulates(simulate, tmp_path, kind):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    for charts, why in ((taken, "it is a file, not a folder"), (taken / "charts", "Not a directory")):
        code, out, err = simulate(kind, "--charts", str(charts), *SMALL)
        assert code == 2 and out == ""
        assert err == f"Cannot write {charts}: {why}. Give --charts a folder you may write (it is made if missing).\n"
    assert taken.read_text() == "mine\n"  # (and no simulation ran: its progress lines are missing from err)


def test_simulate_names_a_chart_it_cannot_write_after_it_simulates(simulate, tmp_path):
    (tmp_path / "charts" / "regret.png").mkdir(parents=True)  # a folder where the chart goes
    code, out, err = simulate("nudges", "--charts", str(tmp_path / "charts"), *SMALL)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1] == (f"Cannot write {tmp_path / 'charts' / 'regret.png'}: Is a directory. Give --charts "
                                    "a folder you may write (it is made if missing).")
