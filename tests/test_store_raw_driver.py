"""Issue 28 (security 3), found again in QA: the store's fast paths (``fetch_raw``: the trials a worker resumes
from; ``COPY`` for bulk writes) talk to psycopg's cursor directly, so a backend ended by ``pg_terminate_backend``
under them raised psycopg's bare ``AdminShutdown``, which the workers' reconnection did not recognise (it reads
SQLAlchemy's wrapped errors): a surrogate worker whose connections were terminated while it loaded its trials died
with a traceback, and SQLAlchemy's pool printed another while resetting the dead connection. These errors now reach
callers as SQLAlchemy's ``DBAPIError`` (the connection invalidated), as every other query's do."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from sqlalchemy import Connection, literal, select

from hwpareto.store import Store
from hwpareto.store._models import Device
from hwpareto.store._sql import bulk_insert, fetch_raw, table_of
from pareto.search._reconnect import Reconnect


def _terminate(admin: Any, conn: Connection) -> None:
    """End ``conn``'s backend from the admin connection and wait until it is gone (its pid read from the driver:
    a query through SQLAlchemy would begin a transaction, whose rollback then reports the loss itself)."""
    pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 30
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline, "the terminated backend is still there after 30 s"
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["fetch_raw", "copy"])
def test_a_backend_terminated_under_a_raw_driver_call_is_a_lost_connection(
    pg_server: tuple[Any, Any], pg_url: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = pg_server[0]
    attempts: list[int] = []
    said: list[str] = []

    with Store.open(pg_url) as store:  # a worker reads its trials outside a transaction, writes inside one

        def step() -> list[tuple[Any, ...]]:
            attempts.append(1)
            with store.transaction(lock=False) if path == "copy" else store.read() as conn:
                if len(attempts) == 1:
                    _terminate(admin, conn)
                if path == "copy":
                    row = {"name": "board", "kind": "cpu", "spec_json": "{}", "provenance_json": "{}"}
                    bulk_insert(conn, table_of(Device), [row])
                    return [tuple(r) for r in conn.execute(select(Device.name)).all()]
                return fetch_raw(conn, select(literal(7)))

        with caplog.at_level(logging.WARNING, logger="sqlalchemy"):
            got = Reconnect(pg_url, said.append, sleep=lambda _s: None)("reading", step)
    assert got == ([("board",)] if path == "copy" else [(7,)])
    assert len(attempts) == 2 and len(said) == 1, said
    assert said[0].startswith("lost the connection to the store while reading"), said
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy")], caplog.text  # no pool traceback
