"""CSV blocks converted column by column with Arrow, for the rows that are plainly fine.

A block of whole CSV lines is split, parsed and checked by Arrow's compute
functions (C++) instead of line by line in Python. Only the `properties` JSON
is still built per row, by the same `encode_properties` the per-line path uses.
Every other line is handed back for `Converter.convert`, which decides and
explains. So this path only ever speeds rows up; it never judges one.

A row takes this path when its line:
- is well-formed CSV: each field either unquoted without quotes, or quoted with
  its inner quotes doubled (where Arrow and Python's csv module agree), and holds
  no tab (to escape) or NUL (to quarantine);
- has as many fields as the header, and is at most MAX_TEXT_CHARS bytes;
- has every required value, an empty payload tenant or the folder's, and an
  empty site or one of the tenant's;
- has a timestamp in the tracker's form (2026-06-01T10:00:00.000Z) inside the window,
  and each timestamp bound to no window (the receive time) empty or in that form;
- has values matching every pattern of the contract (event type, currency), and
  no decimal (revenue: the per-line path normalises amounts).
Which columns these are comes from the contract (contract.py, via encode.py's plan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from analytics_platform.ingest.contract import MAX_TEXT_CHARS
from analytics_platform.ingest.copy_text import (
    BACKSLASH,
    ESCAPED_BACKSLASH,
    NULL,
    escape_backslashes_bytes,
    unescape_backslashes,
)
from analytics_platform.ingest.encode import (
    DECIMALS,
    JSON_COLUMN,
    OCCURRED_AT,
    PATTERNS,
    REQUIRED_AT,
    SITE_AT,
    TENANT_AT,
    UNWINDOWED_TIMES,
    RowEncoder,
    encode_properties,
)

# A field Arrow and the csv module read alike: unquoted without quotes, or quoted;
# and without a tab, which would need escaping.
FIELD = r'(?:[^",\t\x00]*|"(?:[^"\t\x00]|"")*")'
# The tracker's timestamps, with every part in range (Arrow and Python then agree
# on all but impossible days such as 02-30, which make Arrow refuse the block).
TRACKER_TIME = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$"
)
EPOCH_TEXT = "1970-01-01T00:00:00.000Z"  # stands in for the rows whose time is not checked here
TIMESTAMP = pa.timestamp("us", tz="UTC")
NULL_SCALAR = pa.scalar(None, pa.string())


@dataclass
class PlainRows:
    """A block's plain rows as COPY text, and its other lines for the per-line path."""

    text: bytes
    rows: int
    fields: set[str]  # keys in these rows' properties
    rest: list[tuple[int, bytes]]  # (line number, line) in file order


class CsvColumns:
    """Converts blocks of one CSV file's lines (after its header) with Arrow."""

    def __init__(
        self,
        encoder: RowEncoder,
        header: list[str],
        *,
        max_line_bytes: int,
        middle: str,
        tail: str,
    ):
        plan = encoder.plan(tuple(header)) if len(set(header)) == len(header) else None
        usable = plan is not None and not plan.nested
        if usable:
            usable = all(plan.keys[at] is not None for at in REQUIRED_AT)
        self.plan = plan if usable else None
        self.encoder = encoder
        self.header = header
        self.names = [f"c{i}" for i in range(len(header))]
        self.line = rf"^{FIELD}(?:,{FIELD}){{{len(header) - 1}}}$"
        self.max_bytes = min(max_line_bytes, MAX_TEXT_CHARS)
        # The fields after `properties`: partition date and source, line number, run id.
        self.after = (pa.scalar(middle.strip("\t")), pa.scalar(tail.removeprefix("\t")))

    def split(self, first_number: int, block: bytes) -> PlainRows | None:
        """The block's plain rows and the rest, or None to convert it all line by line."""
        if self.plan is None:
            return None
        split = _lines(block)
        if split is None:
            return None
        block, lines, escaped = split
        wellformed = pc.and_(
            pc.match_substring_regex(lines, self.line),
            pc.less_equal(pc.binary_length(lines), self.max_bytes),
        )
        candidates = np.flatnonzero(wellformed.to_numpy(zero_copy_only=False))
        source = block if len(candidates) == len(lines) else _data(lines.take(candidates), "\n")
        table = self._parse(source, len(candidates))
        if table is None:
            return None
        plain = self._plain_mask(table)
        if plain is None:
            return None
        rows = np.flatnonzero(plain)
        properties, kept, fields = self._properties(table, rows, escaped)
        rows = rows[kept]
        if len(rows) < table.num_rows:
            table = table.take(pa.array(rows, pa.int64()))
        parts = self._parts(table)
        middle, tail = self.after
        numbers = pa.array(candidates[rows] + first_number).cast(pa.string())
        joined = pc.binary_join_element_wise(
            *parts,
            pa.array(properties, pa.string()),
            middle,
            numbers,
            tail,
            "\t",
            null_handling="replace",
            null_replacement=NULL,
        )
        rest = np.ones(len(lines), dtype=bool)
        rest[candidates[rows]] = False
        rest_at = np.flatnonzero(rest)
        rest_lines = lines.take(rest_at).to_pylist()
        if escaped:
            rest_lines = [unescape_backslashes(line) for line in rest_lines]
        return PlainRows(
            text=_data(joined),
            rows=len(rows),
            fields=fields,
            rest=[
                (int(at) + first_number, line.encode("utf-8"))
                for at, line in zip(rest_at, rest_lines, strict=True)
            ],
        )

    def _parse(self, source: bytes, rows: int) -> pa.Table | None:
        """The lines as a table of strings, empty values as nulls (COPY's NULL)."""
        if not rows:
            return pa.table({name: pa.array([], pa.string()) for name in self.names})
        try:
            table = pa_csv.read_csv(
                pa.BufferReader(source),
                read_options=pa_csv.ReadOptions(
                    column_names=self.names, use_threads=False, block_size=len(source) + 1
                ),
                parse_options=pa_csv.ParseOptions(newlines_in_values=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(self.names, pa.string()),
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid:
            return None
        return table if table.num_rows == rows else None

    def _get(self, table: pa.Table, key: str) -> pa.StringArray:
        return table.column(self.header.index(key)).combine_chunks()

    def _parts(self, table: pa.Table) -> list[pa.Array | pa.Scalar]:
        """The picked columns of the plain rows: the tenant's id, the site (the tenant's
        default where none is named), the others as the file has them."""
        tenant = pa.scalar(self.encoder.tenant)
        parts: list[pa.Array | pa.Scalar] = []
        for at, key in enumerate(self.plan.keys):
            if at == TENANT_AT:
                parts.append(tenant)
            elif at == SITE_AT and key is not None:
                parts.append(pc.coalesce(self._get(table, key), tenant))
            elif at == SITE_AT:
                parts.append(tenant)
            else:
                parts.append(NULL_SCALAR if key is None else self._get(table, key))
        return parts

    def _plain_mask(self, table: pa.Table) -> np.ndarray | None:
        """Which rows meet every rule of the contract plainly (module docstring)."""
        keys = self.plan.keys
        encoder = self.encoder
        masks = [pc.is_valid(self._get(table, keys[at])) for at in REQUIRED_AT]
        if keys[TENANT_AT] is not None:
            tenant = self._get(table, keys[TENANT_AT])
            masks.append(pc.or_kleene(pc.is_null(tenant), pc.equal(tenant, encoder.tenant)))
        if keys[SITE_AT] is not None:
            site = self._get(table, keys[SITE_AT])
            sites = pa.array(sorted(encoder.sites), pa.string())
            masks.append(pc.or_kleene(pc.is_null(site), pc.is_in(site, value_set=sites)))
        for at, _ in DECIMALS:
            if keys[at] is not None:
                masks.append(pc.is_null(self._get(table, keys[at])))
        for at, pattern in PATTERNS:
            if keys[at] is not None:
                values = self._get(table, keys[at])
                matches = pc.match_substring_regex(values, pattern.pattern)
                masks.append(pc.or_kleene(pc.is_null(values), matches))
        occurred = self._get(table, keys[OCCURRED_AT])
        tracker, times = _tracker_times(occurred)
        if times is None:
            return None  # an impossible day in the tracker's form: let Python say which
        masks.append(tracker)
        for at in UNWINDOWED_TIMES:
            if keys[at] is not None:
                values = self._get(table, keys[at])
                plain, checked = _tracker_times(values)
                if checked is None:
                    return None
                masks.append(pc.or_kleene(pc.is_null(values), plain))
        masks.append(pc.greater_equal(times, pa.scalar(self.encoder.window_start, TIMESTAMP)))
        masks.append(pc.less(times, pa.scalar(self.encoder.window_end, TIMESTAMP)))
        plain = masks[0]
        for mask in masks[1:]:
            plain = pc.and_kleene(plain, mask)
        return pc.fill_null(plain, False).to_numpy(zero_copy_only=False)

    def _properties(
        self, table: pa.Table, rows: np.ndarray, escaped: bool
    ) -> tuple[list[str], np.ndarray, set[str]]:
        """Each row's properties as COPY text (`encode_properties`, as the per-line path
        builds them), which rows have one (the others go line by line), and their keys."""
        at = pa.array(rows, pa.int64())

        def values(key: str) -> list[str | None]:
            column = self._get(table, key).take(at)
            if escaped:  # the JSON and the extra values as the file has them
                column = pc.replace_substring(column, ESCAPED_BACKSLASH, BACKSLASH)
            return column.to_pylist()

        explicit = values(JSON_COLUMN) if self.plan.properties else [None] * len(rows)
        extras = [(key, values(key)) for key in self.plan.extra]
        texts: list[str] = []
        kept = np.ones(len(rows), dtype=bool)
        fields: set[str] = set()
        no_extra: list[tuple[str, object]] = []
        for i, value in enumerate(explicit):
            extra = [(key, column[i]) for key, column in extras] if extras else no_extra
            encoded = encode_properties(value, extra)
            if encoded is None:
                kept[i] = False
                continue
            texts.append(encoded[0])
            fields.update(encoded[1])
        return texts, kept, fields


def _tracker_times(values: pa.StringArray) -> tuple[pa.BooleanArray, pa.Array | None]:
    """Which values are in the tracker's form, and the times (others read as the epoch);
    None for the times when one in that form is an impossible day (Arrow refuses it)."""
    tracker = pc.match_substring_regex(values, TRACKER_TIME)
    try:
        return tracker, pc.if_else(tracker, values, EPOCH_TEXT).cast(TIMESTAMP)
    except pa.ArrowInvalid:
        return tracker, None


def _lines(block: bytes) -> tuple[bytes, pa.StringArray, bool] | None:
    """The block as Arrow will read it, its lines, and whether it had a backslash (every
    one is then doubled); None when the csv module's rules must decide (a lone
    carriage return) or a line is not UTF-8.

    Doubled backslashes make every value COPY text already (lines holding a tab are
    not plain), and are undone exactly where the original text is needed.
    """
    if b"\r" in block:
        if block.count(b"\r") != block.count(b"\r\n"):
            return None
        block = block.replace(b"\r\n", b"\n")
    if not block.endswith(b"\n"):
        block += b"\n"
    escaped = BACKSLASH.encode() in block
    if escaped:
        block = escape_backslashes_bytes(block)
    try:
        text = pa.array([block], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None
    lines = pc.split_pattern(text, "\n").flatten()
    return block, lines.slice(0, len(lines) - 1), escaped  # not the "" after the last "\n"


def _data(strings: pa.StringArray, end: str = "") -> bytes:
    """The strings' UTF-8 bytes back to back, each followed by `end`."""
    if end:
        strings = pc.binary_join_element_wise(strings, pa.scalar(end), "")
    if len(strings) == 0:
        return b""
    _, offsets, data = strings.buffers()
    first, last = np.frombuffer(offsets, np.int32)[[strings.offset, strings.offset + len(strings)]]
    return memoryview(data)[first:last].tobytes()
