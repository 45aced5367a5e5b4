"""The database under the store: engine, connections and transactions, schema revision and migrations.

A store is a SQLite file by default (see :func:`default_store_url`) or any SQLAlchemy URL (PostgreSQL through
psycopg 3). Its schema is versioned by Alembic (``hwpareto/store/migrations``, table ``hwp_alembic_version``); a new
database is initialised on first use, an older one must be upgraded explicitly (``hwpareto db upgrade``).

Contract. :meth:`Database.transaction` is the one way to write: it holds the store-wide write lock (SQLite
``BEGIN IMMEDIATE``, a PostgreSQL advisory lock) unless ``lock=False``, so writers that read before they write
never conflict; it commits when the block succeeds and rolls back when it raises. Repositories take an optional
``conn``: the caller's connection (its transaction, which the caller owns and commits), else they open their own.
Opening a bad URL, an unwritable SQLite path or an unreachable server raises a one-line :class:`HwparetoError`;
a schema this hwpareto does not expect raises :class:`SchemaError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.store._models import TABLE_PREFIX, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from optuna.storages import RDBStorage

__all__ = ["Database", "SchemaError", "default_store_url", "shown_url"]

MIGRATIONS = Path(__file__).with_name("migrations")
_EXPECTED_URL = "expected a SQLite path or an SQLAlchemy URL such as postgresql+psycopg://user@host/db"
_WRITE_OPTION = "hwpareto_write"
_PG_LOCK_KEY = 0x68777061  # "hwpa": the advisory lock every hwpareto writer takes on PostgreSQL


class SchemaError(HwparetoError):
    """The store's schema revision is not the one this hwpareto needs (older, newer or missing)."""


def default_store_url() -> str:
    """The store used when none is given.

    ``$HWPARETO_STORE`` when set, else the SQLite file ``${XDG_DATA_HOME:-~/.local/share}/hwpareto/hwpareto.db``
    (a relative ``XDG_DATA_HOME`` is ignored, as the XDG specification requires).
    """
    configured = os.environ.get("HWPARETO_STORE")
    if configured:
        return configured
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return URL.create("sqlite", database=str(base / "hwpareto" / "hwpareto.db")).render_as_string()


class Database:
    """hwpareto's database. Create it with :meth:`open`; ``url`` is the URL with the password hidden."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self.url = url.render_as_string(hide_password=True)
        self._optuna: RDBStorage | None = None

    # ------------------------------------------------------------------ opening and schema
    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> Self:
        """Open the store at ``url`` (default :func:`default_store_url`; a path without ``://`` is a SQLite file).

        A database without hwpareto tables is initialised (hwpareto's and Optuna's tables). An older schema raises
        :class:`SchemaError` unless ``upgrade`` is true; a bad URL, unwritable SQLite path or unreachable server
        raises :class:`HwparetoError`.
        """
        db = cls(*_engine_for(url))
        try:
            db._prepare(upgrade)
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def upgrade(cls, url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
        """Run ``alembic upgrade`` on the store at ``url`` to ``revision``; return the revisions before and after."""
        known = _known_revisions()
        if revision != "head" and revision not in known:
            raise InvalidValueError("revision", "head or one of " + ", ".join(known), revision)
        db = cls(*_engine_for(url))
        try:
            with _open_errors(db.url):
                before, after = db._migrate(revision)
                if after == _head():
                    db.optuna_storage()
                return before, after
        finally:
            db.close()

    def revision(self) -> str | None:
        """The store's schema revision (None for a database hwpareto has not initialised)."""
        with self._engine.connect() as conn:
            return _schema_state(conn)[0]

    def _prepare(self, upgrade: bool) -> None:
        with _open_errors(self.url):
            with self._engine.connect() as conn:
                current, has_tables = _schema_state(conn)
            if current == SCHEMA_HEAD:  # the common case, without importing Alembic (0.5 s)
                return
            self._check_known(current, has_tables)
            if current is not None and not upgrade:
                raise SchemaError(
                    f"store {self.url} has schema revision {current} but this hwpareto needs {_head()}: "
                    f"run 'hwpareto db upgrade --store {self.url}'"
                )
            self._migrate("head")
            self.optuna_storage()

    def _migrate(self, target: str) -> tuple[str | None, str | None]:
        with self._engine.connect() as conn, _foreign_keys_off(conn), _in_transaction(conn, lock=True):
            before, has_tables = _schema_state(conn)
            self._check_known(before, has_tables)
            from alembic import command

            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, target)
            if conn.dialect.name == "sqlite" and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                raise SchemaError(f"store {self.url}: the migration to {target} left rows without their parent")
            return before, _schema_state(conn)[0]

    def _check_known(self, current: str | None, has_tables: bool) -> None:
        if current is None and has_tables:
            raise SchemaError(
                f"store {self.url} has {TABLE_PREFIX} tables but no schema revision in {VERSION_TABLE}: "
                "it was not created by hwpareto"
            )
        if current is not None and current not in _known_revisions():
            raise SchemaError(
                f"store {self.url} has schema revision {current}, unknown to this hwpareto (which needs {_head()}): "
                "it was written by a newer hwpareto; upgrade hwpareto"
            )

    def optuna_storage(self) -> RDBStorage:
        """Optuna's storage on the same database (its tables are created on first use)."""
        if self._optuna is None:
            from optuna.storages import RDBStorage

            kwargs: dict[str, Any] = {} if self._engine.dialect.name == "sqlite" else {"pool_pre_ping": True}
            self._optuna = RDBStorage(self._url.render_as_string(hide_password=False), engine_kwargs=kwargs)
        return self._optuna

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (SQLite: foreign keys on, WAL, 30 s busy timeout)."""
        return self._engine

    def close(self) -> None:
        """Release every connection (the store's and Optuna's)."""
        if self._optuna is not None:
            self._optuna.engine.dispose()
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ connections and transactions
    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session in a transaction: committed when the block succeeds, rolled back when it raises."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def transaction(self, *, lock: bool = True) -> Iterator[Connection]:
        """A transaction, committed when the block succeeds and rolled back when it raises. With ``lock`` (the
        default) it holds the store-wide write lock from its start: use it for every write that reads first."""
        with self._engine.connect() as conn, _in_transaction(conn, lock=lock):
            yield conn

    @contextmanager
    def write(self, conn: Connection | None = None, *, lock: bool = True) -> Iterator[Connection]:
        """``conn`` when the caller passes one (its transaction: the caller commits), else a new
        :meth:`transaction`."""
        if conn is not None:
            yield conn
            return
        with self.transaction(lock=lock) as own:
            yield own

    @contextmanager
    def read(self, conn: Connection | None = None) -> Iterator[Connection]:
        """``conn`` when the caller passes one, else a new connection for reads (no write lock)."""
        if conn is not None:
            yield conn
            return
        with self._engine.connect() as own:
            yield own


@contextmanager
def _in_transaction(conn: Connection, *, lock: bool) -> Iterator[None]:
    """A transaction on ``conn``, committed when the block succeeds; ``lock``: the store-wide write lock."""
    if lock:
        conn.execution_options(**{_WRITE_OPTION: True})
    with conn.begin():
        if lock and conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite's foreign keys off on ``conn`` (outside a transaction, where the pragma takes effect) while a
    migration rebuilds tables: dropping a table's old copy would otherwise delete the rows referencing it."""
    if conn.dialect.name != "sqlite":
        yield
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        dbapi.execute("PRAGMA foreign_keys=ON")


# ---------------------------------------------------------------------- URLs and engines
def _engine_for(raw: str | None) -> tuple[Engine, URL]:
    """Parse ``raw`` and build its engine (nothing is connected or created on the server yet)."""
    url = _parse_url(default_store_url() if raw is None else raw)
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, hide_parameters=True)  # errors never show stored values
            _configure_sqlite(engine)
        else:
            fail_fast = url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query
            connect_args = {"connect_timeout": 5} if fail_fast else {}
            engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)
    except ImportError as exc:
        raise _url_error(
            url.render_as_string(hide_password=True), f"driver module {exc.name!r} is not installed"
        ) from None
    except ArgumentError as exc:
        raise _url_error(url.render_as_string(hide_password=True), str(exc).splitlines()[0]) from None
    return engine, url


def _parse_url(raw: str) -> URL:
    if not raw.strip():
        raise _url_error(raw, "empty")
    if "://" not in raw and (":" not in raw or raw.startswith(("/", "./", "../", "~"))):
        return _sqlite_url(Path(raw))
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise _url_error(_mask_password(raw), "not a valid URL") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise _url_error(_mask_password(raw), f"unknown database dialect or driver {url.drivername!r}") from None
    if url.get_backend_name() != "sqlite":
        return url
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        raise _url_error(raw, "an in-memory database cannot hold a store")
    return _sqlite_url(Path(url.database), url)


def _sqlite_url(path: Path, url: URL | None = None) -> URL:
    """Check that SQLite can create or write ``path`` (raising before anything is changed), then make its folder."""
    path = path.expanduser().absolute()

    def fail(reason: str) -> HwparetoError:
        return HwparetoError(f"store path '{path}': {reason}")

    if path.is_dir():
        raise fail("is a directory")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise fail("the file is read-only")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise fail(f"'{folder}' is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(f"directory '{folder}' is not writable")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create directory '{path.parent}' ({exc.strerror})") from None
    return (url or URL.create("sqlite")).set(database=str(path))


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys, WAL, 30 s busy timeout; transactions are begun by SQLAlchemy (``IMMEDIATE`` for writers)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("foreign_keys=ON", "busy_timeout=30000", "journal_mode=WAL", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")


def shown_url(store_url: str) -> str:
    """``store_url`` as pages, messages and files may show it: its password as ``***`` (a path or an unparsable URL
    as is)."""
    try:
        return make_url(store_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return store_url


def _url_error(shown: str, reason: str) -> HwparetoError:
    return HwparetoError(f"store URL '{shown}': {reason}; {_EXPECTED_URL}")


def _mask_password(raw: str) -> str:
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", raw)


@contextmanager
def _open_errors(shown: str) -> Iterator[None]:
    """Turn driver errors (server unreachable, database missing, not a database file) into one-line errors."""
    try:
        yield
    except DBAPIError as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        raise HwparetoError(f"cannot open store {shown}: {reason[0] if reason else type(exc.orig).__name__}") from None


# ---------------------------------------------------------------------- Alembic
SCHEMA_HEAD = "0004_device_kinds"
"""The newest migration in ``hwpareto/store/migrations/versions`` (a test checks it is Alembic's head)."""


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _head() -> str | None:
    return _scripts().get_current_head()


@cache
def _known_revisions() -> list[str]:
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def _schema_state(conn: Connection) -> tuple[str | None, bool]:
    """The store's revision and whether any other ``hwp_`` table exists."""
    tables = inspect(conn).get_table_names()
    has_tables = any(t.startswith(TABLE_PREFIX) and t != VERSION_TABLE for t in tables)
    if VERSION_TABLE not in tables:
        return None, has_tables
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        listed = ", ".join(rows)
        raise SchemaError(f"store has {len(rows)} schema revisions in {VERSION_TABLE} ({listed}): expected one")
    return (rows[0] if rows else None), has_tables
