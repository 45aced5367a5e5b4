"""The SQL store on SQLite and PostgreSQL: schema and migrations, URLs, devices, measurements, spaces, LUTs."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, make_url, select, text

import hwpareto.store._measurements
import supernet._registry
from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store import (
    SOURCES,
    DeviceRecord,
    MeasurementIn,
    PredictorBlob,
    PredictorRecord,
    SchemaError,
    SearchRecord,
    Store,
    WriteResult,
    default_store_url,
)
from hwpareto.store._models import VERSION_TABLE, Base, Device, Export, Measurement, SubNet, include_name
from supernet import DeclarativeSpace, Dimension, SubNetConfig, get_space

HEAD = "0004_device_kinds"
HWP_TABLES = {
    "hwp_alembic_version",
    "hwp_devices",
    "hwp_spaces",
    "hwp_subnets",
    "hwp_lut_entries",
    "hwp_measurements",
    "hwp_predictors",
    "hwp_searches",
    "hwp_exports",
    "hwp_checkpoints",
}
OPTUNA_TABLES = {"alembic_version", "studies", "trials", "trial_params", "trial_values", "version_info"}
TOY = DeclarativeSpace("toy", [Dimension("width", choices=(8, 16, 32)), Dimension("depth", "int", low=1, high=4)])
CONFIGS = [TOY.validate({"width": w, "depth": d}) for w in (8, 16, 32) for d in (1, 2, 3, 4)]


def rows(
    configs: list[SubNetConfig],
    metrics: tuple[str, ...] = ("latency_ms", "energy_mj"),
    subject: str = "dev0",
    **fields: object,
) -> list[MeasurementIn]:
    """One row per config and metric (values 1, 2, 11, 12, ...: latency and energy are > 0); ``fields`` override
    MeasurementIn's."""
    kind = str(fields.pop("subject_kind", "device"))
    return [
        MeasurementIn(c, kind, subject, m, float(i * 10 + j + 1), origin="test.csv", **fields)  # type: ignore[arg-type]
        for i, c in enumerate(configs)
        for j, m in enumerate(metrics)
    ]


def counts(store: Store) -> tuple[int, int, int]:
    with store.session() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) for t in (Device, SubNet, Measurement)
        )


def one_line_error(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def schema_diffs(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": include_name, "version_table": VERSION_TABLE, "compare_type": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- schema
def test_init_creates_hwpareto_and_optuna_tables_in_one_database(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert tables >= HWP_TABLES | OPTUNA_TABLES
    assert store.revision() == HEAD


def test_opening_twice_is_a_no_op(store: Store, store_url: str) -> None:
    store.devices.add("dev0", "cpu", {"cores": 2})
    tables = set(inspect(store.engine).get_table_names())
    with Store.open(store_url) as again:
        assert again.revision() == HEAD
        assert set(inspect(again.engine).get_table_names()) == tables
        assert [d.name for d in again.devices.list()] == ["dev0"]
        with again.engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1


def test_schema_head_constant_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import hwpareto.store._db as db

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == db.SCHEMA_HEAD


def test_opening_an_up_to_date_store_does_not_import_alembic(store_url: str) -> None:
    Store.open(store_url).close()  # created (and migrated) here
    code = (
        "import sys; from hwpareto.store import Store; s = Store.open(sys.argv[1]); s.devices.list(); s.close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run([sys.executable, "-c", code, store_url], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_orm_matches_migrations(store: Store, store_url: str) -> None:
    assert schema_diffs(store_url) == []


def test_optuna_studies_share_the_database(store: Store, store_url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s1", storage=store.optuna_storage())
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    by_url = optuna.storages.RDBStorage(store_url)  # what load_study(storage=<url>) builds, closed afterwards
    try:
        assert len(optuna.load_study(study_name="s1", storage=by_url).trials) == 3
    finally:
        by_url.engine.dispose()
    store.devices.add("dev0", "cpu", {})
    assert store.devices.get("dev0").kind == "cpu"
    assert set(inspect(store.engine).get_table_names()) >= HWP_TABLES | OPTUNA_TABLES


def test_older_schema_needs_explicit_upgrade(store_url: str) -> None:
    assert Store.upgrade(store_url, "0001_registry") == (None, "0001_registry")
    assert any(diff[0] == "add_table" for diff in schema_diffs(store_url))  # type: ignore[index]
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO hwp_devices (name, kind, spec_json, provenance_json) "
                "VALUES ('old', 'npu', '{\"tops\": 4}', '{}')"
            )
        )
    engine.dispose()
    shown = make_url(store_url).render_as_string(hide_password=True)
    with pytest.raises(SchemaError) as error:
        Store.open(store_url)
    message = one_line_error(error)
    assert "revision 0001_registry" in message and HEAD in message
    assert f"hwpareto db upgrade --store {shown}" in message
    assert Store.upgrade(store_url) == ("0001_registry", HEAD)
    with Store.open(store_url) as store:
        assert store.revision() == HEAD
        assert store.devices.get("old").spec == {"tops": 4}
    assert schema_diffs(store_url) == []


def test_upgrade_from_0003_keeps_every_row_and_takes_any_kind(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.devices.add("dev0", "npu", {"tops": 4}, {"tool": "t"})
        store.measurements.add(rows(CONFIGS[:3]))
        lut = {"layer_key": "conv2d:cin=3", "op": "conv2d", "spec_json": "{}", "latency_ms_mean": 1.5}
        store.luts.add("dev0", [lut | {"latency_ms_std": 0.0, "n": 1, "source": "simulated"}])
        store.predictors.save("p", kind="latency", space="toy", metric="latency_ms", blob=b"{}", meta={}, device="dev0")
    from alembic import command

    import hwpareto.store._db as db

    config = db._alembic_config()
    config.set_main_option("sqlalchemy.url", store_url.replace("%", "%%"))
    command.downgrade(config, "0003_checkpoints")  # a store as 0003 left it, its rows and its CHECK on kind
    engine = create_engine(store_url)
    with pytest.raises(Exception, match=r"(?i)check"), engine.begin() as conn:
        conn.execute(
            text("INSERT INTO hwp_devices (name, kind, spec_json, provenance_json) VALUES ('f', 'fpga', '', '')")
        )
    engine.dispose()
    assert Store.upgrade(store_url) == ("0003_checkpoints", HEAD)
    assert schema_diffs(store_url) == []
    with Store.open(store_url) as store:
        device = store.devices.get("dev0")
        assert (device.kind, device.spec, device.provenance) == ("npu", {"tops": 4}, {"tool": "t"})
        assert counts(store) == (1, 3, 6)
        assert list(store.luts.get("dev0")["latency_ms_mean"]) == [1.5]
        assert [p.name for p in store.predictors.list()] == ["p"]
        assert store.devices.add("fpga0", "fpga", {}).kind == "fpga"


def test_open_with_upgrade_flag_upgrades(store_url: str) -> None:
    Store.upgrade(store_url, "0001_registry")
    with Store.open(store_url, upgrade=True) as store:
        assert store.revision() == HEAD
        assert "studies" in inspect(store.engine).get_table_names()


def test_unknown_revision_is_refused(store: Store, store_url: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    for upgrade in (False, True):
        with pytest.raises(SchemaError, match=r"0099_from_the_future.*unknown.*newer hwpareto"):
            Store.open(store_url, upgrade=upgrade)


# ---------------------------------------------------------------------- URLs and paths
@pytest.mark.parametrize("url", ["foo://x", "postgresql+nodriver://h/db", "::::", "", "mysql://u@h/db"])
def test_bad_url_is_one_line_error_naming_it(url: str) -> None:
    with pytest.raises(HwparetoError) as error:
        Store.open(url)
    message = one_line_error(error)
    assert message.startswith(f"store URL '{url}': ")
    assert message.endswith("expected a SQLite path or an SQLAlchemy URL such as postgresql+psycopg://user@host/db")


def test_unreachable_server_fails_fast_in_one_line() -> None:
    start = time.monotonic()
    with pytest.raises(HwparetoError) as error:
        Store.open("postgresql://alice:s3cret@127.0.0.1:1/test")
    assert time.monotonic() - start < 10
    message = one_line_error(error)
    assert "postgresql+psycopg://alice:***@127.0.0.1:1/test" in message
    assert "refused" in message.lower() and "s3cret" not in message


def test_missing_database_names_server_reason(pg_url: str) -> None:
    missing = make_url(pg_url).set(database=f"hwp_missing_{uuid.uuid4().hex[:8]}").render_as_string(False)
    with pytest.raises(HwparetoError) as error:
        Store.open(missing)
    assert "does not exist" in one_line_error(error)


def test_password_never_shown(pg_url: str) -> None:
    url = make_url(pg_url)
    password = url.password or "s3cr%t"  # a server that trusts local connections ignores it
    with Store.open(url.set(password=password).render_as_string(hide_password=False)) as store:
        assert str(password) not in store.url and "***" in store.url and str(password) not in repr(store)
    with pytest.raises(HwparetoError) as error:
        Store.open("postgresql+nodriver://alice:s3cret@h/db")
    assert "s3cret" not in str(error.value) and "alice:***@h" in str(error.value)
    with pytest.raises(HwparetoError) as error:
        Store.open("postgresql://alice:s3cret@h:notaport/db")
    assert "s3cret" not in str(error.value)


def test_plain_path_is_a_sqlite_file_with_parents_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "hwp.db"
    with Store.open(str(path)) as store:
        assert store.url == f"sqlite:///{path}"
        with store.engine.connect() as conn:
            pragmas = [
                conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("foreign_keys", "journal_mode", "busy_timeout", "synchronous")
            ]
        assert pragmas == [1, "wal", 30000, 1]  # synchronous NORMAL is 1
    assert path.is_file()


def test_existing_directory_is_not_a_store(tmp_path: Path) -> None:
    before = sorted(tmp_path.iterdir())
    with pytest.raises(HwparetoError, match=re.escape(f"store path '{tmp_path}': is a directory")):
        Store.open(str(tmp_path))
    assert sorted(tmp_path.iterdir()) == before


def test_unwritable_location_fails_before_creating_anything(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores directory permissions: use a location nobody can create files in
        target = Path("/proc") / f"hwpareto-{uuid.uuid4().hex[:8]}" / "store.db"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "sub" / "store.db"
    try:
        with pytest.raises(HwparetoError) as error:
            Store.open(str(target))
        assert one_line_error(error).startswith(f"store path '{target}': ")
        assert not target.parent.exists()
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)


def test_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    Store.open(str(path)).close()
    before = path.read_bytes()
    if os.geteuid() == 0:  # root writes 0o400 files: make the file immutable instead, which binds root too
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a file system without chattr +i: no file root cannot write")
    else:
        path.chmod(0o400)
    try:
        with pytest.raises(HwparetoError, match="read-only"):
            Store.open(str(path))
        assert path.read_bytes() == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not sqlite " * 200)
    with pytest.raises(HwparetoError) as error:
        Store.open(str(path))
    assert "not a database" in one_line_error(error)
    assert path.read_text().startswith("not sqlite")


def test_default_store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HWPARETO_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path}/hwpareto/hwpareto.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_store_url() == f"sqlite:///{Path.home()}/.local/share/hwpareto/hwpareto.db"
    monkeypatch.setenv("HWPARETO_STORE", "postgresql://db/x")
    assert default_store_url() == "postgresql://db/x"
    monkeypatch.setenv("HWPARETO_STORE", str(tmp_path / "env.db"))
    with Store.open() as store:
        assert store.url == f"sqlite:///{tmp_path}/env.db"


# ---------------------------------------------------------------------- devices
def test_devices(store: Store) -> None:
    with pytest.raises(InvalidValueError, match="none registered yet: run hwpareto profile"):
        store.devices.get("dev0")
    created = store.devices.add("dev0", "cuda", {"gpu": "H100"}, {"tool": "nvidia-smi"})
    assert isinstance(created, DeviceRecord)
    assert created.spec == {"gpu": "H100"} and created.provenance == {"tool": "nvidia-smi"}
    assert created.created_at.endswith("+00:00")
    assert store.devices.add("dev0", "cuda", {"gpu": "H100"}) == created  # the same again: unchanged
    with pytest.raises(HwparetoError, match=r"device 'dev0' is registered with other parameters \(kind"):
        store.devices.add("dev0", "cpu", {"other": 1})  # other parameters: refused unless replaced
    replaced = store.devices.add("dev0", "cpu", {"other": 1}, replace=True)
    assert (replaced.kind, replaced.spec, replaced.provenance) == ("cpu", {"other": 1}, {})
    store.devices.add("board", "npu", {})
    store.measurements.add(rows(CONFIGS[:2], subject="board"))
    listed = store.devices.list()
    assert [(d.name, d.kind, d.measurements, d.lut_entries) for d in listed] == [
        ("board", "npu", 4, 0),
        ("dev0", "cpu", 0, 0),
    ]
    with pytest.raises(InvalidValueError) as error:
        store.devices.get("nope")
    assert (error.value.field, error.value.got) == ("device", "nope")
    assert "board, dev0" in error.value.allowed
    assert store.devices.add("fpga0", "fpga", {}).kind == "fpga"  # a kind some backend declares: no closed list
    for bad in ("", "two words", "k" * 129, 3):
        with pytest.raises(InvalidValueError) as error:
            store.devices.add("x", bad, {})  # type: ignore[arg-type]
        assert error.value.field == "device.kind" and "letters, digits" in error.value.allowed
    with pytest.raises(InvalidValueError, match=r"device\.spec"):
        store.devices.add("x", "cpu", {"bad": float("nan")})


# ---------------------------------------------------------------------- measurements
def test_measurement_upserts(store: Store) -> None:
    store.devices.add("dev0", "cpu", {})
    batch = rows(CONFIGS)
    assert store.measurements.add(batch) == WriteResult(24, 0, 0, ())
    assert store.measurements.add(batch) == WriteResult(0, 0, 24, ())
    changed = [
        *batch[:-2],
        MeasurementIn(CONFIGS[-1], "device", "dev0", "latency_ms", 99.5, origin="new.csv"),
        MeasurementIn(CONFIGS[-1], "device", "dev0", "energy_mj", batch[-1].value, std=0.5),
    ]
    assert store.measurements.add(changed) == WriteResult(0, 2, 22, ())
    df = store.measurements.table(metric="latency_ms")
    assert len(df) == 12
    last = df[df.config_key == CONFIGS[-1].key].iloc[0]
    assert (last.value, last.origin, last.space) == (99.5, "new.csv", "toy")
    assert counts(store) == (1, 12, 24)
    # another source or batch size is another measurement
    assert store.measurements.add(rows(CONFIGS[:1], source="measured", batch=8)).inserted == 2


def test_unknown_device_rejected_unless_auto(store: Store) -> None:
    before = counts(store)
    with pytest.raises(InvalidValueError, match="auto_devices=True") as error:
        store.measurements.add(rows(CONFIGS[:3], subject="ghost"))
    assert (error.value.field, error.value.got) == ("measurements[0].subject", "ghost")
    assert counts(store) == before
    result = store.measurements.add(rows(CONFIGS[:3], subject="ghost"), auto_devices=True)
    assert result == WriteResult(6, 0, 0, ("ghost",))
    ghost = store.devices.get("ghost")
    assert (ghost.kind, ghost.spec, ghost.measurements) == ("imported", {"source": "test.csv"}, 6)
    assert store.measurements.add(rows(CONFIGS[:3], subject="ghost"), auto_devices=True).new_devices == ()


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"metric": "Latency-ms"}, "measurements[23].metric"),
        ({"value": math.nan}, "measurements[23].value"),
        ({"value": math.inf}, "measurements[23].value"),
        ({"metric": "test_acc_pct", "value": 100.5}, "measurements[23].value"),
        ({"metric": "latency_ms", "subject_kind": "dataset", "value": -5.0}, "measurements[23].value"),
        ({"metric": "energy_mj", "value": 1e300}, "measurements[23].value"),
        ({"subject": "x'; DROP TABLE devices; --"}, "measurements[23].subject"),
        ({"subject": "cifar\n10"}, "measurements[23].subject"),
        ({"std": -1.0}, "measurements[23].std"),
        ({"n": 0}, "measurements[23].n"),
        ({"batch": 0}, "measurements[23].batch"),
        ({"subject_kind": "robot"}, "measurements[23].subject_kind"),
        ({"source": "guessed"}, "measurements[23].source"),
        ({"config": {"width": 8}}, "measurements[23].config"),
    ],
)
@pytest.mark.slow
def test_invalid_row_writes_nothing(store: Store, bad: dict[str, object], field: str) -> None:
    batch = rows(CONFIGS[:12], metrics=("test_loss", "val_loss"), subject="cifar10", subject_kind="dataset")
    last = batch[-1]
    values = {f: getattr(last, f) for f in MeasurementIn.__slots__}  # type: ignore[attr-defined]
    batch[-1] = MeasurementIn(**{**values, **bad})  # type: ignore[arg-type]
    before = counts(store)
    with pytest.raises(InvalidValueError) as error:
        store.measurements.add(batch)
    assert error.value.field == field
    assert counts(store) == before


def test_failure_inside_the_transaction_rolls_everything_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.measurements.add(rows(CONFIGS[:2]), auto_devices=True)
    before = counts(store)

    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(hwpareto.store._measurements, "bulk_insert", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.measurements.add(rows(CONFIGS, subject="new-board"), auto_devices=True)
    assert counts(store) == before  # no device, SubNet or measurement was left behind
    assert [d.name for d in store.devices.list()] == ["dev0"]


def test_measurement_filters_and_summary(store: Store) -> None:
    store.measurements.add(rows(CONFIGS[:4]), auto_devices=True)
    store.measurements.add(rows(CONFIGS[:3], ("test_acc",), "cifar10", subject_kind="dataset", source="evaluated"))
    every = store.measurements.table()
    assert list(every.columns) == [
        "space",
        "config_key",
        "config_json",
        "subject_kind",
        "subject",
        "metric",
        "value",
        "std",
        "n",
        "batch",
        "source",
        "origin",
    ]
    assert len(every) == 11 and every["n"].isna().all()
    assert len(store.measurements.table(subject="cifar10")) == 3
    assert len(store.measurements.table(subject_kind="device", metric="energy_mj")) == 4
    assert len(store.measurements.table(space="toy", source="evaluated")) == 3
    assert store.measurements.table(space="other").empty
    assert every.config_json.iloc[0] == '{"depth":1,"width":8}'
    with pytest.raises(InvalidValueError, match="source"):
        store.measurements.table(source="guessed")
    assert [dataclasses.asdict(r) for r in store.measurements.summary()] == [
        {
            "space": "toy",
            "subject_kind": "dataset",
            "subject": "cifar10",
            "metric": "test_acc",
            "source": "evaluated",
            "count": 3,
        },
        {
            "space": "toy",
            "subject_kind": "device",
            "subject": "dev0",
            "metric": "energy_mj",
            "source": "imported",
            "count": 4,
        },
        {
            "space": "toy",
            "subject_kind": "device",
            "subject": "dev0",
            "metric": "latency_ms",
            "source": "imported",
            "count": 4,
        },
    ]
    assert set(SOURCES) >= set(every.source)


def test_concurrent_writers_both_succeed(store: Store, store_url: str) -> None:
    grid = DeclarativeSpace("grid", [Dimension("a", "int", low=0, high=49), Dimension("b", "int", low=0, high=19)])
    configs = [grid.validate({"a": a, "b": b}) for a in range(50) for b in range(20)]
    barrier = threading.Barrier(2)
    results: dict[str, list[WriteResult]] = {}
    errors: list[BaseException] = []

    def write(subject: str) -> None:
        try:
            with Store.open(store_url) as own:
                barrier.wait()
                results[subject] = [
                    own.measurements.add(rows(configs[i : i + 250], ("loss",), subject, subject_kind="dataset"))
                    for i in range(0, len(configs), 250)
                ]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("data-a", "data-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(sum(r.inserted for r in results[name]) == 1000 for name in ("data-a", "data-b"))
    assert counts(store) == (0, 1000, 2000)


# ---------------------------------------------------------------------- spaces, LUTs, exports, sessions
def test_declarative_space_round_trip(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    space = DeclarativeSpace(
        "imported.tbl",
        [Dimension("op", choices=("conv", "skip")), Dimension("lr", "float", low=0.1, high=1.0)],
        "from a CSV",
    )
    store.spaces.register(space)
    store.spaces.register(space)  # same definition again: fine
    assert "imported.tbl" in store.spaces.names()
    monkeypatch.setattr(supernet._registry._SPACES, "_code", {})  # as in a new process
    rebuilt = store.spaces.get("imported.tbl")
    assert rebuilt is not space and rebuilt.to_dict() == space.to_dict()  # type: ignore[attr-defined]
    assert rebuilt.validate({"op": "skip", "lr": 0.5}).space == "imported.tbl"
    with pytest.raises(InvalidValueError, match=r"space\.name"):
        store.spaces.register(DeclarativeSpace("imported.tbl", [Dimension("op", choices=("conv",))]))
    with pytest.raises(InvalidValueError, match="other than the installed spaces"):
        store.spaces.register(DeclarativeSpace("mbv3", [Dimension("op", choices=("conv",))]))
    with pytest.raises(InvalidValueError) as error:
        store.spaces.get("nope")
    assert "imported.tbl" in error.value.allowed and "mbv3" in error.value.allowed
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM hwp_spaces")).scalars().all() == ["imported.tbl"]


def test_lut_upserts(store: Store) -> None:
    store.devices.add("dev0", "cpu", {})
    entries = [
        {
            "layer_key": "conv2d:cin=3,cout=16",
            "op": "conv2d",
            "spec_json": {"op": "conv2d", "cin": 3, "cout": 16},
            "latency_ms_mean": 0.5,
            "latency_ms_std": 0.01,
            "n": 50,
        },
        {
            "layer_key": "gap:cin=16",
            "op": "gap",
            "spec_json": '{"op": "gap", "cin": 16}',
            "latency_ms_mean": 0.1,
            "latency_ms_std": 0.0,
            "n": 50,
            "energy_mj_mean": 0.02,
            "energy_mj_std": 0.001,
            "source": "simulated",
        },
    ]
    assert store.luts.add("dev0", entries) == WriteResult(2, 0, 0)
    assert store.luts.add("dev0", entries) == WriteResult(0, 0, 2)
    assert store.luts.add("dev0", [{**entries[0], "latency_ms_mean": 0.6}]) == WriteResult(0, 1, 0)
    assert store.luts.add("dev0", [{**entries[0], "batch": 8}]) == WriteResult(1, 0, 0)
    lut = store.luts.get("dev0")
    assert list(lut.layer_key) == ["conv2d:cin=3,cout=16", "gap:cin=16"]
    assert list(lut.latency_ms_mean) == [0.6, 0.1]
    assert lut.spec_json.iloc[1] == '{"cin":16,"op":"gap"}' and lut.source.iloc[1] == "simulated"
    assert math.isnan(lut.energy_mj_mean.iloc[0])
    assert len(store.luts.get("dev0", batch=8)) == 1
    assert store.devices.get("dev0").lut_entries == 3
    with pytest.raises(InvalidValueError, match="device"):
        store.luts.add("nope", entries)
    with pytest.raises(InvalidValueError, match=r"lut\[0\].latency_ms_mean"):
        store.luts.add("dev0", [{**entries[0], "latency_ms_mean": math.nan}])
    with pytest.raises(InvalidValueError, match=r"lut\[0\]"):
        store.luts.add("dev0", [{**entries[0], "typo": 1}])


def test_exports_and_sessions(store: Store) -> None:
    store.exports.add(CONFIGS[0], "/tmp/out/toy", {"model.onnx": {"bytes": 10}})
    with store.session() as session:
        export = session.scalars(select(Export)).one()
        assert (export.space, export.config_key, export.files_json) == (
            "toy",
            CONFIGS[0].key,
            '{"model.onnx":{"bytes":10}}',
        )
        assert export.created_at.tzinfo is not None and export.created_at.utcoffset() == timedelta(0)
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(Device(name="tmp", kind="cpu", spec_json="{}", provenance_json="{}"))
        session.flush()
        raise RuntimeError("abort")
    assert store.devices.list() == []
    with store.session() as session:
        session.add(Device(name="kept", kind="fake", spec_json="{}", provenance_json="{}"))
    assert store.devices.get("kept").kind == "fake"


def test_measured_table_is_wide_median_and_leaves_predictions_out(store: Store) -> None:
    space = get_space("nb201")
    a, b, c = (space.from_index(i) for i in (1, 2, 3))
    store.measurements.add(
        [
            MeasurementIn(a, "device", "dev-1", "latency_ms", 1.0),
            MeasurementIn(a, "device", "dev-1", "latency_ms", 3.0, batch=2),  # a second value of the same SubNet
            MeasurementIn(b, "device", "dev-1", "latency_ms", 2.0),
            MeasurementIn(a, "device", "dev-2", "latency_ms", 5.0),
            MeasurementIn(c, "device", "dev-2", "latency_ms", 7.0, source="predicted"),
            MeasurementIn(c, "device", "dev-2", "energy_mj", 9.0),
        ],
        auto_devices=True,
    )
    table = store.measurements.measured_table("nb201", "latency_ms")
    assert list(table.columns) == ["dev-1", "dev-2"] and sorted(table.index) == sorted([a.key, b.key])
    assert table.loc[a.key, "dev-1"] == 2.0 and table.loc[a.key, "dev-2"] == 5.0
    assert np.isnan(table.loc[b.key, "dev-2"])
    some = store.measurements.measured_table("nb201", "latency_ms", ["dev-2", "nobody"])
    assert list(some.columns) == ["dev-2", "nobody"] and some.loc[a.key, "dev-2"] == 5.0
    assert store.measurements.measured_table("nb201", "latency_ms", []).empty


# ---------------------------------------------------------------------- repositories and caller-owned transactions
def test_a_caller_owned_transaction_commits_or_rolls_back_every_repository_write(store: Store) -> None:
    entry = {"layer_key": "conv", "op": "conv2d", "spec_json": {}, "latency_ms_mean": 1.0, "latency_ms_std": 0.0}
    with pytest.raises(InvalidValueError, match=r"lut\[0\]"), store.transaction() as conn:
        store.devices.add("board", "imported", {}, conn=conn)
        assert store.devices.get("board", conn=conn).kind == "imported"  # visible inside the transaction
        store.luts.add("board", [entry], conn=conn)  # no "n": rejected after the device was written
    assert store.devices.list() == []  # the device went with the failed LUT
    with store.transaction() as conn:
        store.devices.add("board", "imported", {}, conn=conn)
        store.luts.add("board", [{**entry, "n": 3}], conn=conn)
        store.measurements.add(rows(CONFIGS[:1], subject="board"), conn=conn)
    board = store.devices.get("board")
    assert (board.lut_entries, board.measurements) == (1, 2)


def test_predictor_records(store: Store) -> None:
    store.devices.add("dev0", "cpu", {})
    with pytest.raises(InvalidValueError, match="none yet: hwpareto train"):
        store.predictors.load("p")
    store.predictors.save(
        "p", kind="latency", space="toy", metric="latency_ms", blob=b"{}", meta={"n": 1}, device="dev0"
    )
    listed = store.predictors.list("toy")
    assert [type(p) for p in listed] == [PredictorRecord] and listed[0].device == "dev0" and listed[0].meta == {"n": 1}
    loaded = store.predictors.load("p")
    assert isinstance(loaded, PredictorBlob) and loaded.blob == b"{}" and loaded.name == listed[0].name
    store.predictors.update_meta("p", {"n": 2})
    assert store.predictors.load("p").meta == {"n": 2} and store.predictors.list("other") == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.meta = {}  # type: ignore[misc]
    for bad, field in (({"kind": "speed"}, "predictor.kind"), ({"blob": b""}, "predictor.blob")):
        args = {"kind": "latency", "space": "toy", "metric": "latency_ms", "blob": b"{}", "meta": {}, **bad}
        with pytest.raises(InvalidValueError) as error:
            store.predictors.save("q", **args)  # type: ignore[arg-type]
        assert error.value.field == field
    with pytest.raises(InvalidValueError, match="one of dev0"):
        store.predictors.save("q", kind="latency", space="toy", metric="m", blob=b"1", meta={}, device="ghost")


def test_search_queue_records(store: Store) -> None:
    queued = store.searches.submit("s1", "toy", {"n_trials": 5}, 5)
    assert isinstance(queued, SearchRecord) and (queued.status, queued.worker, queued.study_name) == (
        "queued",
        None,
        "s1",
    )
    with pytest.raises(InvalidValueError, match="a name not used"):
        store.searches.submit("s1", "toy", {}, 5)
    claimed = store.searches.claim("w1")
    assert claimed is not None and (claimed.name, claimed.status, claimed.worker) == ("s1", "running", "w1")
    assert claimed.heartbeat_at is not None and store.searches.claim("w2") is None  # running, not stale
    assert store.searches.heartbeat("s1", "w1", 3) and not store.searches.heartbeat("s1", "w2", 3)
    with pytest.raises(InvalidValueError, match="a finished, failed or cancelled search to delete"):
        store.searches.delete("s1")
    with pytest.raises(InvalidValueError) as error:
        store.searches.finish("s1", "w1", "great")
    assert (error.value.field, error.value.got) == ("search.status", "great")
    store.searches.finish("s1", "w1", "done", trials_done=5)
    assert (store.searches.get("s1").status, store.searches.get("s1").trials_done) == ("done", 5)
    store.searches.requeue("s1", 8)
    again = store.searches.get("s1")
    assert (again.status, again.n_trials, again.params) == ("queued", 8, {"n_trials": 8})
    store.searches.finish("s1", None, "cancelled")  # type: ignore[arg-type]  # no owner: nothing changes
    assert [s.name for s in store.searches.list()] == ["s1"]
    # cancel: a queued search at once; a running one stops beating and its worker's finish changes nothing
    assert store.searches.cancel("s1").status == "cancelled"
    with pytest.raises(InvalidValueError, match="a queued or running search to cancel"):
        store.searches.cancel("s1")
    store.searches.submit("s2", "toy", {"n_trials": 5}, 5)
    assert store.searches.claim("w1", "s2") is not None
    store.searches.cancel("s2")
    assert not store.searches.heartbeat("s2", "w1", 4)
    store.searches.finish("s2", "w1", "done", trials_done=5)
    assert store.searches.get("s2").status == "cancelled" and store.searches.claim("w2") is None
    assert store.searches.delete("s2")  # a cancelled search may be deleted


def test_optuna_bulk_writes_and_readers(store: Store) -> None:
    from hwpareto.store import _optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=store.optuna_storage(), directions=["minimize", "maximize"])
    study.set_user_attr("spec", {"space": "toy"})
    dist = {"width": optuna.distributions.CategoricalDistribution((8, 16, 32))}
    written = [
        _optuna.TrialRow(
            {"width": c.values["width"]},
            dist,
            [float(i), math.inf if i == 1 else -float(i)],
            {"latency_ms <= 2": float(i) - 2},
            {"config": c.values, "config_key": c.key},
            system_attrs={"generation": i // 2},
        )
        for i, c in enumerate(CONFIGS[:3])
    ]
    ids = _optuna.bulk_add_trials(store, _optuna.study_id(study), written)
    assert _optuna.completed_marker(store, "s") == (3, max(ids))
    assert _optuna.find_study(store, "s", "spec") == (_optuna.study_id(study), '{"space": "toy"}')
    assert _optuna.find_study(store, "none") is None
    assert [s.name for s in _optuna.studies_with_user_attr(store, "spec")] == ["s"]
    assert _optuna.last_generation(store, _optuna.study_id(study), "generation") == 1
    trials, values, constraints = _optuna.load_trials(store, "s")
    assert [t["config_key"] for t in trials] == [c.key for c in CONFIGS[:3]]
    assert values.tolist() == [[0.0, 0.0], [1.0, math.inf], [2.0, -2.0]] and constraints[:, 0].tolist() == [-2, -1, 0]
    stored = optuna.load_study(study_name="s", storage=store.optuna_storage()).trials
    assert [t.values for t in stored] == values.tolist() and stored[0].params == {"width": 8}
    assert _optuna.user_attr_by_number(store, _optuna.study_id(study), "config", [2]) == {2: CONFIGS[2].values}
    with pytest.raises(InvalidValueError, match="an existing study"):
        _optuna.load_trials(store, "none")
