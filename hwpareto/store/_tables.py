"""CSV tables in and out: bounded reading of tables users import, and stored measurements as wide tables (one row
per SubNet, one column per subject), e.g. to round-trip imports."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pandas as pd

from hwpareto.errors import HwparetoError
from hwpareto.store._store import Store
from supernet import SearchSpace

__all__ = [
    "FORMULA_PREFIXES",
    "MAX_LINE_CHARS",
    "MAX_TABLE_BYTES",
    "csv_safe",
    "open_table",
    "wide_table",
    "write_wide_csv",
]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_TABLE_BYTES = 256 * 1024**2
"""Largest CSV file an import reads (40 times NAS-Bench-201's full table)."""
MAX_LINE_CHARS = 1024**2
"""Longest line of an imported CSV file (characters)."""


@contextlib.contextmanager
def open_table(path: str | Path, what: str) -> Iterator[Iterator[str]]:
    """The lines of the UTF-8 CSV file ``path`` (for :mod:`csv`; a leading byte-order mark dropped), read with
    bounds: a regular file of more than :data:`MAX_TABLE_BYTES` is refused before it is read, and while reading
    (devices and pipes have no size: ``/dev/zero``) a line longer than :data:`MAX_LINE_CHARS` or more than
    ``MAX_TABLE_BYTES`` characters in all stop with a one-line error naming ``what`` and ``path``."""
    p = Path(path)
    try:
        fh = p.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise HwparetoError(f"{what} {p}: cannot read ({exc.strerror})") from None
    with fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_TABLE_BYTES:
            raise HwparetoError(
                f"{what} {p}: expected a file of at most {MAX_TABLE_BYTES:,} bytes, got {info.st_size:,} bytes"
            )
        yield _bounded_lines(fh, f"{what} {p}")


def _bounded_lines(fh: TextIO, where: str) -> Iterator[str]:
    total = 0
    for number in itertools.count(1):
        try:
            line = fh.readline(MAX_LINE_CHARS + 1)
        except OSError as exc:
            raise HwparetoError(f"{where}: cannot read ({exc.strerror})") from None
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise HwparetoError(
                f"{where}: expected lines of at most {MAX_LINE_CHARS:,} characters, line {number:,} is longer"
            )
        total += len(line)
        if total > MAX_TABLE_BYTES:
            raise HwparetoError(f"{where}: expected at most {MAX_TABLE_BYTES:,} characters, got more")
        yield line


def _cell(value: object) -> object:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` for a CSV a spreadsheet may open: text cells (and column names) that start with ``= + - @``, a tab
    or a carriage return get a leading ``'`` so they are not run as formulas. Numbers (``-5.2``) stay numbers:
    only strings are escaped. Every CSV hwpareto writes goes through this."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column].dtype):
            out[column] = out[column].map(_cell)
    out.columns = [_cell(c) for c in out.columns]
    return out


def wide_table(
    store: Store,
    space: SearchSpace,
    *,
    subject: str | None = None,
    subject_kind: str | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """One row per SubNet: ``config_key``, the space's record columns, then one value column per subject
    (``subject`` alone when a single metric is selected, else ``subject.metric``)."""
    df = store.measurements.table(space=space.name, subject=subject, subject_kind=subject_kind, metric=metric)
    if df.empty:
        return pd.DataFrame(columns=["config_key"])
    single_metric = df["metric"].nunique() == 1
    df = df.assign(column=df["subject"] if single_metric else df["subject"] + "." + df["metric"])
    if df.duplicated(["config_key", "column"]).any():  # several sources or batches for one cell
        df = df.assign(column=df["column"] + "." + df["source"] + ".b" + df["batch"].astype(str))
    values = df.pivot(index="config_key", columns="column", values="value")
    configs = df.drop_duplicates("config_key").set_index("config_key")["config_json"]
    records = pd.DataFrame.from_records(
        [space.to_record(space.validate(json.loads(configs[k]))) for k in values.index], index=values.index
    )
    return pd.concat([records, values], axis=1).reset_index()


def write_wide_csv(
    store: Store,
    space: SearchSpace,
    path: str | Path,
    *,
    subject: str | None = None,
    subject_kind: str | None = None,
    metric: str | None = None,
) -> int:
    """Write :func:`wide_table` to ``path``; returns the number of SubNets written."""
    table = wide_table(store, space, subject=subject, subject_kind=subject_kind, metric=metric)
    try:
        csv_safe(table).to_csv(path, index=False)
    except OSError as exc:
        raise HwparetoError(f"output {path}: cannot write ({exc.strerror})") from None
    return len(table)
