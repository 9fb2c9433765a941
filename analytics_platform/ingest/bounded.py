"""Reading a landing file in bounded memory, whatever it holds.

- A line is measured while it is read: once it passes `max_line_bytes` without
  a newline, only its first OVERSIZED_PREFIX_BYTES are kept; the rest is hashed
  and counted as it streams past (`LongLine`), never buffered.
- A gzipped file is decompressed in chunks through `ExpansionGuard`, which stops
  at `max_expanded_bytes` or at `max_compression_ratio` times the compressed size
  (once past RATIO_FLOOR_BYTES, so small, very repetitive files still load):
  reason `decompression_limit`.
- A compressed stream that is truncated or corrupt raises `FileFaultError` with
  reason `corrupt_file`, naming how many lines were read before the fault.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from analytics_platform.ingest.contract import ContractViolation, Reason

BLOCK_BYTES = 2 << 20  # bytes of landing file per block of whole lines converted at once
OVERSIZED_PREFIX_BYTES = 4096  # what quarantine keeps of a line over max_line_bytes
RATIO_FLOOR_BYTES = 64 << 20  # the ratio cap applies once this much was expanded


class FileFaultError(Exception):
    """A landing file that cannot be read to its end: it is quarantined as a whole."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def oversized_violation(
    prefix: bytes, length: int, sha256: str, max_line_bytes: int
) -> tuple[str, ContractViolation]:
    """The quarantine text (the line's first bytes) and reason of a line over the limit."""
    kept = prefix[:OVERSIZED_PREFIX_BYTES]
    return kept.decode("utf-8", errors="backslashreplace"), ContractViolation(
        Reason.OVERSIZED_LINE,
        f"line is {length} bytes, limit {max_line_bytes}; raw_text holds its first "
        f"{len(kept)} bytes; sha256 {sha256}",
    )


@dataclass
class LongLine:
    """A line longer than `max_line_bytes`, measured as it streams past."""

    number: int
    prefix: bytes
    length: int = 0
    _digest: object = field(default_factory=hashlib.sha256)

    @classmethod
    def start(cls, number: int, head: bytes) -> LongLine:
        line = cls(number, head[:OVERSIZED_PREFIX_BYTES])
        line.add(head)
        return line

    def add(self, data: bytes) -> None:
        self._digest.update(data)
        self.length += len(data)

    def violation(self, max_line_bytes: int) -> tuple[str, ContractViolation]:
        return oversized_violation(
            self.prefix, self.length, self._digest.hexdigest(), max_line_bytes
        )


def line_blocks(
    stream: BinaryIO, first_number: int, max_line_bytes: int, block_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[int, bytes] | LongLine]:
    """(number of its first line, block of whole lines) of about `block_bytes` each, and a
    `LongLine` for each line longer than `max_line_bytes` that did not fit in a block.

    At most about 2 x (`block_bytes` + `max_line_bytes`) of the file are held at once.
    """
    number, carry = first_number, b""
    long_line: LongLine | None = None
    while data := stream.read(block_bytes):
        if long_line is not None:
            end = data.find(b"\n")
            if end < 0:
                long_line.add(data)
                continue
            long_line.add(data[:end])
            yield long_line
            number, long_line, data = number + 1, None, data[end + 1 :]
        data = carry + data if carry else data
        end = data.rfind(b"\n") + 1
        block, carry = data[:end], data[end:]
        if block:
            yield number, block
            number += block.count(b"\n")
        if len(carry) > max_line_bytes:  # no newline in sight: measure on, keep no more
            long_line, carry = LongLine.start(number, carry), b""
    if long_line is not None:
        yield long_line
    elif carry:
        yield number, carry


def read_line(stream: BinaryIO, number: int, max_line_bytes: int) -> bytes | LongLine | None:
    """The next line (with its ending), a `LongLine` past the limit, or None at the end."""
    raw = stream.readline(max_line_bytes + 1)
    if not raw:
        return None
    if len(raw) <= max_line_bytes or raw.endswith(b"\n"):
        return raw
    line = LongLine.start(number, raw)
    while chunk := stream.readline(BLOCK_BYTES):
        line.add(chunk.removesuffix(b"\n"))
        if chunk.endswith(b"\n"):
            break
    return line


# What zlib and gzip raise for a stream that is cut short or not gzip at all.
CORRUPT_STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def corrupt_file(err: BaseException, lines_read: int) -> FileFaultError:
    return FileFaultError(
        "corrupt_file",
        f"the compressed stream is cut short or corrupt ({type(err).__name__}: {err}) after "
        f"{lines_read} line(s); none of the file is loaded: replace it with a complete copy",
    )


class ExpansionGuard(io.RawIOBase):
    """A decompressed stream that refuses to expand past its caps (see the module doc)."""

    def __init__(
        self, stream: BinaryIO, compressed_bytes: int, max_expanded_bytes: int, max_ratio: float
    ):
        self._stream = stream
        self._limit = max_expanded_bytes
        self._ratio_limit = max(RATIO_FLOOR_BYTES, int(compressed_bytes * max_ratio))
        self.expanded = 0
        self.lines = 0  # newlines expanded so far: what a fault report counts

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()  # the gzip reader; the caller closes the file under it
        super().close()

    def readinto(self, buffer) -> int:
        try:
            data = self._stream.read1(len(buffer))  # a chunk at a time: lines count as they come
        except CORRUPT_STREAM_ERRORS as err:
            raise corrupt_file(err, self.lines) from err
        size = len(data)
        buffer[:size] = data
        self.expanded += size
        self.lines += data.count(b"\n")
        if self.expanded > self._limit:
            raise FileFaultError(
                "decompression_limit",
                f"expands past max_expanded_bytes ({self._limit} bytes)",
            )
        if self.expanded > self._ratio_limit:
            raise FileFaultError(
                "decompression_limit",
                f"expands past max_compression_ratio ({self._ratio_limit} bytes from "
                "this compressed size)",
            )
        return size


def open_expanded(
    raw: BinaryIO,
    compressed: bool,
    *,
    max_expanded_bytes: int,
    max_compression_ratio: float,
) -> BinaryIO:
    """The file's bytes as a buffered stream: gunzipped under the caps when `compressed`."""
    if not compressed:
        return raw
    guard = ExpansionGuard(
        gzip.GzipFile(fileobj=raw, mode="rb"),
        os.fstat(raw.fileno()).st_size,
        max_expanded_bytes,
        max_compression_ratio,
    )
    return io.BufferedReader(guard, buffer_size=1 << 16)
