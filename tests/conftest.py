"""Shared fixtures: third-party data in ../shared/data (skipped cleanly when absent) and stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import URL, make_url

if TYPE_CHECKING:
    from hwpareto.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of third-party measurement tables; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data folder {SHARED_DATA} is absent (only present beside a developer checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def private_default_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default store (``$XDG_DATA_HOME/hwpareto/hwpareto.db``) of every command a test runs without ``--store``
    lies in the session's temporary folder, never in the user's own data folder."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread for the test, restored after (small forwards gain nothing from threads, which
    stall on a loaded machine; later tests in the same worker keep their own setting)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PG_TEST_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite store file (not created yet) in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[psycopg.Connection[Any], URL]]:
    """An autocommit psycopg connection to ``$HWPARETO_TEST_PG`` (default :data:`PG_TEST_URL`) and that URL.

    Skips when the server is unreachable, except under ``CI=true`` where that fails (CI always tests PostgreSQL).
    """
    url = make_url(os.environ.get("HWPARETO_TEST_PG", PG_TEST_URL))
    given = {"host": url.host, "port": url.port, "user": url.username, "password": url.password}
    params: dict[str, Any] = {k: v for k, v in given.items() if v}
    try:
        conninfo = psycopg.conninfo.make_conninfo(dbname=url.database or "postgres", connect_timeout=5, **params)
        admin = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        shown = url.render_as_string(hide_password=True)
        reason = f"PostgreSQL {shown} unreachable: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with admin:
        yield admin, url.set(drivername="postgresql+psycopg")


@pytest.fixture
def pg_url(pg_server: tuple[psycopg.Connection[Any], URL]) -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test."""
    admin, url = pg_server
    name = f"hwp_test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A new store URL, once per backend."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An initialised store on each backend, closed after the test."""
    from hwpareto.store import Store

    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard tests' full store (devices, LUTs, predictors, one finished study), built once per file."""
    from tests.dashboard_store import build_store

    path = tmp_path_factory.mktemp("dashboard") / "store.db"
    build_store(path)
    return path


@pytest.fixture
def dash_url(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private copy of the full store, set as the dashboard's store; jobs go to the test's folder."""
    path = tmp_path / "store.db"
    shutil.copy(built, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("HWPARETO_STORE", url)
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    yield url


@pytest.fixture
def empty_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty store, set as the dashboard's store; jobs go to the test's folder."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("HWPARETO_STORE", url)
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    return url
