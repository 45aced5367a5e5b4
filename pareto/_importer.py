"""Import third-party measurement tables (CSV) into the store: all rows validated first, then one transaction."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import MeasurementIn, Store, WriteResult, open_table
from supernet import SearchSpace, check_metric_value, check_name

__all__ = ["ColumnMap", "ImportReport", "import_table", "parse_columns"]

MAX_REPORTED_ROWS = 10


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """A value column of the table and the subject (device or dataset) its values belong to."""

    column: str
    subject: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """Outcome of :func:`import_table`."""

    path: str
    rows: int
    subnets: int
    skipped_empty: int
    written: WriteResult


def parse_columns(specs: Sequence[str], subject: str) -> list[ColumnMap]:
    """Turn ``--column`` options (``C`` or ``C=SUBJECT``) into column maps.

    ``subject`` (from ``--device``/``--dataset``) names the subject of plain ``C`` entries and may contain
    ``{column}``, replaced by the column name; several plain columns need that placeholder.
    """
    if not specs:
        raise InvalidValueError("--column", "at least one value column", "none")
    plain = [s for s in specs if "=" not in s]
    if len(plain) > 1 and "{column}" not in subject:
        raise InvalidValueError(
            "--device/--dataset", "a name containing {column} when several --column are given (or C=NAME)", subject
        )
    maps: list[ColumnMap] = []
    for spec in specs:
        column, _, explicit = spec.partition("=")
        name = explicit if explicit else subject.replace("{column}", column)
        if not column:
            raise InvalidValueError("--column", "a column name, optionally followed by =SUBJECT", spec)
        check_name(f"subject of column {column!r}", name)
        maps.append(ColumnMap(column, name))
    if len({m.column for m in maps}) != len(maps):
        raise InvalidValueError("--column", "each column at most once", list(specs))
    return maps


def import_table(
    store: Store,
    path: str | Path,
    *,
    space: SearchSpace,
    columns: Sequence[ColumnMap],
    subject_kind: Literal["device", "dataset"],
    metric: str,
    defaults: Mapping[str, Any] | None = None,
    source: str = "imported",
    batch: int = 1,
    where: Mapping[str, str] | None = None,
) -> ImportReport:
    """Read ``path``, turn every row into a config of ``space`` and one measurement per value column, and write
    them in one transaction. Any bad row aborts the import with an error listing row numbers (the header is
    row 1); nothing is written then. Two rows with values for one SubNet in one column are refused as bad rows
    (even equal values: one row per SubNet). Empty cells are skipped. Re-importing the same table changes nothing.
    Unknown devices are registered with kind ``imported``. ``where`` keeps only rows whose columns hold the given
    values (for long tables, e.g. ``{"device": "xeon"}``)."""
    where = dict(where or {})
    p = Path(path)
    with open_table(p, "CSV") as lines:
        reader = csv.DictReader(lines)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError as exc:
            raise HwparetoError(f"CSV {p}: expected UTF-8 text, got binary data at byte {exc.start}") from None
        except csv.Error as exc:
            raise HwparetoError(f"CSV {p}: not a readable CSV header ({exc})") from None
        _check_header(p, header, space, columns, set(defaults or {}))
        unknown = [c for c in where if c not in header]
        if unknown:
            raise InvalidValueError(
                f"CSV {p} --where columns", "columns among " + ", ".join(header), ", ".join(unknown)
            )
        rows: list[MeasurementIn] = []
        errors: list[str] = []
        keys: set[str] = set()
        first_row: dict[tuple[str, str], int] = {}  # (SubNet, column) -> the row that gave its value
        n_rows = skipped = 0
        try:
            for line, record in enumerate(reader, start=2):
                if any((record.get(c) or "").strip() != v for c, v in where.items()):
                    continue
                n_rows += 1
                if None in record:
                    errors.append(f"row {line}: {len(header) + len(record[None])} fields, header has {len(header)}")
                    continue
                try:
                    config = space.from_record(record, defaults)
                except InvalidValueError as exc:
                    errors.append(f"row {line}: {exc}")
                    continue
                keys.add(config.key)
                for cmap in columns:
                    raw = (record.get(cmap.column) or "").strip()
                    if not raw:
                        skipped += 1
                        continue
                    try:  # the range of the metric's unit (supernet.metric_range), as every store write checks
                        value = check_metric_value(cmap.column, metric, _float(raw))
                    except InvalidValueError as exc:
                        errors.append(f"row {line}: column {cmap.column!r}: expected {exc.allowed}, got {raw!r}")
                        continue
                    earlier = first_row.setdefault((config.key, cmap.column), line)
                    if earlier != line:
                        errors.append(
                            f"rows {earlier} and {line}: the same SubNet in column {cmap.column!r} (one row per SubNet)"
                        )
                        continue
                    rows.append(
                        MeasurementIn(
                            config, subject_kind, cmap.subject, metric, value, batch=batch, source=source, origin=p.name
                        )
                    )
        except (csv.Error, UnicodeDecodeError) as exc:
            raise HwparetoError(f"CSV {p}: unreadable near row {n_rows + 1} ({exc})") from None
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ROWS])
        more = f" (and {len(errors) - MAX_REPORTED_ROWS} more)" if len(errors) > MAX_REPORTED_ROWS else ""
        raise HwparetoError(f"CSV {p}: {len(errors)} bad row(s), nothing imported: {shown}{more}")
    if not rows:
        selected = f" among rows where {where}" if where else ""
        raise HwparetoError(f"CSV {p}: no values to import in columns {', '.join(c.column for c in columns)}{selected}")
    written = store.measurements.add(rows, auto_devices=subject_kind == "device")
    return ImportReport(str(p), n_rows, len(keys), skipped, written)


def _check_header(
    path: Path, header: Sequence[str], space: SearchSpace, columns: Sequence[ColumnMap], fixed: set[str]
) -> None:
    if not header:
        raise HwparetoError(f"CSV {path}: empty file (no header row)")
    present = set(header)
    missing = [c.column for c in columns if c.column not in present]
    if missing:
        raise InvalidValueError(
            f"CSV {path} columns", "the --column names among " + ", ".join(header), "missing " + ", ".join(missing)
        )
    alternatives = space.record_columns()
    if not any(set(alt) <= present | fixed for alt in alternatives):
        allowed = " or ".join("(" + ", ".join(alt) + ")" for alt in alternatives)
        raise InvalidValueError(
            f"CSV {path} columns",
            f"config columns {allowed} for space {space.name!r} (or --set for the missing ones)",
            ", ".join(header),
        )


def _float(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None
