"""Helpers the repositories share: canonical JSON, validation of counts, bulk inserts and updates, chunking."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, Table, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError

from hwpareto.errors import InvalidValueError
from hwpareto.store._models import Base, Device

__all__ = [
    "bulk_insert",
    "bulk_update",
    "canonical",
    "chunks",
    "device_id",
    "dumps",
    "fetch_raw",
    "positive",
    "table_of",
    "unknown_device",
]

CHUNK = 5000
_T = TypeVar("_T")


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, finite numbers only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical(field: str, value: Any) -> str:
    """:func:`dumps` of mapping ``value``; anything else raises InvalidValueError naming ``field``."""
    if not isinstance(value, Mapping):
        raise InvalidValueError(field, "a mapping", value)
    try:
        return dumps(value)
    except (TypeError, ValueError):
        raise InvalidValueError(field, "JSON-serialisable values (finite numbers)", value) from None


def positive(field: str, value: Any) -> int:
    """``value`` as an int when it is a positive integer (not a bool), else InvalidValueError naming ``field``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return int(value)
    raise InvalidValueError(field, "a positive integer", value)


def unknown_device(conn: Connection, name: str, field: str = "device", alternative: str = "") -> InvalidValueError:
    """The error for a device name that is not registered, listing (up to 20) registered ones."""
    known = conn.execute(select(Device.name).order_by(Device.name).limit(21)).scalars().all()
    if not known:
        allowed = "a registered device (none registered yet: run hwpareto profile or hwpareto import)"
    else:
        allowed = "one of " + ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return InvalidValueError(field, allowed + alternative, name)


def device_id(conn: Connection, name: str) -> int:
    """The id of device ``name``; an unknown name raises :func:`unknown_device`'s error."""
    found = conn.execute(select(Device.id).where(Device.name == name)).scalar_one_or_none()
    if found is None:
        raise unknown_device(conn, name)
    return found


def table_of(entity: type[Base]) -> Table:
    """The Core table of an ORM class."""
    return Base.metadata.tables[entity.__tablename__]


def bulk_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys): COPY on PostgreSQL, chunked executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table.name, list(rows[0]), rows)
        return
    for chunk in chunks(rows, 20_000):
        conn.execute(insert(table), chunk)


def bulk_update(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the columns of every row by ``id`` (PostgreSQL: COPY into a temporary table, then one UPDATE)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    if conn.dialect.name == "postgresql":
        staging = f"{table.name}_staging"
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {staging} AS SELECT id, {', '.join(columns)} FROM {table.name} WITH NO DATA"
        )
        _copy(conn, staging, ["id", *columns], rows)
        assignments = ", ".join(f"{c} = s.{c}" for c in columns)
        conn.exec_driver_sql(f"UPDATE {table.name} AS t SET {assignments} FROM {staging} AS s WHERE t.id = s.id")
        conn.exec_driver_sql(f"DROP TABLE {staging}")
        return
    statement = update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(f"_{c}") for c in columns})
    for chunk in chunks(rows, 20_000):
        conn.execute(statement, [{f"_{k}": v for k, v in row.items()} for row in chunk])


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` through psycopg, inside the connection's transaction."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with _driver_errors(conn, statement, cursor), cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


@contextmanager
def _driver_errors(conn: Connection, statement: str, cursor: Any) -> Iterator[None]:
    """A DB-API error raised by ``cursor`` (used directly, outside SQLAlchemy) as SQLAlchemy raises one: wrapped in
    its ``DBAPIError``, the connection invalidated when the error means it is gone (``pg_terminate_backend``, a
    server restart), so callers and the workers' reconnection see the lost connection and the pool discards it
    (a bare driver error escaped them, and resetting the dead connection printed a traceback)."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=lost, dialect=conn.dialect
        ) from exc


def chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size`` (bound parameters per statement stay under the drivers' limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_raw(conn: Connection, query: Select[*tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of ``query`` as plain tuples through the DB-API cursor (no result processing: 10x faster than
    SQLAlchemy rows for 100k-row reads; bound values must be plain, e.g. an Enum column compared with its name)."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.construct_params()
    if compiled.positiontup is not None:
        params = tuple(params[name] for name in compiled.positiontup)
    cursor = conn.connection.cursor()
    try:
        with _driver_errors(conn, str(compiled), cursor):
            cursor.execute(str(compiled), params)
            return list(cursor.fetchall())
    finally:
        cursor.close()
