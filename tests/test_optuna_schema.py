"""Optuna's RDB schema still has every table and column hwpareto reads and writes directly (``_optuna.OPTUNA_TABLES``).

hwpareto bypasses Optuna's storage for bulk reads and writes; when an Optuna release renames or retypes one of
those columns these tests fail with the table and column named, before any search writes a broken study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb import models
from sqlalchemy import Enum, Table, create_engine, inspect
from sqlalchemy.types import TypeEngine

from hwpareto.store._optuna import OPTUNA_TABLES

ORM_TABLES = {m.__table__.name: m.__table__ for m in vars(models).values() if hasattr(m, "__table__")}


def _kind(column_type: TypeEngine[object]) -> type:
    """The Python type a column holds: enough to tell a retyped column (String(512) and VARCHAR(512) agree)."""
    return column_type.python_type


@pytest.mark.parametrize("name", sorted(OPTUNA_TABLES))
def test_declared_columns_match_optunas_models(name: str) -> None:
    declared: Table = OPTUNA_TABLES[name]
    assert name in ORM_TABLES, f"Optuna {optuna.__version__} has no table {name!r}: update hwpareto.store._optuna"
    theirs = ORM_TABLES[name].columns
    for column in declared.columns:
        where = f"Optuna {optuna.__version__} table {name!r} column {column.name!r}"
        assert column.name in theirs, f"{where}: missing; update hwpareto.store._optuna"
        other = theirs[column.name].type
        if isinstance(column.type, Enum):
            assert isinstance(other, Enum), f"{where}: expected an enum, got {other!r}"
            assert (column.type.name, list(column.type.enums)) == (other.name, list(other.enums)), (
                f"{where}: expected enum {column.type.name} {column.type.enums}, got {other.name} {other.enums}"
            )
        else:
            assert _kind(column.type) == _kind(other), f"{where}: expected {column.type!r}, got {other!r}"


def test_declared_columns_exist_in_a_database_optuna_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=url, study_name="probe")
    engine = create_engine(url)
    try:
        found = inspect(engine)
        tables = set(found.get_table_names())
        for name, declared in OPTUNA_TABLES.items():
            assert name in tables, f"a database Optuna {optuna.__version__} created has no table {name!r}"
            columns = {c["name"]: c for c in found.get_columns(name)}
            for column in declared.columns:
                where = f"Optuna {optuna.__version__} database table {name!r} column {column.name!r}"
                assert column.name in columns, f"{where}: missing; update hwpareto.store._optuna"
                got = columns[column.name]["type"]
                assert _kind(column.type) == _kind(got), f"{where}: expected {column.type!r}, got {got!r}"
    finally:
        engine.dispose()


def test_study_system_attributes_are_written_as_optuna_reads_them(tmp_path: Path) -> None:
    """The search writes each generation's parents itself: Optuna reads them back, a second write replaces the
    first, and other studies' attributes stay."""
    from hwpareto.store import Store
    from hwpareto.store._optuna import set_study_system_attr, study_id

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with Store.open(str(tmp_path / "s.db")) as store:
        storage = store.optuna_storage()
        mine, other = (optuna.create_study(study_name=n, storage=storage) for n in ("mine", "other"))
        other._storage.set_study_system_attr(other._study_id, "NSGAIISampler:parent:1", [7])
        set_study_system_attr(store, study_id(mine), "NSGAIISampler:parent:1", [1, 2])
        set_study_system_attr(store, study_id(mine), "NSGAIISampler:parent:1", [3, 4, 5])
        set_study_system_attr(store, study_id(mine), "NSGAIISampler:parent:2", [6])
        assert storage.get_study_system_attrs(study_id(mine)) == {
            "NSGAIISampler:parent:1": [3, 4, 5],
            "NSGAIISampler:parent:2": [6],
        }
        assert storage.get_study_system_attrs(study_id(other)) == {"NSGAIISampler:parent:1": [7]}
