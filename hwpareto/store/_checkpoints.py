"""SuperNet checkpoints known to the store, keyed by space and SHA-256 (``store.checkpoints``).

Contract. :meth:`CheckpointRepository.record` stores (or refreshes) a checkpoint of a space: its absolute path, its
SHA-256 and header metadata; ``evaluated`` marks it as the checkpoint the space's quality was evaluated with (the
newest such is :meth:`~CheckpointRepository.trained`, what exports use when no checkpoint is named). Recording the
same file again updates its path and metadata and never clears ``evaluated_at``. :meth:`with_sha256` finds
checkpoints by content (bundles name their SuperNet by hash). The store records what it was told: a caller checks
the file on disk against the recorded hash before using it. Every method takes an optional ``conn``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from hwpareto.errors import InvalidValueError
from hwpareto.store._db import Database
from hwpareto.store._models import Checkpoint, utcnow
from hwpareto.store._records import CheckpointRecord
from hwpareto.store._sql import canonical
from supernet import check_name

__all__ = ["CheckpointRepository"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_QUERY = select(
    Checkpoint.space,
    Checkpoint.path,
    Checkpoint.sha256,
    Checkpoint.meta_json,
    Checkpoint.recorded_by,
    Checkpoint.evaluated_at,
    Checkpoint.updated_at,
)


class CheckpointRepository:
    """Record SuperNet checkpoints and find them by space or by hash (``store.checkpoints``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        space: str,
        path: str,
        sha256: str,
        meta: Mapping[str, Any],
        *,
        recorded_by: str,
        evaluated: bool = False,
        conn: Connection | None = None,
    ) -> CheckpointRecord:
        """Store checkpoint ``sha256`` of ``space`` at ``path`` (refreshing an earlier record of the same content);
        ``evaluated``: the space's quality was evaluated with it now."""
        check_name("checkpoint.space", space)
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise InvalidValueError("checkpoint.sha256", "64 lower-case hex digits", sha256)
        if not isinstance(path, str) or not path or len(path) > 4_096:
            raise InvalidValueError("checkpoint.path", "a file path of at most 4,096 characters", path)
        if not isinstance(recorded_by, str) or not 0 < len(recorded_by) <= 32:
            raise InvalidValueError("checkpoint.recorded_by", "a command name of at most 32 characters", recorded_by)
        values: dict[str, Any] = {
            "path": path,
            "meta_json": canonical("checkpoint.meta", meta),
            "recorded_by": recorded_by,
        }
        if evaluated:
            values["evaluated_at"] = utcnow()
        with self._db.write(conn) as c:
            where = (Checkpoint.space == space) & (Checkpoint.sha256 == sha256)
            if c.execute(select(Checkpoint.id).where(where)).first() is None:
                c.execute(insert(Checkpoint).values(space=space, sha256=sha256, **values))
            else:
                c.execute(update(Checkpoint).where(where).values(updated_at=utcnow(), **values))
            return _record(c.execute(_QUERY.where(where)).one())

    def trained(self, space: str, *, conn: Connection | None = None) -> CheckpointRecord | None:
        """The checkpoint ``space``'s quality was last evaluated with, or None."""
        query = (
            _QUERY.where(Checkpoint.space == space, Checkpoint.evaluated_at.is_not(None))
            .order_by(Checkpoint.evaluated_at.desc(), Checkpoint.id.desc())
            .limit(1)
        )
        with self._db.read(conn) as c:
            row = c.execute(query).first()
        return _record(row) if row is not None else None

    def with_sha256(self, sha256: str, *, conn: Connection | None = None) -> list[CheckpointRecord]:
        """Every recorded checkpoint with content ``sha256`` (of any space), newest first."""
        query = _QUERY.where(Checkpoint.sha256 == sha256).order_by(Checkpoint.updated_at.desc(), Checkpoint.id.desc())
        with self._db.read(conn) as c:
            return [_record(row) for row in c.execute(query)]


def _record(row: Row[*tuple[Any, ...]]) -> CheckpointRecord:
    return CheckpointRecord(
        space=row.space,
        path=row.path,
        sha256=row.sha256,
        meta=json.loads(row.meta_json),
        recorded_by=row.recorded_by,
        evaluated_at=row.evaluated_at.isoformat() if row.evaluated_at else None,
        updated_at=row.updated_at.isoformat() if row.updated_at else None,
    )
