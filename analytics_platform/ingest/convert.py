"""Landing file lines -> COPY text rows and quarantine records, in the run or in worker processes.

`Converter.convert` turns numbered physical lines into a `Converted` batch.
Plain records take `RowEncoder`'s fast path; every other line takes the
reference path (the per-line readers of files.py and `to_canonical`), which
decides every quarantine reason. `convert_block` does the same for a block of
whole lines in a worker process; this module imports nothing heavier than the
contract, so workers start quickly.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from analytics_platform.ingest.bounded import LongLine
from analytics_platform.ingest.contract import (
    CONTRACT_COLUMNS,
    MAX_TEXT_CHARS,
    ContractViolation,
    to_canonical,
)
from analytics_platform.ingest.copy_text import copy_field, copy_line
from analytics_platform.ingest.encode import RowEncoder
from analytics_platform.ingest.files import CsvLines, decode_line, json_line
from analytics_platform.ingest.quarantine import QuarantineRecord

if TYPE_CHECKING:
    from analytics_platform.ingest.csv_columns import CsvColumns

LAYER = "raw_file_events"
PROPERTIES_AT = CONTRACT_COLUMNS.index("properties")
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FileJob:
    """What converting one landing file's lines needs to know."""

    tenant: str
    day: dt.date
    window_start: dt.datetime
    window_end: dt.datetime
    source: str
    run_id: str
    max_line_bytes: int
    csv: bool
    sites: frozenset[str] | None = None  # the tenant's sites; None: its default site only


@dataclass
class Converted:
    """A batch of lines: COPY text of the loadable rows, counts, and the quarantine records."""

    text: bytes = b""
    rows_read: int = 0
    rows_loaded: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)  # keys in the loaded rows' properties


class Converter:
    """Converts one file's lines, batch after batch (a CSV file's header is kept between)."""

    def __init__(self, job: FileJob, header: list[str] | None = None, *, fast: bool = True):
        """`fast=False`: every line takes the reference path (what the fast paths are
        tested against)."""
        self.job = job
        self.fast = fast
        self.encoder = RowEncoder(job.tenant, job.window_start, job.window_end, job.sites)
        self.csv_lines = CsvLines(header) if job.csv else None
        self._middle = f"\t{copy_field(job.day)}\t{copy_field(job.source)}\t"
        self._tail = f"\t{copy_field(job.run_id)}\n"
        self._columns: CsvColumns | None = None  # made when first needed

    def csv_columns(self) -> CsvColumns | None:
        """The column-wise converter of this CSV file's blocks, once its header is read and
        when the header allows it (csv_columns.py); else None."""
        header = self.csv_lines.header if self.csv_lines is not None else None
        if header is None:
            return None
        if self._columns is None or self._columns.header is not header:
            from analytics_platform.ingest.csv_columns import CsvColumns  # imports Arrow

            self._columns = CsvColumns(
                self.encoder,
                header,
                max_line_bytes=self.job.max_line_bytes,
                middle=self._middle,
                tail=self._tail,
            )
        return self._columns if self._columns.plan is not None else None

    def convert_block(self, first_number: int, block: bytes) -> Converted:
        """`convert` of a block of whole lines, the first numbered `first_number`.

        A CSV block's plain rows are converted column by column (csv_columns.py),
        the rest line by line.
        """
        columns = self.csv_columns() if self.fast else None
        plain = columns.split(first_number, block) if columns is not None else None
        if plain is None:
            return self.convert(block_lines(block, first_number))
        done = self.convert(plain.rest)
        done.text = plain.text + done.text
        done.rows_read += plain.rows
        done.rows_loaded += plain.rows
        done.fields |= plain.fields
        return done

    def long_line(self, line: LongLine) -> Converted:
        """A line too long to hold: quarantined with its first bytes, length and SHA-256."""
        text, violation = line.violation(self.job.max_line_bytes)
        done = Converted(rows_read=1)
        done.reasons[violation.reason.value] += 1
        done.quarantined.append(self._quarantine_row(line.number, text, violation))
        return done

    def _quarantine_row(
        self, number: int, text: str, violation: ContractViolation
    ) -> QuarantineRecord:
        job = self.job
        return QuarantineRecord.of(
            violation,
            tenant_id=job.tenant,
            partition_date=job.day,
            layer=LAYER,
            source=job.source,
            source_line=number,
            raw_text=text,
            run_id=job.run_id,
        )

    def convert(self, lines: Iterable[tuple[int, bytes]]) -> Converted:
        """`lines`: (physical line number, bytes without the line ending, BOM removed)."""
        job, encoder, csv_lines = self.job, self.encoder, self.csv_lines
        middle, tail = self._middle, self._tail
        max_line_bytes = job.max_line_bytes
        out: list[str] = []
        done = Converted()
        loaded_fast = 0
        for number, payload in lines:
            row = None
            if self.fast and len(payload) <= max_line_bytes:
                short = len(payload) <= MAX_TEXT_CHARS
                if csv_lines is None:
                    try:
                        record = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        row = encoder.encode(record, needs_escape=b"\\" in payload, short=short)
                elif csv_lines.header is not None:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        if text and not text.isspace():
                            try:
                                values = csv_lines.fields(text)
                            except csv.Error:
                                values = ()  # the reference path says why
                            if len(values) == len(csv_lines.header):
                                row = encoder.encode_csv(
                                    csv_lines.header,
                                    values,
                                    needs_escape="\\" in text
                                    or "\t" in text
                                    or "\r" in text
                                    or "\x00" in text,
                                    short=short,
                                )
            if row is not None:
                loaded_fast += 1
                out.append(f"{row}{middle}{number}{tail}")
                continue

            # The reference path.
            text, violation = decode_line(payload, max_line_bytes)
            if csv_lines is None:
                line = json_line(number, text, violation)
            else:
                line = csv_lines.line(number, text, violation)
            if line is None:
                continue  # a blank line, or the CSV header
            done.rows_read += 1
            violation = line.violation
            if violation is None:
                try:
                    values = to_canonical(
                        line.record,
                        tenant=job.tenant,
                        window_start=job.window_start,
                        window_end=job.window_end,
                        sites=job.sites,
                    )
                except ContractViolation as err:
                    # A copy, never raised: the caught one's traceback would keep this
                    # frame, and the block's rows with it, alive until the next full GC.
                    violation = ContractViolation(err.reason, err.detail)
                else:
                    done.rows_loaded += 1
                    done.fields.update(orjson.loads(values[PROPERTIES_AT]))
                    out.append(copy_line((*values, job.day, job.source, number, job.run_id)))
                    continue
            done.reasons[violation.reason.value] += 1
            done.quarantined.append(self._quarantine_row(number, line.text, violation))
        done.rows_read += loaded_fast
        done.rows_loaded += loaded_fast
        done.fields |= encoder.fields
        encoder.fields = set()
        done.text = "".join(out).encode("utf-8")
        return done


def block_lines(block: bytes, first_number: int) -> Iterator[tuple[int, bytes]]:
    """Whole lines of a file read as bytes, numbered from `first_number`.

    Lines are split as iterating the binary file splits them (on b"\\n" only),
    their ending stripped as `files.raw_lines` strips it, and a UTF-8 BOM
    removed from line 1.
    """
    for number, raw in enumerate(io.BytesIO(block), start=first_number):
        if number == 1 and raw.startswith(BOM):
            raw = raw[3:]
        yield number, raw.rstrip(b"\r\n")


_converters: dict[tuple[FileJob, tuple[str, ...] | None], Converter] = {}


def convert_block(
    job: FileJob, header: list[str] | None, first_number: int, block: bytes
) -> Converted:
    """`Converter.convert` of a block of whole lines; runs in a worker process."""
    key = (job, None if header is None else tuple(header))
    converter = _converters.get(key)
    if converter is None:
        if len(_converters) >= 8:
            _converters.clear()
        converter = _converters[key] = Converter(job, header)
    return converter.convert_block(first_number, block)
