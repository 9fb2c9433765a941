"""Answers kept in memory by their ETag, so a repeated read costs two metadata queries.

An ETag names the served table's exact parts (and the tenant, path and parameters),
so a body stored under it is the body the query would return again: nothing to
invalidate, a new serving run simply makes new ETags. Least recently used bodies
go first once `max_bytes` is reached; 0 turns the cache off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class ResponseCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        # A body over a quarter of the budget would push out many others: not kept.
        if len(body) > self.max_bytes // 4:
            return
        with self._lock:
            if etag in self._bodies:
                return
            self._bodies[etag] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._size -= len(dropped)
