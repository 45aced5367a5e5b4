"""Workers that outlive a lost store connection: a PostgreSQL server restarted, a backend ended by
``pg_terminate_backend``, a network cut. The engines check connections before use (``pool_pre_ping``), so running
the failed step again is reconnecting; :class:`Reconnect` does that a bounded number of times with exponential
backoff, then gives up with one line (:class:`StoreConnectionLost`). Steps retried are resumable: a surrogate search
resumes from its stored trials, a budgeted coordinator replays its asks, a claim or a heartbeat is simply redone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from hwpareto.errors import HwparetoError

__all__ = ["RECONNECT_TRIES", "Reconnect", "StoreConnectionLost", "connection_lost"]

T = TypeVar("T")

RECONNECT_TRIES = 6
"""Reconnections tried in a row (without progress in between) before a worker gives up."""
FIRST_DELAY_S = 0.5
"""The first wait before reconnecting; each next one doubles, up to :data:`MAX_DELAY_S` (0.5 + 1 + ... + 8 + 8 s)."""
MAX_DELAY_S = 8.0

_LOST_STATES = (
    "57P01",  # admin shutdown: pg_terminate_backend, a server stopping
    "57P02",  # crash shutdown
    "57P03",  # cannot connect now: the server is starting
    "53300",  # too many connections
    "55000",  # at connect: the database is not accepting connections (ALLOW_CONNECTIONS false)
)


class StoreConnectionLost(HwparetoError):
    """The store's connection was lost and could not be got back."""


def connection_lost(exc: BaseException) -> str | None:
    """The driver's one-line reason when ``exc``, or an error it wraps (Optuna wraps SQLAlchemy's, which wraps the
    driver's), is a lost or refused database connection; None for any other error."""
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, DBAPIError):
            orig = cause.orig
            state = getattr(orig, "sqlstate", None)
            refused = state is None and type(orig).__module__.startswith("psycopg")  # no server answered
            if not (cause.connection_invalidated or refused or (state or "").startswith("08") or state in _LOST_STATES):
                return None
            text = str(orig).strip()
            return text.splitlines()[0] if text else type(orig).__name__
        cause = cause.__cause__ or cause.__context__
    return None


class Reconnect:
    """Runs a step again while it fails for a lost store connection: up to :data:`RECONNECT_TRIES` times in a row,
    waiting :data:`FIRST_DELAY_S` doubling up to :data:`MAX_DELAY_S` before each, each announced by one ``log``
    line; the count starts again once the step has made progress (``progress()`` grew). Then
    :class:`StoreConnectionLost` names the store, the step and the driver's reason."""

    def __init__(
        self,
        store_url: str,
        log: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
        tries: int = RECONNECT_TRIES,
    ) -> None:
        self.store_url, self.log, self.sleep, self.tries = store_url, log, sleep, tries

    def __call__(self, what: str, step: Callable[[], T], progress: Callable[[], int] = lambda: 0) -> T:
        """``step()``'s result, ``step`` run again after each lost connection (``what`` names it in messages)."""
        failures = 0
        waited_s = 0.0
        while True:
            before = progress()
            try:
                return step()
            except Exception as exc:
                reason = connection_lost(exc)
                if reason is None:
                    raise
                if progress() > before:
                    failures, waited_s = 0, 0.0
                failures += 1
                if failures > self.tries:
                    raise StoreConnectionLost(
                        f"lost the connection to store {self.store_url} while {what}, and {self.tries} "
                        f"reconnections over {waited_s:g} s failed: {reason}"
                    ) from None
                delay_s = min(FIRST_DELAY_S * 2 ** (failures - 1), MAX_DELAY_S)
                self.log(
                    f"lost the connection to the store while {what} ({reason}); reconnecting in {delay_s:g} s "
                    f"(try {failures} of {self.tries})"
                )
                self.sleep(delay_s)
                waited_s += delay_s
