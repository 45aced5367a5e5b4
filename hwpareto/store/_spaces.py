"""Search spaces: the built-ins, those registered in this process and the ones stored in the store (declarative,
or of another stored kind: a document with ``kind``, rebuilt by ``supernet.space_from_document``).

Contract. Stored spaces belong to the store (they are not registered process-wide, so two stores may hold
different spaces of one name). :meth:`SpaceRepository.register` rejects the name of any installed space (a
built-in or a plugin) and a name stored with another definition; :meth:`SpaceRepository.get` of an unknown name
raises InvalidValueError listing the known ones. :meth:`SpaceRepository.remove` deletes a stored space with
its SubNets, their measurements, its predictors, export and checkpoint records (never a built-in or installed
space; whether studies still use it is for the caller to check). :meth:`SpaceRepository.load_all` is for
listings: a broken installed plugin (:class:`PluginError`) is set aside with its one-line error instead of failing
the whole listing.
Every method takes an optional ``conn`` (the caller's transaction), else opens its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from hwpareto.errors import InvalidValueError
from hwpareto.plugins import PluginError
from hwpareto.store._db import Database
from hwpareto.store._models import Checkpoint, Export, Measurement, Predictor, Space, SubNet
from hwpareto.store._sql import canonical
from supernet import (
    BUILTIN_SPACES,
    SearchSpace,
    get_space,
    installed_spaces,
    list_spaces,
    space_document,
    space_from_document,
)

__all__ = ["SpaceData", "SpaceRepository"]


@dataclass(frozen=True, slots=True)
class SpaceData:
    """What the store holds about a space's SubNets besides the space itself."""

    measurements: int
    subnets: int
    predictors: int
    exports: int
    checkpoints: int

    def __str__(self) -> str:
        counts = (
            (self.measurements, "measurement"),
            (self.predictors, "predictor"),
            (self.exports, "export record"),
            (self.checkpoints, "checkpoint record"),
        )
        text = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts]
        text[0] += f" of {self.subnets} SubNet{'' if self.subnets == 1 else 's'}"
        return ", ".join(text)


class SpaceRepository:
    """Resolve space names and store declarative spaces (``store.spaces``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, space: SearchSpace, *, conn: Connection | None = None) -> None:
        """Store a declarative space or one of another stored kind (``supernet.space_kinds()``, e.g. a Hugging Face
        model folder's space); storing the same definition again is a no-op, and a stored definition that lacks only
        fields recorded since (an older hwpareto's) is completed."""
        doc = space_document(space)
        installed = installed_spaces()
        if space.name in installed:  # a stored space never shadows a built-in or an installed plugin
            raise InvalidValueError(
                "space.name", "a name other than the installed spaces " + ", ".join(installed), space.name
            )
        document = canonical("space", doc)
        with self._db.write(conn) as c:
            stored = c.execute(select(Space.definition_json).where(Space.name == space.name)).scalar_one_or_none()
            if stored is None:
                c.execute(insert(Space).values(name=space.name, definition_json=document))
            elif stored != document:
                old, new = json.loads(stored), json.loads(document)
                if not (isinstance(old, dict) and old.keys() < new.keys() and all(old[k] == new[k] for k in old)):
                    raise InvalidValueError(
                        "space.name", "a name not already stored with another definition", space.name
                    )
                # stored by an older hwpareto: the same definition without fields recorded since (file hashes)
                c.execute(update(Space).where(Space.name == space.name).values(definition_json=document))

    def get(self, name: str, *, conn: Connection | None = None) -> SearchSpace:
        """The space called ``name``: a built-in, else one stored here, else one registered in this process."""
        if name in BUILTIN_SPACES:
            return get_space(name)
        with self._db.read(conn) as c:
            stored = c.execute(select(Space.definition_json).where(Space.name == name)).scalar_one_or_none()
            if stored is not None:
                return space_from_document(json.loads(stored), source=f"stored space {name!r}")
            try:
                return get_space(name)
            except InvalidValueError:
                raise InvalidValueError("space", "one of " + ", ".join(self.names(conn=c)), name) from None

    def held(self, name: str, *, conn: Connection | None = None) -> SpaceData:
        """The measurements (and their SubNets), predictors, export and checkpoint records of stored space
        ``name``."""
        with self._db.read(conn) as c:
            self._stored(name, c)
            subnets = select(SubNet.id).where(SubNet.space == name)
            counts = [
                c.execute(select(func.count()).select_from(table).where(where)).scalar_one()
                for table, where in (
                    (Measurement, Measurement.subnet_id.in_(subnets)),
                    (SubNet, SubNet.id.in_(select(Measurement.subnet_id).where(Measurement.subnet_id.in_(subnets)))),
                    (Predictor, Predictor.space == name),
                    (Export, Export.space == name),
                    (Checkpoint, Checkpoint.space == name),
                )
            ]
        return SpaceData(*(int(n) for n in counts))

    def remove(self, name: str, *, conn: Connection | None = None) -> SpaceData:
        """Delete stored space ``name``, its SubNets with their measurements, its predictors, export and checkpoint
        records (a space registered again under the name starts afresh); what was deleted besides the space. A
        built-in or installed space, or a name not stored here, raises InvalidValueError."""
        with self._db.write(conn) as c:
            held = self.held(name, conn=c)
            c.execute(
                delete(Measurement).where(Measurement.subnet_id.in_(select(SubNet.id).where(SubNet.space == name)))
            )
            for table in (SubNet, Predictor, Export, Checkpoint):
                c.execute(delete(table).where(table.space == name))
            c.execute(delete(Space).where(Space.name == name))
        return held

    def _stored(self, name: str, conn: Connection) -> None:
        """InvalidValueError unless ``name`` is a space stored here (not a built-in or installed one)."""
        if name in installed_spaces():
            raise InvalidValueError(
                "space", "a space registered in this store (built-in and installed spaces stay)", name
            )
        if conn.execute(select(Space.id).where(Space.name == name)).scalar_one_or_none() is None:
            stored = conn.execute(select(Space.name).order_by(Space.name)).scalars().all()
            allowed = "one of " + ", ".join(stored) if stored else "a space registered in this store (none is)"
            raise InvalidValueError("space", allowed, name)

    def load_all(self, *, conn: Connection | None = None) -> tuple[list[SearchSpace], dict[str, str]]:
        """Every space of :meth:`names` that loads, in that order, and the one-line error of each broken plugin
        by name (a listing shows the others; asking for a broken one by name with :meth:`get` still fails)."""
        spaces: list[SearchSpace] = []
        broken: dict[str, str] = {}
        with self._db.read(conn) as c:
            for name in self.names(conn=c):
                try:
                    spaces.append(self.get(name, conn=c))
                except PluginError as exc:
                    broken[name] = str(exc)
        return spaces, broken

    def names(self, *, conn: Connection | None = None) -> list[str]:
        """Built-in, registered and stored space names."""
        with self._db.read(conn) as c:
            stored = c.execute(select(Space.name).order_by(Space.name)).scalars().all()
        return list(dict.fromkeys([*list_spaces(), *stored]))
