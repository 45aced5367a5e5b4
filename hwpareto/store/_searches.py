"""The search queue: searches submitted, claimed by workers, kept alive by heartbeats and finished.

Contract. A search moves ``queued`` -> ``running`` (claimed by one worker) -> ``done``/``failed``/``cancelled``;
:meth:`SearchRepository.claim` is atomic (one transaction under the write lock: two workers never claim one
search) and also takes over a running search whose worker stopped sending heartbeats. A name already used, an
unknown name, a status outside ``SEARCH_STATUSES`` or deleting an active search raise InvalidValueError.
Heartbeats and finishing take no store-wide lock (they never wait behind a bulk write). Every method takes an
optional ``conn`` (the caller's transaction), else opens its own.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from hwpareto.errors import InvalidValueError
from hwpareto.store._db import Database
from hwpareto.store._models import SEARCH_STATUSES, Search, utcnow
from hwpareto.store._records import SearchRecord
from hwpareto.store._sql import canonical
from supernet import check_name

__all__ = ["SearchRepository"]


class SearchRepository:
    """The queue of searches (``store.searches``); their trials live in Optuna's tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def submit(
        self, name: str, space: str, params: Mapping[str, Any], n_trials: int, *, conn: Connection | None = None
    ) -> SearchRecord:
        """Queue a search (its Optuna study is called ``name``)."""
        check_name("search.name", name)
        with self._db.write(conn) as c:
            if c.execute(select(Search.id).where(Search.name == name)).first() is not None:
                raise InvalidValueError("search name", "a name not used by another search", name)
            c.execute(
                insert(Search).values(
                    name=name,
                    space=space,
                    params_json=canonical("search", params),
                    status="queued",
                    n_trials=n_trials,
                    study_name=name,
                )
            )
            return self.get(name, conn=c)

    def get(self, name: str, *, conn: Connection | None = None) -> SearchRecord:
        """Search ``name``."""
        with self._db.read(conn) as c:
            row = c.execute(select(Search).where(Search.name == name)).first()
            if row is None:
                known = c.execute(select(Search.name).order_by(Search.id.desc()).limit(20)).scalars().all()
                raise InvalidValueError("search", "one of " + ", ".join(known) if known else "a submitted search", name)
        return _record(row)

    def list(self, *, conn: Connection | None = None) -> builtins.list[SearchRecord]:
        """All searches, newest first."""
        with self._db.read(conn) as c:
            return [_record(row) for row in c.execute(select(Search).order_by(Search.id.desc()))]

    def delete(self, name: str, *, conn: Connection | None = None) -> bool:
        """Remove search ``name``'s row (not its Optuna study); False when there is none. A queued or running
        search raises InvalidValueError (:meth:`cancel` it first)."""
        with self._db.write(conn) as c:
            status = c.execute(select(Search.status).where(Search.name == name)).scalar_one_or_none()
            if status is None:
                return False
            if status in ("queued", "running"):
                raise InvalidValueError(f"search {name!r}", "a finished, failed or cancelled search to delete", status)
            c.execute(delete(Search).where(Search.name == name))
        return True

    def claim(
        self, worker: str, name: str | None = None, stale_after_s: float = 30.0, *, conn: Connection | None = None
    ) -> SearchRecord | None:
        """Give ``worker`` a search to run: the oldest queued one (or ``name``), or a running one whose worker
        stopped sending heartbeats ``stale_after_s`` ago (it resumes from the stored trials); None when none is."""
        now = utcnow()
        stale = now - timedelta(seconds=stale_after_s)
        with self._db.write(conn) as c:
            query = (
                select(Search.id, Search.name)
                .where((Search.status == "queued") | ((Search.status == "running") & (Search.heartbeat_at < stale)))
                .order_by(Search.id)
            )
            if name is not None:
                query = query.where(Search.name == name)
            row = c.execute(query.limit(1)).first()
            if row is None:
                return None
            c.execute(
                update(Search)
                .where(Search.id == row.id)
                .values(status="running", worker=worker, heartbeat_at=now, error=None)
            )
            return self.get(row.name, conn=c)

    def requeue(self, name: str, n_trials: int | None = None, *, conn: Connection | None = None) -> None:
        """Put a finished, failed or queued search back in the queue (to retry, or to run up to ``n_trials``); a
        running search is left alone."""
        values: dict[str, Any] = {"status": "queued", "worker": None, "error": None}
        with self._db.write(conn) as c:
            if n_trials is not None:
                params = c.execute(select(Search.params_json).where(Search.name == name)).scalar_one()
                values.update(
                    n_trials=n_trials, params_json=canonical("search", {**json.loads(params), "n_trials": n_trials})
                )
            c.execute(update(Search).where(Search.name == name, Search.status != "running").values(**values))

    def cancel(self, name: str, *, conn: Connection | None = None) -> SearchRecord:
        """Cancel a queued or running search (a running one's worker finds it at its next heartbeat and stops; one
        whose worker died is released too); the search as it is now. Another status raises InvalidValueError."""
        with self._db.write(conn) as c:
            status = self.get(name, conn=c).status
            if status not in ("queued", "running"):
                raise InvalidValueError(f"search {name!r}", "a queued or running search to cancel", status)
            c.execute(update(Search).where(Search.name == name).values(status="cancelled", heartbeat_at=utcnow()))
            return self.get(name, conn=c)

    def heartbeat(self, name: str, worker: str, trials_done: int, *, conn: Connection | None = None) -> bool:
        """Record progress; False when ``worker`` no longer owns the search (taken over or cancelled)."""
        with self._db.write(conn, lock=False) as c:
            updated = c.execute(
                update(Search)
                .where(Search.name == name, Search.worker == worker, Search.status == "running")
                .values(heartbeat_at=utcnow(), trials_done=trials_done)
            ).rowcount
        return bool(updated)

    def finish(
        self,
        name: str,
        worker: str,
        status: str,
        error: str | None = None,
        trials_done: int | None = None,
        *,
        conn: Connection | None = None,
    ) -> None:
        """Mark ``worker``'s running search done, failed or cancelled (a search cancelled or taken over meanwhile
        is left as it is)."""
        if status not in SEARCH_STATUSES:
            raise InvalidValueError("search.status", "one of " + ", ".join(SEARCH_STATUSES), status)
        values: dict[str, Any] = {"status": status, "error": error, "heartbeat_at": utcnow()}
        if trials_done is not None:
            values["trials_done"] = trials_done
        with self._db.write(conn, lock=False) as c:
            c.execute(
                update(Search)
                .where(Search.name == name, Search.worker == worker, Search.status == "running")
                .values(**values)
            )


def _record(row: Row[Any]) -> SearchRecord:
    return SearchRecord(
        name=row.name,
        space=row.space,
        params=json.loads(row.params_json),
        status=row.status,
        n_trials=row.n_trials,
        trials_done=row.trials_done,
        study_name=row.study_name,
        worker=row.worker,
        heartbeat_at=row.heartbeat_at.isoformat() if row.heartbeat_at else None,
        error=row.error,
        created_at=row.created_at.isoformat() if row.created_at else None,
    )
