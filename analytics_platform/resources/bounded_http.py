"""One HTTP GET that always ends: a wall-clock deadline and a size cap on the body, and
the waits between attempts (exponential backoff, a server's Retry-After).

`requests` timeouts apply to each socket read, so a server dripping one byte per
read holds a request forever; here the body is streamed and a timer shuts the
socket down when the deadline passes, whatever the server does.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests
import urllib3

CHUNK_BYTES = 64 << 10


class DeadlinePassed(RuntimeError):
    """The response did not arrive whole within the deadline."""


class BodyTooLarge(RuntimeError):
    """The response body is longer than allowed."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def backoff_delay(retry: int, factor: float, jitter: float, longest: float) -> float:
    """Seconds before retry number `retry` (1-based): 0, then factor x 2, 4, 8 ... plus jitter.

    The schedule urllib3's Retry uses, so the documented defaults keep their meaning.
    """
    if retry <= 1:
        return 0.0
    return min(longest, factor * 2 ** (retry - 1) + random.uniform(0, jitter))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds from now, else None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _shutdown(response: requests.Response) -> None:
    # Wakes a read blocked on the socket; the response may be gone already.
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        response.raw.shutdown()


def _read_body(response: requests.Response, deadline: float, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while time.monotonic() < deadline:
        # read1 returns as soon as some bytes are there: a drip is seen at each byte.
        chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"the body is longer than {max_bytes} bytes")
        chunks.append(chunk)
    raise DeadlinePassed


def bounded_get(
    session: requests.Session,
    url: str,
    params: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    deadline_seconds: float,
    max_bytes: int,
) -> Answer:
    """GET `url` and read its whole body within `deadline_seconds` of sending it.

    Raises DeadlinePassed when the body is not complete by then (waiting at most the
    deadline plus one socket shutdown), BodyTooLarge past `max_bytes` (decoded), and
    requests.RequestException for connection failures, a body that breaks off and read
    timeouts (each read waits at most `read_timeout`, never longer than the deadline).
    The deadline is enforced from the headers on: a server that drips its headers is
    bounded by `read_timeout` per read only.
    """
    deadline = time.monotonic() + deadline_seconds
    with session.get(
        url,
        params=params,
        timeout=(connect_timeout, min(read_timeout, deadline_seconds)),
        stream=True,
    ) as response:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (response,))
        timer.daemon = True
        timer.start()
        try:
            body = _read_body(response, deadline, max_bytes)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            if time.monotonic() >= deadline:
                raise DeadlinePassed from None
            raise requests.ConnectionError(f"the body broke off: {err}") from err
        finally:
            timer.cancel()
            timer.join()  # never shut down a socket the pool may hand to the next request
        if time.monotonic() >= deadline:
            raise DeadlinePassed  # the shutdown made the body look complete
        return Answer(response.status_code, response.headers, body)
