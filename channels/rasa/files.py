"""Documents for a Rasa assistant's users (a certificate, a data export), as links: Rasa's bot messages carry an
`attachment` address, not a file.

A document's address is `RASA_ACTIONS_PUBLIC_URL/files/CHAT/REPLY/SIGNATURE`, served by `lessonbot rasa-actions`:
the signature is an HMAC of the chat (the Rasa sender id) and the reply's id under a key derived from SECRET_KEY, so
the address is unguessable and opens that chat's reply only.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

SIGNATURE_CHARS = 32


class FileLinks:
    def __init__(self, secret_key: str, base_url: str) -> None:
        """`base_url`: where people's browsers reach the action server."""
        self.base_url = base_url.rstrip("/")
        self._key = hashlib.sha256(b"lessonbot rasa file\0" + secret_key.encode()).digest()

    def signature(self, chat_id: str, outbox_id: int) -> str:
        return hmac.new(self._key, f"{chat_id}/{outbox_id}".encode(), hashlib.sha256).hexdigest()[:SIGNATURE_CHARS]

    def url(self, chat_id: str, outbox_id: int) -> str:
        return f"{self.base_url}/files/{quote(chat_id, safe='')}/{outbox_id}/{self.signature(chat_id, outbox_id)}"

    def matches(self, chat_id: str, outbox_id: int, signature: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.signature(chat_id, outbox_id).encode())


def document_link(files: FileLinks | None, chat_id: str, outbox_id: int) -> str | None:
    """The address of the reply `outbox_id` to `chat_id` if it is a document on this machine (bot_message asks only
    then), or None where documents have no address (RASA_ACTIONS_PUBLIC_URL unset)."""
    return files.url(chat_id, outbox_id) if files is not None else None
