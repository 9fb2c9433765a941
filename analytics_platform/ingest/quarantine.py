"""Quarantine records (`platform.quarantine`) and the one function that writes them.

The file loader, the API loader and the landing refusals all describe a row
they refused as a `QuarantineRecord` and hand it to `write_quarantine`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from analytics_platform.ingest.contract import ContractViolation
from analytics_platform.ingest.copy_text import quarantine_text
from analytics_platform.resources.postgres import PostgresResource

QUARANTINE = "platform.quarantine"


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """One refused row (or file, or path), with where it came from and why."""

    tenant_id: str
    partition_date: dt.date | None
    layer: str
    source: str
    source_line: int  # 0: the whole file, page or path
    reason: str
    detail: str
    raw_text: str  # the original text (a NUL written as \\u0000)
    run_id: str | None

    @classmethod
    def of(
        cls,
        violation: ContractViolation,
        *,
        tenant_id: str,
        partition_date: dt.date | None,
        layer: str,
        source: str,
        source_line: int,
        raw_text: str,
        run_id: str | None,
    ) -> QuarantineRecord:
        """The record of a contract violation, its text made storable."""
        return cls(
            tenant_id,
            partition_date,
            layer,
            source,
            source_line,
            violation.reason.value,
            violation.detail,
            quarantine_text(raw_text),
            run_id,
        )

    def values(self) -> tuple[object, ...]:
        return dataclasses.astuple(self)


QUARANTINE_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(QuarantineRecord))


def write_quarantine(
    postgres: PostgresResource,
    conn: psycopg.Connection,
    records: Iterable[QuarantineRecord],
    *,
    once: bool = False,
) -> int:
    """Write `records` in `conn`'s transaction; how many were written.

    `once`: skip a record a unique index already holds (`quarantine_refused_path_once`);
    such records are few and inserted one by one. Otherwise they are COPYed, streamed.
    """
    if not once:
        rows = (record.values() for record in records)
        return postgres.copy_rows(conn, QUARANTINE, QUARANTINE_COLUMNS, rows)
    written = 0
    with conn.cursor() as cur:
        for record in records:
            cur.execute(
                f"INSERT INTO {QUARANTINE} ({', '.join(QUARANTINE_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(QUARANTINE_COLUMNS))}) ON CONFLICT DO NOTHING",
                record.values(),
            )
            written += cur.rowcount
    return written


class QuarantineSpool:
    """A slice's quarantine records: in memory up to `max_memory` bytes, then on disk.

    Quarantined rows are normally few, but a wholly broken file must not hold
    them all in memory; they are written after the raw rows, in the same transaction.
    """

    def __init__(self, max_memory: int = 8 << 20):
        self._file = tempfile.SpooledTemporaryFile(max_size=max_memory, mode="w+b")  # noqa: SIM115 closed by close()
        self.rows = 0

    def append(self, record: QuarantineRecord) -> None:
        pickle.dump(record.values(), self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.rows += 1

    def mark(self) -> tuple[int, int]:
        return self._file.tell(), self.rows

    def rewind(self, mark: tuple[int, int]) -> None:
        """Forget every record appended since `mark`."""
        position, self.rows = mark
        self._file.seek(position)
        self._file.truncate()

    def records(self) -> Iterator[QuarantineRecord]:
        self._file.seek(0)
        for _ in range(self.rows):
            yield QuarantineRecord(*pickle.load(self._file))

    def close(self) -> None:
        self._file.close()
