"""Reading a request body within the size limit, gzip included, without inflating a bomb.

The limit applies to the bytes received and to the bytes they inflate to: inflating
stops one byte past the limit, so a small body that would expand to gigabytes costs
no more memory than a body at the limit.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Mapping

from analytics_platform.service.batches import Refused

GZIP_ENCODINGS = ("gzip", "x-gzip")
IDENTITY_ENCODINGS = ("", "identity")
# What trackers send: JSON, NDJSON, and text/plain from navigator.sendBeacon.
MEDIA_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "text/plain",
    }
)


def check_media_type(headers: Mapping[str, str]) -> None:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise Refused(
            415,
            "unsupported_media_type",
            f"Content-Type {media_type!r} is not JSON; send application/json, "
            "application/x-ndjson or text/plain",
        )


def _too_large(limit: int) -> Refused:
    return Refused(
        413, "body_too_large", f"the body is larger than {limit} bytes (decompressed); split it"
    )


async def read_body(
    headers: Mapping[str, str], stream: AsyncIterator[bytes], max_bytes: int
) -> bytes:
    """The decoded body; Refused when it is too large, gzip is broken, or the encoding
    is not gzip."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in GZIP_ENCODINGS + IDENTITY_ENCODINGS:
        raise Refused(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r}: only gzip is accepted"
        )
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in GZIP_ENCODINGS else None
    parts: list[bytes] = []
    received = produced = 0
    async for chunk in stream:
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes)
        if inflater is None:
            parts.append(chunk)
            continue
        try:
            data = inflater.decompress(chunk, max_bytes - produced + 1)
        except zlib.error as err:
            raise Refused(400, "invalid_gzip", f"the gzip body cannot be read: {err}") from None
        produced += len(data)
        if produced > max_bytes or inflater.unconsumed_tail:
            raise _too_large(max_bytes)
        parts.append(data)
    if inflater is not None:
        if not inflater.eof:
            raise Refused(400, "invalid_gzip", "the gzip body ends before its stream does")
        if inflater.unused_data:
            raise Refused(400, "invalid_gzip", "bytes follow the end of the gzip stream")
    return b"".join(parts)
