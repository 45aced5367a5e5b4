"""What several pages share: the spaces a page lists, hwpareto's studies and their change marker, a front's operating
points and one trial's config document."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from hwpareto.errors import InvalidValueError
from hwpareto.store import Store, completed_marker, studies_with_user_attr
from supernet import SearchSpace

if TYPE_CHECKING:
    from pareto import StudyResults


__all__ = ["config_document", "hwpareto_studies", "operating_point_frame", "space_choices", "study_marker"]


def space_choices(store: Store) -> tuple[list[SearchSpace], list[str]]:
    """The spaces a page lists (in the store's order) and, for each broken space plugin left out, a warning with
    its one-line error: one broken third-party plugin spoils no page."""
    spaces, broken = store.spaces.load_all()
    return spaces, [f"space {name!r} left out: broken plugin: {error}" for name, error in broken.items()]


def hwpareto_studies(store: Store) -> list[str]:
    """Names of the studies in the store that hwpareto ran, newest first (one query: Optuna's own summaries
    read every trial)."""
    from pareto import SPEC_ATTR

    return [study.name for study in studies_with_user_attr(store, SPEC_ATTR, count=False)]


def study_marker(store: Store, study: str) -> tuple[int, int]:
    """(completed trials, newest trial id) of ``study``: changes whenever trials are added (a cache key)."""
    return completed_marker(store, study)


def operating_point_frame(results: StudyResults, cost: str, k: int) -> pd.DataFrame:
    """The operating-point table of ``cost`` (:meth:`pareto.StudyResults.operating_points`: ``k`` SubNets spanning
    the range of ``cost`` on its device's front, each the best quality for the budgets it covers; bounds named by
    the metric, e.g. ``max_decode_ms_per_token``), configs as JSON text."""
    objective = next(o for o in results.objectives if o.name == cost)
    devices = {o.subject for o in results.objectives if o.is_cost}
    device = objective.subject if objective.is_cost and len(devices) > 1 else None
    table = results.operating_points(device, k, cost)
    return pd.DataFrame([row | {"config": json.dumps(row["config"])} for row in table])


def config_document(store: Store, results: StudyResults, number: int) -> dict[str, Any]:
    """Trial ``number``'s config as ``{"space", "key", "values"}`` (what ``hwpareto validate`` accepts),
    validated against its space."""
    if number not in results.configs:
        raise InvalidValueError("trial", f"a completed trial number of study {results.spec.name!r}", number)
    config = store.spaces.get(results.spec.space).validate(results.configs[number])
    return {"space": results.spec.space, "key": config.key, "values": config.values}
