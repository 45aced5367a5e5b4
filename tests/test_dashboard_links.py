"""Permalinks (issue 28): study, device, cost axes and the selected trial live in the URL (``?study=…&trial=…``), so a
reload, a bookmark or a shared link shows the same SubNet; cost axes survive a study switch; after deleting a study
the selector moves on to another."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import _data
from hwpareto.store import Store
from pareto import study_results
from pareto.search._search import SearchSpec
from tests.dashboard_store import STUDY, add_fake

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"
ACC, EDGE, SERVER = "test_acc_pct@cifar10", "latency_ms@edge", "latency_ms@server"


def _run(name: str, selected: str | None = None, **params: str | list[str]) -> AppTest:
    """Page ``name`` opened with ``params`` in its URL (or on study ``selected`` in another page)."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)
    at.query_params.update(params)
    if selected is not None:
        at.session_state["selection"] = {"study": selected}
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _search(url: str, name: str, objectives: tuple[str, ...], n_trials: int = 40) -> None:
    from pareto.search._worker import run_now

    with Store.open(url) as db:
        run_now(db, SearchSpec(name, "nb201", objectives, n_trials=n_trials, population=20))


def test_fronts_link_shows_the_linked_trial_and_costs_and_follows_the_choice(dash_url: str) -> None:
    with Store.open(dash_url) as db:
        front = study_results(db, STUDY).front("server")
    other = next(int(n) for n in front.rows["number"] if int(n) != front.knee_number)
    at = _run("fronts", study=STUDY, trial=str(other), cost=[SERVER])
    assert at.selectbox(key="fronts_study").value == STUDY
    assert at.selectbox(key="fronts_trial").value == other  # not the knee
    assert at.multiselect(key="fronts_costs").value == [SERVER]
    assert at.query_params == {"study": STUDY, "trial": str(other), "cost": SERVER}
    at.multiselect(key="fronts_costs").set_value([EDGE, SERVER]).run()
    at.selectbox(key="fronts_trial").set_value(front.knee_number).run()
    assert at.query_params == {"study": STUDY, "trial": str(front.knee_number), "cost": [EDGE, SERVER]}
    # a link naming what the store lacks: ignored, the page opens on its defaults
    at = _run("fronts", study="no-such-study", trial="99999", cost=["latency_ms@nowhere"])
    assert at.selectbox(key="fronts_study").value == STUDY and not at.error


@pytest.mark.slow
def test_cost_axes_survive_a_study_switch(dash_url: str) -> None:
    """A switch kept no cost axis (the multiselect emptied), so a multi-device study drew its first device only."""
    with Store.open(dash_url) as db:
        add_fake(db, "third")
    _search(dash_url, "third-only", (ACC, "latency_ms@third"))
    _search(dash_url, "both", (ACC, EDGE, SERVER))
    at = _run("fronts", selected="third-only")
    assert at.multiselect(key="fronts_costs").value == ["latency_ms@third"]
    at.selectbox(key="fronts_study").set_value(STUDY).run()
    assert not at.exception
    assert at.multiselect(key="fronts_costs").value == [EDGE, SERVER]  # none kept: every device of the study
    at.multiselect(key="fronts_costs").set_value([SERVER]).run()
    at.selectbox(key="fronts_study").set_value("both").run()
    assert at.multiselect(key="fronts_costs").value == [SERVER]  # kept
    assert at.query_params["cost"] == SERVER and at.query_params["study"] == "both"


def test_export_and_trials_links(dash_url: str) -> None:
    at = _run("export", study=STUDY, trial="7", cost=SERVER)
    assert at.number_input(key="export_trial").value == 7
    assert at.selectbox(key="export_cost").value == SERVER
    assert any(h.value.startswith("Trial 7 (") for h in at.subheader)
    assert at.query_params == {"study": STUDY, "trial": "7", "cost": SERVER}
    at = _run("trials", study=STUDY, device="server")
    assert at.selectbox(key="trials_device").value == "server"
    assert at.query_params == {"study": STUDY, "device": "server"}


@pytest.mark.slow
def test_after_deleting_a_study_the_selector_moves_on(dash_url: str) -> None:
    _search(dash_url, "newer", (ACC, EDGE), n_trials=20)
    at = _run("trials", selected=STUDY)
    assert at.selectbox(key="trials_study").value == STUDY
    at.text_input(key=f"trials_delete_name:{STUDY}").input(STUDY).run()
    at.button(key="trials_delete").click().run()
    assert not at.exception, [e.message for e in at.exception]
    with Store.open(dash_url) as db:
        assert _data.hwpareto_studies(db) == ["newer"]
    assert at.selectbox(key="trials_study").value == "newer"
    assert at.query_params["study"] == "newer"
    assert any("of 20 trials match" in c.value for c in at.caption)
