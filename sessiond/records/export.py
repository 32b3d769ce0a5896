"""One session's record as CSV or JSON (DESIGN §10): every row, values as stored.

JSON: one object with the session, a summary and one array per table (`readings`, `phases`,
`alarms`, `actions`, `device_events`, `events`), one row per line; an action's `detail` and
an event's `data` are objects. CSV: one row per record row in time order, the session first;
`record` names the table, `elapsed_s` is seconds since the session start, and the other
columns are the tables' own (a row leaves the columns of other tables empty). Times are the
record's: `t` on the session's clock, `wall` in UTC (ISO 8601).
"""

from __future__ import annotations

import csv
import json
from typing import IO, TYPE_CHECKING, Any

from sessiond import __version__
from sessiond.records.sessions import TABLES

if TYPE_CHECKING:
    from sessiond.records.sessions import SessionRecord

#: The JSON export's own format version (its keys, not the record's schema).
FORMAT_VERSION = 1
#: Columns of the `sessions` row as CSV names them (`id` alone would be ambiguous).
_SESSION_NAMES = {"id": "session_id"}
#: Columns holding JSON text, parsed into objects in the JSON export.
_JSON_COLUMNS = {"actions": "detail", "events": "data"}


class Progress:
    """A `\\r`-updated line on a terminal: how much of a long export is written."""

    def __init__(self, total: int, stream: IO[str], *, label: str) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream
        self._label = label
        self._shown = -1

    def tick(self) -> None:
        self.done += 1
        percent = self.done * 100 // self.total
        if percent != self._shown:
            self._shown = percent
            self._stream.write(f"\r{self._label}: {percent:3d} % ({self.done} rows)")
            self._stream.flush()

    def finish(self) -> None:
        self._stream.write("\r\033[K")
        self._stream.flush()


def row_count(record: SessionRecord) -> int:
    return 1 + sum(len(rows) for rows in record.tables.values())


def summary_json(record: SessionRecord) -> dict[str, Any]:
    summary = record.summary()
    return {
        "alarms": {priority.label: n for priority, n in sorted(summary.alarms.items())},
        "ready_at_end": summary.ready,
        "gaps": [
            {"since_t": since, "t": until, "seconds": round(until - since, 3)}
            for since, until in summary.gaps
        ],
        "closed_by_sessiond": summary.closed_by_sessiond,
    }


def write_json(record: SessionRecord, out: IO[str], *, progress: Progress | None = None) -> None:
    """The session as one JSON object, streamed (a row per line in each table's array)."""
    head = {
        "format": "sessiond-session",
        "format_version": FORMAT_VERSION,
        "sessiond": __version__,
        "schema_version": record.schema_version,
        "session": record.session.row,
        "summary": summary_json(record),
    }
    out.write("{\n")
    for key, value in head.items():
        out.write(f"  {json.dumps(key)}: {_dumps(value)},\n")
    if progress is not None:
        progress.tick()
    for i, table in enumerate(TABLES):
        parsed = _JSON_COLUMNS.get(table)
        out.write(f"  {json.dumps(table)}: [")
        for j, row in enumerate(record.tables[table]):
            if parsed is not None:
                row = {**row, parsed: json.loads(row[parsed])}  # noqa: PLW2901
            out.write(("\n    " if j == 0 else ",\n    ") + _dumps(row))
            if progress is not None:
                progress.tick()
        out.write("\n  ]" if record.tables[table] else "]")
        out.write(",\n" if i < len(TABLES) - 1 else "\n")
    out.write("}\n")


def csv_columns(record: SessionRecord) -> list[str]:
    """`record`, `elapsed_s`, then each table's columns in first-seen order, the session's last."""
    names = ["record", "elapsed_s"]
    for table in TABLES:
        names += [name for name in record.columns[table] if name not in names]
    for name in record.session.row:
        csv_name = _SESSION_NAMES.get(name, name)
        if csv_name not in names:
            names.append(csv_name)
    return names


def write_csv(record: SessionRecord, out: IO[str], *, progress: Progress | None = None) -> None:
    """The session as one CSV table in time order (`record` says which table a row is from)."""
    session = record.session
    names = csv_columns(record)
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\r\n")
    writer.writeheader()
    head = {_SESSION_NAMES.get(k, k): v for k, v in session.row.items()}
    writer.writerow({"record": "session", **_cells(head)})
    if progress is not None:
        progress.tick()
    order = {table: i for i, table in enumerate(TABLES)}
    rows = sorted(
        (
            (row["t"], order[table], seq, table, row)
            for table in TABLES
            for seq, row in enumerate(record.tables[table])
        ),
        key=lambda item: item[:3],
    )
    for t, _, _, table, row in rows:
        elapsed = round(t - session.started_t, 3)
        writer.writerow({"record": table, "elapsed_s": elapsed, **_cells(row)})
        if progress is not None:
            progress.tick()


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    return {key: "" if value is None else value for key, value in row.items()}


def _dumps(value: Any) -> str:  # noqa: ANN401  (any JSON value)
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
