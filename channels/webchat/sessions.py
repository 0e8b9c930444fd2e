"""Web chat sessions: signed, stateless, and ending after a while without use.

A session token is `ID.ISSUED.SIGNATURE`: a random id (the conversation's chat id), the time the token was issued
(Unix seconds) and an HMAC of both under SECRET_KEY. Verifying one needs no database, and a forged or altered token
is refused (403) before anything is stored. The server hands the page a freshly issued token for the same id each
time the page uses it (posting a message, reading its replies), so a session ends `idle_seconds` after its last
use, not after its first. A token older than that is refused, and the page starts a new conversation.

A document reply (a certificate) is downloaded from an address carrying a second HMAC, of the session id and the
reply's id: unguessable, and good only for the session the reply was sent to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from bot.channel import RequestRejected

SIGNATURE_CHARS = 32


class SessionSigner:
    def __init__(
        self, secret_key: str, *, idle_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        """`clock`: the current Unix time (the tests move it to see a session expire)."""
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._session_key = _derive(secret_key, b"lessonbot web chat session")
        self._file_key = _derive(secret_key, b"lessonbot web chat file")

    def new_session(self) -> str:
        return self.issue(secrets.token_urlsafe(16))

    def issue(self, session_id: str) -> str:
        """A token for `session_id`, issued now (the same conversation, its idle time starting again)."""
        issued = str(int(self.clock()))
        return f"{session_id}.{issued}.{_sign(self._session_key, f'{session_id}.{issued}')}"

    def verify(self, token: object) -> str:
        """The session id inside a token; RequestRejected if it is missing, malformed, not ours or expired."""
        if not isinstance(token, str) or not token:
            raise RequestRejected(401, "Missing 'session': create one with POST /chat/api/sessions.")
        session_id, _, rest = token.partition(".")
        issued, _, signature = rest.partition(".")
        if not token.isascii() or not session_id or not issued.isdigit():  # (ours are: a lone surrogate cannot sign)
            raise RequestRejected(403, "This chat session is not valid here; start a new one (reload the page).")
        expected = _sign(self._session_key, f"{session_id}.{issued}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise RequestRejected(403, "This chat session is not valid here; start a new one (reload the page).")
        if self.clock() - int(issued) > self.idle_seconds:
            days = self.idle_seconds / 86400
            raise RequestRejected(
                403,
                f"This chat session was not used for {days:g} days and has ended; reload the page to start a new one.",
            )
        return session_id

    def file_signature(self, session_id: str, reply_id: int) -> str:
        return _sign(self._file_key, f"{session_id}/{reply_id}")

    def file_signature_matches(self, session_id: str, reply_id: int, signature: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.file_signature(session_id, reply_id).encode())


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return hashlib.sha256(purpose + b"\0" + secret_key.encode()).digest()


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:SIGNATURE_CHARS]
