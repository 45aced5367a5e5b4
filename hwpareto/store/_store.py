"""The store: the database (:class:`~hwpareto.store._db.Database`) with one repository per aggregate.

``store.devices``, ``store.spaces``, ``store.measurements``, ``store.luts``, ``store.predictors``,
``store.searches``, ``store.exports`` and ``store.checkpoints`` return frozen records
(:mod:`hwpareto.store._records`) or DataFrames; Optuna's tables are reached through :mod:`hwpareto.store._optuna`
only. Several operations form one atomic unit when the caller passes the connection of one
:meth:`~hwpareto.store._db.Database.transaction`::

    with store.transaction() as conn:
        store.devices.add("board", "imported", {}, conn=conn)
        store.luts.add("board", rows, conn=conn)
"""

from __future__ import annotations

from sqlalchemy import URL, Engine

from hwpareto.store._checkpoints import CheckpointRepository
from hwpareto.store._db import Database
from hwpareto.store._devices import DeviceRepository
from hwpareto.store._measurements import ExportRepository, LutRepository, MeasurementRepository
from hwpareto.store._predictors import PredictorRepository
from hwpareto.store._searches import SearchRepository
from hwpareto.store._spaces import SpaceRepository

__all__ = ["Store"]


class Store(Database):
    """hwpareto's database and its repositories. Create it with :meth:`open` (a context manager: closed on exit)."""

    def __init__(self, engine: Engine, url: URL) -> None:
        super().__init__(engine, url)
        self.devices = DeviceRepository(self)
        self.spaces = SpaceRepository(self)
        self.measurements = MeasurementRepository(self)
        self.luts = LutRepository(self)
        self.predictors = PredictorRepository(self)
        self.searches = SearchRepository(self)
        self.exports = ExportRepository(self)
        self.checkpoints = CheckpointRepository(self)
