"""What every webhook endpoint does with the raw request before a channel looks at it."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response

from bot.channel import CannotRecord, ChannelHost, RequestRejected

RETRY_AFTER_SECONDS = 5  # told with a 503: the database away, the message not recorded (or the chat not read)
PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
# A page of ours no other site may show in a frame of its own (clickjacking): the web chat, a certificate's check,
# the pages Stripe sends a buyer back to. (The dashboard's pages say the same in their own policy.)
NOT_FRAMED = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
              "X-Content-Type-Options": "nosniff"}


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes without reading past it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, f"The request body is {int(declared):,} bytes; the limit is {limit:,}.")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestRejected(413, f"The request body is over the limit of {limit:,} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestRejected(400, "The client went away before the body arrived.") from None
    return b"".join(chunks)


async def sent_document(host: ChannelHost, channel: str, chat_id: str, outbox_id: int) -> Response:
    """The file of the document reply `outbox_id` sent to `chat_id` (a certificate, an export), for a link whose
    signature the caller checked; 404 when it is no such reply, or its file is gone; 503 to try again while the
    database is away."""
    not_here = Response("No such file here.", status_code=404, media_type="text/plain", headers=PRIVATE)
    try:
        sent = await host.sent_replies(channel, chat_id, after=outbox_id - 1, limit=1)
    except CannotRecord as exc:
        return Response(str(exc), status_code=503, media_type="text/plain",
                        headers={**PRIVATE, "Retry-After": str(RETRY_AFTER_SECONDS)})
    if not sent or sent[0][0] != outbox_id:
        return not_here
    payload = sent[0][1]
    path = payload.get("path")
    if payload.get("kind") != "document" or not path or not Path(path).is_file():
        return not_here
    return FileResponse(
        path,
        media_type=payload.get("media_type") or "application/octet-stream",
        filename=payload.get("filename") or Path(path).name,
        headers=PRIVATE,
    )
