"""Public links to local files, for WhatsApp documents: Twilio sends media only by fetching a URL.

A Document with a `path` (a certificate made on this machine) gets a link under PUBLIC_BASE_URL:
`/webhooks/twilio/media/<token>/<filename>`. The token carries the path, the media type and an expiry, signed with
HMAC-SHA256 under a key derived from the Auth Token, so only files this bot chose to send are served, and only for a
day (Twilio fetches at send time; the day covers its queue). The file name ends the URL because WhatsApp shows the
document under that name. The file must be readable by the process that serves the webhooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

MEDIA_PATH = "/webhooks/twilio/media/{token}/{filename}"
LINK_LIFETIME_SECONDS = 24 * 3600


class MediaLinks:
    def __init__(self, auth_token: str, public_base_url: str) -> None:
        self._key = hashlib.sha256(b"lessonbot whatsapp media\0" + auth_token.encode()).digest()
        self._base = public_base_url.rstrip("/")

    def _signature(self, claims: bytes) -> str:
        return hmac.new(self._key, claims, hashlib.sha256).hexdigest()[:32]

    def link(self, path: str, filename: str, media_type: str, *, now: float | None = None) -> str:
        """A URL Twilio can fetch `path` from for the next day."""
        expires = int((now if now is not None else time.time()) + LINK_LIFETIME_SECONDS)
        claims = json.dumps({"p": str(Path(path).resolve()), "t": media_type, "e": expires}, separators=(",", ":"))
        encoded = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
        token = f"{encoded}.{self._signature(claims.encode())}"
        name = quote(Path(filename).name or "document", safe="")
        return f"{self._base}/webhooks/twilio/media/{token}/{name}"

    async def serve(self, request: Request) -> Response:
        token = request.path_params["token"]
        encoded, _, signature = token.partition(".")
        try:
            claims = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            claims = b""
        if not claims or not hmac.compare_digest(signature.encode(), self._signature(claims).encode()):
            return JSONResponse({"error": "This media link is not valid."}, status_code=403)
        facts = json.loads(claims)
        if facts["e"] < time.time():
            return JSONResponse({"error": "This media link has expired."}, status_code=410)
        path = Path(facts["p"])
        if not path.is_file():
            return JSONResponse({"error": "The file behind this link is gone."}, status_code=404)
        # named as sent (the link's last part): a browser saves a file it cannot show (an export) under that name
        return FileResponse(path, media_type=facts["t"], filename=request.path_params["filename"])
