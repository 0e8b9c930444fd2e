"""Settings found wrong at start-up, said once and clearly: a secret refused is never repeated, a misspelt name in the
.env file is named (with the setting it was probably meant to be), and knowledge settings that cannot work together
stop start-up instead of failing every question later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings


def _lessonbot(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(cwd / "var"), **env},
        capture_output=True, text=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL,
    )


# secrets -------------------------------------------------------------------------------------------------------------


def test_the_secret_settings_are_those_whose_name_ends_in_a_secret_word():
    from bot.config import SECRET_SETTINGS

    expected = {
        "SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TWILIO_AUTH_TOKEN", "SLACK_SIGNING_SECRET",
        "SLACK_BOT_TOKEN", "SLACK_CLIENT_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "RASA_TOKEN",
        "RASA_ACTIONS_TOKEN", "OPENAI_API_KEY",
    }
    assert expected == SECRET_SETTINGS  # (not KNOWLEDGE_DAILY_TOKEN_BUDGET, KNOWLEDGE_TOKENIZER_DIR)
    settings = {name.upper() for name in Settings.model_fields}
    assert settings >= SECRET_SETTINGS


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("STRIPE_SECRET_KEY", "whsec_REALSIGNINGSECRET123", "never the publishable pk_ key"),  # the two secrets swapped
    ("TELEGRAM_WEBHOOK_SECRET", "real secret with spaces!", "expected 1-256 letters"),
    ("SECRET_KEY", "realsecret", "at least 16 characters"),
    # copied from an API address with its "bot", or not the token at all: every send to Telegram would be refused
    ("TELEGRAM_BOT_TOKEN", "bot7004311858:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", 'without the "bot"'),
    ("TELEGRAM_BOT_TOKEN", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "the bot's number, a colon and letters"),
    ("TELEGRAM_BOT_TOKEN", "7004311858: AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "e.g. 123456789:ABC-DEF"),
    # an API key's secret in place of the Auth Token: every send refused, and no webhook's signature would match
    ("TWILIO_AUTH_TOKEN", "Wq3kT9vLx2RbN7cYp4HsJ8dFg6ZmA1eQ", "32 hex digits (not an API key's secret"),
    # the installing person's token: every lesson and quiz would be posted as that person, not as the app
    ("SLACK_BOT_TOKEN", "xoxp-2210535565-2213311434-7731826183-3f2c", "not a user token (xoxp-, which posts as"),
    ("SLACK_BOT_TOKEN", "xapp-1-A0123456789-1234567890123-abcdef", "or an app-level token (xapp-)"),
    # the API key where the endpoint's signing secret goes: every payment's report would be refused, nothing opened
    ("STRIPE_WEBHOOK_SECRET", "sk_test_51Hx2qLRealKeyValue", "whsec_… (Dashboard → Developers → Webhooks"),
])
def test_a_secret_refused_is_not_repeated(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert value not in message and value[:6] not in message
    assert f"{variable}: " in message and expected in message
    assert f"(got {len(value)} characters, not shown: it is a secret)" in message


def test_a_telegram_token_is_taken_without_the_blanks_around_it(monkeypatch):
    token = "7004311858:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", f" {token}\n")  # as a secret file or a copy leaves it
    assert load_settings(_env_file=None).telegram_bot_token == token


@pytest.mark.parametrize(("variable", "value"), [
    ("TELEGRAM_BOT_TOKEN", "7004311858:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
    ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),  # the HMAC key of every request's signature
    ("SLACK_BOT_TOKEN", "xoxb-2210535565-2213311434-7731826183"),
    ("SLACK_CLIENT_SECRET", "3f2c9a8b7d6e5f4a3b2c1d0e9f8a7b6c"),  # sent with every installation's code
    ("STRIPE_SECRET_KEY", "sk_test_51Hx2qLRealKeyValue"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_REALSIGNINGSECRET123"),
    ("OPENAI_API_KEY", "sk-proj-RealKeyValue0123456789"),  # in every model call's Authorization header
    ("RASA_TOKEN", "rasa-token-0123456789"),  # compared by Rasa with the ?token= of every trigger_intent
    ("RASA_ACTIONS_TOKEN", "actions-token-0123456789"),  # compared with the ?token= of every action call
])
def test_a_platforms_secret_is_taken_without_the_line_break_a_secret_file_leaves(monkeypatch, variable, value):
    """Kept with it, the secret fails every call that carries it, or refuses every request it checks."""
    monkeypatch.setenv(variable, f"{value}\n")
    assert getattr(load_settings(_env_file=None), variable.lower()) == value


def test_serve_does_not_start_on_a_telegram_token_of_the_wrong_shape(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    token = "bot7004311858:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # copied from an address of the Bot API
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "0123456789abcdef")
    assert main(["serve", "--host", "256.0.0.1"]) == 2  # (without the check: no such address, also said at once)
    assert capsys.readouterr().err.splitlines() == [
        "Configuration error:",
        "  TELEGRAM_BOT_TOKEN: Value error, expected the token @BotFather gave (/mybots → the bot → API Token), the "
        "bot's number, a colon and letters, e.g. 123456789:ABC-DEF1234ghIkl-zyx57W2v1u123ew11 (give it without the "
        f'"bot" the API\'s addresses put before it) (got {len(token)} characters, not shown: it is a secret)',
    ]
    assert not (tmp_path / "var").exists()  # stopped before anything was opened


@pytest.mark.parametrize(("value", "says"), [
    ("SK" + "0123456789abcdef" * 2, "AC followed by 32 hex digits (an API key's SID, SK…, is no account's)"),
    ("ACtest", "AC followed by 32 hex digits (got 'ACtest')"),
])
def test_a_twilio_account_sid_of_the_wrong_shape_is_named(monkeypatch, value, says):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "TWILIO_ACCOUNT_SID: Value error, expected the Account SID of the Twilio Console" in str(caught.value)
    assert says in str(caught.value)


def test_twilio_credentials_are_taken_without_the_blanks_around_them(monkeypatch):
    sid, token = "AC" + "0123456789abcdef" * 2, "fedcba9876543210" * 2
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", f"{sid} ")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", f"{token}\n")  # as a secret file leaves it
    settings = load_settings(_env_file=None)
    assert (settings.twilio_account_sid, settings.twilio_auth_token) == (sid, token)


@pytest.mark.parametrize(("setting", "sid"), [
    ("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcdef" * 2),
    ("TWILIO_TEMPLATE_CONTENT_SID", "HX" + "0123456789abcdef" * 2),
])
def test_a_twilio_sid_of_blanks_alone_is_unset_and_one_with_blanks_is_taken_without_them(monkeypatch, setting, sid):
    monkeypatch.setenv(setting, " \n")  # a secret file holding its line break alone
    assert getattr(load_settings(_env_file=None), setting.lower()) == ""
    monkeypatch.setenv(setting, f"{sid}\n")
    assert getattr(load_settings(_env_file=None), setting.lower()) == sid


def test_a_slack_bot_token_is_taken_without_the_blanks_around_it(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", " xoxb-2210535565-7731826183-AbCdEf\n")
    assert load_settings(_env_file=None).slack_bot_token == "xoxb-2210535565-7731826183-AbCdEf"


def test_a_stripe_signing_secret_is_taken_without_the_blanks_around_it(monkeypatch):
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_5f2a9c0e7b1d4a6f8e3c2b1a0d9e8f7a\n")  # as a secret file has it
    assert load_settings(_env_file=None).stripe_webhook_secret == "whsec_5f2a9c0e7b1d4a6f8e3c2b1a0d9e8f7a"


def test_a_value_that_is_no_secret_is_still_shown(monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "(got 'eighty')" in str(caught.value)


def test_the_cli_does_not_print_a_secret_it_refuses(tmp_path):
    result = _lessonbot(tmp_path, "outbox", STRIPE_SECRET_KEY="whsec_REALSIGNINGSECRET123")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "STRIPE_SECRET_KEY" in result.stderr and "REALSIGNINGSECRET" not in result.stderr + result.stdout


# unknown names in the .env file ---------------------------------------------------------------------------------------


def test_a_misspelt_name_in_the_env_file_is_named_with_the_setting_meant(tmp_path, capsys):
    env = tmp_path / ".env"
    env.write_text("DATABSE_URL=sqlite:///elsewhere.db\nPORT=8081\nCOLOUR=blue\nCOMPOSE_PROJECT_NAME=lessonbot\n")

    settings = load_settings(_env_file=env, data_dir=tmp_path)

    assert settings.port == 8081 and settings.database_url == ""  # a warning, not a refusal
    assert capsys.readouterr().err.splitlines() == [
        f"Warning: {env} sets DATABSE_URL (did you mean DATABASE_URL?), COLOUR, which are no Lessonbot settings: they "
        "are ignored. Correct the name (.env.example lists every setting) or remove the line."
    ]


def test_an_env_file_of_known_names_and_the_environment_say_nothing(tmp_path, monkeypatch, capsys):
    env = tmp_path / ".env"
    env.write_text("port=8081\nLOG_LEVEL=DEBUG\n")  # (names are not case-sensitive)
    monkeypatch.setenv("DATABSE_URL", "sqlite:///x.db")  # the environment holds many variables that are not ours
    load_settings(_env_file=env, data_dir=tmp_path)
    load_settings(_env_file=None, data_dir=tmp_path)
    assert capsys.readouterr().err == ""


def test_the_cli_warns_once_of_a_misspelt_name_and_runs(tmp_path):
    (tmp_path / ".env").write_text("TELEGRAM_TOKEN=123:abc\n")
    result = _lessonbot(tmp_path, "course", "validate", str(tmp_path / "missing"))
    assert result.returncode == 1  # the command ran (and found no course there)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: .env sets TELEGRAM_TOKEN (did you mean TELEGRAM_BOT_TOKEN?), which is no Lessonbot setting: it is "
        "ignored. Correct the name (.env.example lists every setting) or remove the line."
    ]


def test_a_misspelt_name_is_named_beside_the_error_it_causes(tmp_path):
    (tmp_path / ".env").write_text("EMBEDDINGS=openai\nOPENAI_APIKEY=sk-test\n")
    result = _lessonbot(tmp_path, "outbox")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "EMBEDDINGS=openai needs OPENAI_API_KEY" in result.stderr
    assert "OPENAI_APIKEY (did you mean OPENAI_API_KEY?)" in result.stderr and "sk-test" not in result.stderr


# knowledge settings that cannot work --------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "says"), [
    ({"EMBEDDINGS": "openai"}, "EMBEDDINGS=openai needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL"),
    ({"OPENAI_MODEL": "gpt-4o-mini"}, "OPENAI_MODEL=gpt-4o-mini needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL"),
    ({"KNOWLEDGE_TOKENIZER_DIR": "/nonexistent"}, "KNOWLEDGE_TOKENIZER_DIR=/nonexistent holds no tokenizer.json"),
])
def test_knowledge_settings_that_cannot_work_stop_start_up(monkeypatch, env, says):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    heading, line = str(caught.value).splitlines()  # one line under the heading
    assert heading == "Configuration error:" and says in line


@pytest.mark.parametrize("env", [
    {"EMBEDDINGS": "openai", "OPENAI_API_KEY": "sk-test"},
    {"EMBEDDINGS": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"},
    {"OPENAI_MODEL": "llama3", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"},
    {"EMBEDDINGS": "openai", "OPENAI_API_KEY": "sk-test", "KNOWLEDGE_TOKENIZER_DIR": "/nonexistent"},  # not used
])
def test_knowledge_settings_that_can_work_pass(monkeypatch, env):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    load_settings(_env_file=None)


@pytest.mark.parametrize("argv", [["serve"], ["chat", "--user", "pat"]])
def test_serve_and_chat_refuse_embeddings_without_an_endpoint(tmp_path, argv):
    result = _lessonbot(tmp_path, *argv, EMBEDDINGS="openai")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "Configuration error:",
        "  EMBEDDINGS=openai needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (a compatible server, e.g. "
        "http://127.0.0.1:11434/v1): set one, or EMBEDDINGS=offline for the model on this machine",
    ]
    assert not (tmp_path / "var").exists()  # stopped before anything was opened
