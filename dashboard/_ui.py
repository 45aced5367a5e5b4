"""Streamlit glue shared by the pages: the store, cached study loads, errors and next-step hints."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar, cast

import streamlit as st

from dashboard import _data
from hwpareto.errors import HwparetoError
from hwpareto.store import Store, default_store_url, shown_url

__all__ = [
    "cached",
    "error",
    "next_step",
    "presets",
    "refresh",
    "results",
    "stop",
    "store",
    "store_marker",
    "store_url",
    "url_is_new",
    "url_values",
    "write_url",
]

T = TypeVar("T")


def store_url() -> str:
    """The store the dashboard shows: ``$HWPARETO_STORE`` (set by ``hwpareto dashboard --store``), else the
    default SQLite file. It may hold a password: pages show :func:`hwpareto.store.shown_url` of it."""
    return os.environ.get("HWPARETO_STORE") or default_store_url()


@st.cache_resource(show_spinner=False, max_entries=4)
def _open(url: str) -> Store:
    return Store.open(url)


def stop() -> NoReturn:
    """End this page's run here."""
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises; this keeps type checkers informed


def store() -> Store:
    """The opened store; on failure the page says why and what to do, and stops."""
    url = store_url()
    with st.sidebar:
        st.caption(f"Store: `{shown_url(url)}`")  # no password on the page
    try:
        return _open(url)
    except HwparetoError as exc:
        error(exc)
        next_step(
            "Point the dashboard at a valid store",
            f"hwpareto dashboard --store PATH_OR_URL   (an older store: hwpareto db upgrade --store {shown_url(url)})",
        )
        stop()


def error(exc: BaseException | str) -> None:
    """A user error, worded as the CLI prints it (``error: field: expected …, got …``)."""
    st.error(f"error: {exc}", icon=":material/error:")


def next_step(what: str, command: str | None = None) -> None:
    """An empty state: what is missing and what to do next (a CLI command when there is one)."""
    st.info(what, icon=":material/info:")
    if command:
        st.code(command, language="bash")


@st.cache_resource(show_spinner=False, max_entries=16)  # switching back among a store's studies: no reload
def _load(url: str, study: str, marker: tuple[int, int]) -> tuple[Any, _data.FrontView | None]:
    from pareto import study_results

    results = study_results(_open(url), study)
    view = _data.front_view(results) if len(results.trials) and len(results.objectives) > 1 else None
    return results, view


def results(db: Store, study: str) -> tuple[Any, _data.FrontView | None]:
    """A study's results and fronts, cached until its trial count changes."""
    return _load(store_url(), study, _data.study_marker(db, study))


# ---------------------------------------------------------------------------------------------------- derived tables
def store_marker(db: Store) -> tuple[Any, ...]:
    """Changes whenever a device, its LUT or measurement count, a space or a predictor changes: the cache key of
    what the Devices and Search pages derive from them (:func:`cached`; entries also expire after a minute, for
    values replaced in place by another process)."""
    return (
        tuple((d.name, d.lut_entries, d.measurements) for d in db.devices.list()),
        tuple(db.spaces.names()),
        tuple((p.name, p.created_at) for p in db.predictors.list()),
    )


@st.cache_resource(show_spinner=False, max_entries=64, ttl=60)  # shared objects: callers never change them
def _derived(url: str, function: str, args: tuple[Any, ...], marker: tuple[Any, ...]) -> Any:
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)(_open(url), *args)


def cached(db: Store, function: Callable[..., T], *args: Any) -> T:
    """``function(db, *args)`` (a ``_data`` or ``_state`` function of the store), cached until :func:`store_marker`
    changes: a page's own work, e.g. per-device LUT coverage or typical costs, is not redone on every rerun and
    visit. The result is shared: read it, never change it."""
    return cast(T, _derived(store_url(), f"{function.__module__}:{function.__qualname__}", args, store_marker(db)))


def refresh() -> None:
    """Forget every derived table (after a profiling job ends or an import, which change them)."""
    _derived.clear()
    st.cache_data.clear()


@st.cache_resource(show_spinner=False)
def presets() -> dict[str, Any]:
    """The shipped device presets (:func:`profilers.presets`: parsed once per server, not on every visit)."""
    from profilers import presets as shipped

    return shipped()


# ---------------------------------------------------------------------------------------------------- permalinks
def _url() -> dict[str, list[str]]:
    return {k: st.query_params.get_all(k) for k in st.query_params}


def url_is_new(page: str) -> bool:
    """Whether the URL's query parameters are not the ones ``page`` left last: a fresh load, a bookmark or a shared
    link, back/forward, or a switch from another page (which carries the parameters along). The page then takes
    its choices from them."""
    return st.session_state.get(f"_url_written:{page}") != _url()


def url_values(name: str, allowed: Sequence[T]) -> list[T]:
    """The values of query parameter ``name`` that name one of ``allowed`` (compared as text), in URL order; anything
    else in the URL is ignored."""
    by_text = {str(a): a for a in allowed}
    return [by_text[v] for v in st.query_params.get_all(name) if v in by_text]


def write_url(page: str, params: Mapping[str, str | int | Sequence[str] | None]) -> None:
    """Put ``page``'s choices in the URL (``?study=…&trial=…``; a list repeats its parameter; None and [] remove
    it; other parameters stay, but a trial number goes with its study), so a reload, a bookmark or a shared link
    shows the same. Call it once per run: each change is a browser history entry (Streamlit pushes one per write),
    so back undoes one choice; a page opened with the parameters it would write (a switch from another page carries
    them) writes nothing, so back returns to that page."""
    new = _url()
    if "study" in params and "trial" not in params and new.get("study") != [str(params["study"])]:
        new.pop("trial", None)  # a trial number belongs to its study
    for key, value in params.items():
        if value is None or value == [] or value == ():
            new.pop(key, None)
        else:
            new[key] = [str(x) for x in value] if isinstance(value, list | tuple) else [str(value)]
    if _url() != new:
        st.query_params.from_dict(new)
    st.session_state[f"_url_written:{page}"] = new
