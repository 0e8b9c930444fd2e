"""What every webhook endpoint does with the raw request before a channel looks at it."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from bot.channel import RequestRejected


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
