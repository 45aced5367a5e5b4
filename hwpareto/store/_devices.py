"""Devices: the hardware targets measurements, LUTs and cost predictors belong to.

Contract. Names follow ``supernet.check_name``; ``kind`` is one of ``DEVICE_KINDS``; ``spec`` and ``provenance``
are JSON mappings, stored canonically. :meth:`DeviceRepository.get` of an unknown name raises
InvalidValueError listing the registered devices. Every method takes an optional ``conn``: the caller's
transaction (see :class:`hwpareto.store._db.Database`), else the method opens its own.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from hwpareto.errors import InvalidValueError
from hwpareto.store._db import Database
from hwpareto.store._models import DEVICE_KINDS, Device, LutEntry, Measurement
from hwpareto.store._records import DeviceRecord
from hwpareto.store._sql import canonical, unknown_device
from supernet import check_name

__all__ = ["DeviceRepository"]


class DeviceRepository:
    """Register, read and list devices (``store.devices``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        name: str,
        kind: str,
        spec: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
        *,
        replace: bool = False,
        conn: Connection | None = None,
    ) -> DeviceRecord:
        """Register a device; an existing one of that name is returned unchanged unless ``replace``."""
        check_name("device.name", name)
        if kind not in DEVICE_KINDS:
            raise InvalidValueError("device.kind", "one of " + ", ".join(DEVICE_KINDS), kind)
        values = {
            "kind": kind,
            "spec_json": canonical("device.spec", spec),
            "provenance_json": canonical("device.provenance", provenance or {}),
        }
        with self._db.write(conn) as c:
            existing = c.execute(select(Device.id).where(Device.name == name)).scalar_one_or_none()
            if existing is None:
                c.execute(insert(Device).values(name=name, **values))
            elif replace:
                c.execute(update(Device).where(Device.id == existing).values(**values))
            return self.get(name, conn=c)

    def get(self, name: str, *, conn: Connection | None = None) -> DeviceRecord:
        """The device called ``name``."""
        with self._db.read(conn) as c:
            found = _devices(c, name)
            if not found:
                raise unknown_device(c, name)
        return found[0]

    def list(self, *, conn: Connection | None = None) -> builtins.list[DeviceRecord]:
        """Every device, by name."""
        with self._db.read(conn) as c:
            return _devices(c)


def _devices(conn: Connection, name: str | None = None) -> list[DeviceRecord]:
    lut = select(LutEntry.device_id, func.count().label("n")).group_by(LutEntry.device_id).subquery()
    measured = (
        select(Measurement.device_id, func.count().label("n"))
        .where(Measurement.device_id.is_not(None))
        .group_by(Measurement.device_id)
        .subquery()
    )
    query = (
        select(
            Device.name,
            Device.kind,
            Device.spec_json,
            Device.provenance_json,
            func.coalesce(lut.c.n, 0),
            func.coalesce(measured.c.n, 0),
            Device.created_at,
            Device.updated_at,
        )
        .outerjoin(lut, lut.c.device_id == Device.id)
        .outerjoin(measured, measured.c.device_id == Device.id)
        .order_by(Device.name)
    )
    if name is not None:
        query = query.where(Device.name == name)
    return [
        DeviceRecord(
            name=row[0],
            kind=row[1],
            spec=json.loads(row[2]),
            provenance=json.loads(row[3]),
            lut_entries=int(row[4]),
            measurements=int(row[5]),
            created_at=row[6].isoformat(),
            updated_at=row[7].isoformat(),
        )
        for row in conn.execute(query)
    ]
