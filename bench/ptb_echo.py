"""The comparison for `lessonbot bench channels`: a bare python-telegram-bot application that echoes every text.

It is what the library's own examples build: an `Application` with one `MessageHandler`, served by `run_webhook`
(python-telegram-bot's built-in webhook server, on tornado) with a secret token, its Bot API calls going to
`--base-url` (the bench's stand-in). Nothing is stored, nothing is rate-limited, updates are handled one at a time
(the library's default).

    python -m bench.ptb_echo --port 8002 --base-url http://127.0.0.1:9000/bot --token 123:abc --secret s
"""

from __future__ import annotations

import argparse

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

URL_PATH = "telegram"


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.text:
        await message.reply_text(message.text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ptb_echo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", required=True, help="the Bot API base URL; the token follows it")
    parser.add_argument("--token", required=True)
    parser.add_argument("--secret", required=True, help="checked against X-Telegram-Bot-Api-Secret-Token")
    args = parser.parse_args(argv)
    application = Application.builder().token(args.token).base_url(args.base_url).build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_webhook(
        listen=args.host,
        port=args.port,
        url_path=URL_PATH,
        secret_token=args.secret,
        webhook_url=f"http://{args.host}:{args.port}/{URL_PATH}",
    )


if __name__ == "__main__":
    main()
