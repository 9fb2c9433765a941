"""Rows in PostgreSQL's COPY text format, built as strings and sent in large blocks.

Formatting rows here and writing blocks of many rows is several times cheaper
than `copy.write_row` per row. Format: fields separated by a tab, rows ended by
a newline, NULL as `\\N`; a backslash, tab, newline or carriage return inside a
value is escaped with a backslash (see the COPY documentation, "Text Format").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

NULL = "\\N"
BACKSLASH = "\\"
ESCAPED_BACKSLASH = "\\\\"
_ESCAPES = str.maketrans({BACKSLASH: ESCAPED_BACKSLASH, "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    """A string as a COPY text field (escapes backslash, tab, newline, carriage return)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def escape_backslashes(text: str) -> str:
    """`escape` for text that holds no tab, newline or carriage return (JSON a serializer
    wrote escapes them itself; the CSV lines the column path takes have none)."""
    return text.replace(BACKSLASH, ESCAPED_BACKSLASH) if BACKSLASH in text else text


def escape_backslashes_bytes(data: bytes) -> bytes:
    """`escape_backslashes` of UTF-8 bytes (a backslash byte is never inside a character)."""
    return data.replace(b"\\", b"\\\\")


def unescape_backslashes(text: str) -> str:
    """The text `escape_backslashes` was given."""
    return text.replace(ESCAPED_BACKSLASH, BACKSLASH)


def quarantine_text(text: str) -> str:
    """A line's original text as `platform.quarantine.raw_text` can hold it (no NUL)."""
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def copy_field(value: object) -> str:
    """One value as a COPY text field; the types `to_canonical` and the lineage produce."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | Decimal | float):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to COPY text")


def copy_line(values: Sequence[object]) -> str:
    """A whole row, newline included."""
    return "\t".join(map(copy_field, values)) + "\n"
