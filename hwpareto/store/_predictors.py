"""Trained predictors: a portable blob (never a pickle) and JSON metadata, keyed by name.

Contract. ``kind`` is one of ``PREDICTOR_KINDS``; ``blob`` is non-empty bytes; ``meta`` a JSON mapping.
Saving a name again replaces it. :meth:`PredictorRepository.load` of an unknown name raises InvalidValueError
listing the stored predictors; a cost predictor's ``device`` must be registered. Every method takes an optional
``conn`` (the caller's transaction), else opens its own.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from hwpareto.errors import InvalidValueError
from hwpareto.store._db import Database
from hwpareto.store._models import PREDICTOR_KINDS, Device, Predictor
from hwpareto.store._records import PredictorBlob, PredictorRecord
from hwpareto.store._sql import canonical, device_id
from supernet import check_name

__all__ = ["PredictorRepository"]

_QUERY = select(
    Predictor.name,
    Predictor.kind,
    Predictor.space,
    Device.name.label("device"),
    Predictor.dataset,
    Predictor.metric,
    Predictor.format,
    Predictor.meta_json,
    Predictor.created_at,
).outerjoin(Device, Device.id == Predictor.device_id)


class PredictorRepository:
    """Save, load, list predictors and update their metadata (``store.predictors``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(
        self,
        name: str,
        *,
        kind: str,
        space: str,
        metric: str,
        blob: bytes,
        meta: Mapping[str, Any],
        device: str | None = None,
        dataset: str | None = None,
        fmt: str = "hwpareto-predictor",
        conn: Connection | None = None,
    ) -> None:
        """Store (or replace) predictor ``name``: portable ``blob`` plus JSON ``meta`` (metrics, versions...)."""
        check_name("predictor.name", name)
        if kind not in PREDICTOR_KINDS:
            raise InvalidValueError("predictor.kind", "one of " + ", ".join(PREDICTOR_KINDS), kind)
        if not isinstance(blob, bytes) or not blob:
            raise InvalidValueError("predictor.blob", "non-empty bytes", type(blob).__name__)
        values: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "space": space,
            "dataset": dataset,
            "metric": metric,
            "format": fmt,
            "blob": blob,
            "meta_json": canonical("predictor.meta", meta),
        }
        with self._db.write(conn) as c:
            if device is not None:
                values["device_id"] = device_id(c, device)
            c.execute(delete(Predictor).where(Predictor.name == name))
            c.execute(insert(Predictor).values(**values))

    def load(self, name: str, *, conn: Connection | None = None) -> PredictorBlob:
        """Predictor ``name`` with its blob."""
        with self._db.read(conn) as c:
            row = c.execute(_QUERY.add_columns(Predictor.blob).where(Predictor.name == name)).first()
            if row is None:
                known = c.execute(select(Predictor.name).order_by(Predictor.name)).scalars().all()
                allowed = "one of " + ", ".join(known) if known else "a trained predictor (none yet: hwpareto train)"
                raise InvalidValueError("predictor", allowed, name)
        return PredictorBlob(**_fields(row), blob=bytes(row.blob))

    def list(self, space: str | None = None, *, conn: Connection | None = None) -> builtins.list[PredictorRecord]:
        """All predictors (without blobs), optionally of one space, by name."""
        query = _QUERY.order_by(Predictor.name)
        if space is not None:
            query = query.where(Predictor.space == space)
        with self._db.read(conn) as c:
            return [PredictorRecord(**_fields(row)) for row in c.execute(query)]

    def update_meta(self, name: str, meta: Mapping[str, Any], *, conn: Connection | None = None) -> None:
        """Replace the JSON metadata of predictor ``name`` (e.g. to append a drift check)."""
        with self._db.write(conn) as c:
            updated = c.execute(
                update(Predictor).where(Predictor.name == name).values(meta_json=canonical("predictor.meta", meta))
            ).rowcount
            if not updated:
                raise InvalidValueError("predictor", "a trained predictor", name)


def _fields(row: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    """PredictorRecord's fields from a row of ``_QUERY``."""
    return {
        "name": row.name,
        "kind": row.kind,
        "space": row.space,
        "device": row.device,
        "dataset": row.dataset,
        "metric": row.metric,
        "format": row.format,
        "meta": json.loads(row.meta_json),
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }
