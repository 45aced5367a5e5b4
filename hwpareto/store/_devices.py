"""Devices: the hardware targets measurements, LUTs and cost predictors belong to.

Contract. Names and kinds follow ``supernet.check_name`` (the backends declare the kinds, ``imported`` names a
device known only from an imported table); ``spec`` and ``provenance``
are JSON mappings, stored canonically. A name is one set of parameters: registering it again with the same kind and
spec is a no-op, with another kind or spec a :class:`HwparetoError` naming each differing field (old → new) unless
the caller asks to replace it, which drops what was measured with the old parameters (LUT entries, measurements,
predictors). :meth:`DeviceRepository.get` of an unknown name raises InvalidValueError listing the registered
devices. Every method takes an optional ``conn``: the caller's
transaction (see :class:`hwpareto.store._db.Database`), else the method opens its own.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from hwpareto.errors import HwparetoError
from hwpareto.store._db import Database
from hwpareto.store._models import Device, LutEntry, Measurement, Predictor
from hwpareto.store._records import DeviceRecord
from hwpareto.store._sql import canonical, dumps, unknown_device
from supernet import check_name

__all__ = ["DeviceData", "DeviceRepository"]

_ABSENT = object()
MAX_DIFFERENCES = 8
"""Differing fields a refusal names (then the count of the others)."""


@dataclass(frozen=True, slots=True)
class DeviceData:
    """What a device holds that was measured with its parameters."""

    lut_entries: int
    measurements: int
    predictors: int

    def __str__(self) -> str:
        n, m, k = self.lut_entries, self.measurements, self.predictors
        return (
            f"{n} LUT {'entry' if n == 1 else 'entries'}, {m} measurement{'' if m == 1 else 's'}, "
            f"{k} predictor{'' if k == 1 else 's'}"
        )


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
        """Register a device. One of that name with the same kind and spec is returned unchanged (its provenance
        kept); with another kind or spec it is refused (:meth:`check`) unless ``replace``, which deletes its LUT
        entries, measurements and predictors (measured with the old parameters) and stores the new kind, spec and
        provenance."""
        check_name("device.name", name)
        check_name("device.kind", kind)
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
                for table in (LutEntry, Measurement, Predictor):
                    c.execute(delete(table).where(table.device_id == existing))
                c.execute(update(Device).where(Device.id == existing).values(**values))
            else:
                self.check(name, kind, spec, provenance, conn=c)
            return self.get(name, conn=c)

    def check(
        self,
        name: str,
        kind: str,
        spec: Mapping[str, Any],
        provenance: Mapping[str, Any] | None = None,
        *,
        conn: Connection | None = None,
    ) -> None:
        """Raise the one-line :class:`HwparetoError` that :meth:`add` raises when ``name`` is registered with another
        kind or spec, or with files of other contents (provenance ``*_sha256`` fields both sides record, e.g. a
        ZigZag hardware file edited in place): each differing field ``old → new`` and what replacing it would drop;
        nothing when ``name`` is new or registered with these."""
        with self._db.read(conn) as c:
            found = _devices(c, name)
            if not found:
                return
            old = found[0]
            differences = _differences(old.spec, json.loads(canonical("device.spec", spec)))
            if old.kind != kind and not any(d.startswith("kind:") for d in differences):
                differences.insert(0, f"kind: {_shown(old.kind)} → {_shown(kind)}")
            hashes = {k: v for k, v in (provenance or {}).items() if k.endswith("_sha256") and k in old.provenance}
            differences += _differences({k: old.provenance[k] for k in hashes}, hashes, "provenance.")
            if not differences:
                return
            held = self.held(name, conn=c)
        more = len(differences) - MAX_DIFFERENCES
        listed = "; ".join(differences[:MAX_DIFFERENCES]) + (f"; {more} more" if more > 0 else "")
        raise HwparetoError(
            f"device {name!r} is registered with other parameters ({listed}): register them under a new name, or "
            f"replace the device (hwpareto device add FILE --replace drops its {held})"
        )

    def held(self, name: str, *, conn: Connection | None = None) -> DeviceData:
        """The LUT entries, measurements and predictors of device ``name``."""
        with self._db.read(conn) as c:
            found = c.execute(select(Device.id).where(Device.name == name)).scalar_one_or_none()
            if found is None:
                raise unknown_device(c, name)
            counts = [
                int(c.execute(select(func.count()).select_from(table).where(table.device_id == found)).scalar_one())
                for table in (LutEntry, Measurement, Predictor)
            ]
        return DeviceData(*counts)

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


def _same(a: Any, b: Any) -> bool:
    """JSON values equal as values (``3 == 3.0``; a boolean equals only a boolean)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _shown(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else dumps(value) if isinstance(value, (Mapping, list)) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``path: old → new`` of every leaf where two JSON mappings differ (sorted paths; nested mappings by dotted
    path)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a is _ABSENT or b is _ABSENT or not _same(a, b):
            out.append(f"{prefix}{key}: {_shown(a)} → {_shown(b)}")
    return out


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
