"""Typed search options: the one set of defaults that :class:`pareto.SearchSpec`, the CLI (``hwpareto search``), the
dashboard's search form and the worker read.

A light module (no Optuna, no store): the CLI reads its option defaults from here when it starts. The sampler's
name is checked against the strategy registry by :class:`pareto.SearchSpec`, not here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hwpareto.errors import InvalidValueError

__all__ = ["BUDGETED", "SEARCH", "BudgetedOptions", "SearchOptions"]

DEFAULT_INITIAL = 20
"""Smallest initial design of a budgeted search (the design is at least one batch)."""


def _check_int(field: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidValueError(field, f"an integer >= {low}", value)


@dataclass(frozen=True)
class SearchOptions:
    """How a search proposes SubNets and for how long: the strategy (``sampler``, a name of the
    ``hwpareto.strategies`` registry), the trials to reach, the trials per generation and the seed."""

    sampler: str = "nsga2"
    n_trials: int = 1000
    population: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.sampler, str):
            raise InvalidValueError("sampler", "a strategy name", self.sampler)
        _check_int("n_trials", self.n_trials, 1)
        _check_int("population", self.population, 4)
        _check_int("seed", self.seed, 0)


@dataclass(frozen=True)
class BudgetedOptions:
    """Options of an evaluation-budgeted search (``SearchSpec.options`` when ``mode`` is ``budgeted``)."""

    batch: int = 10
    """Evaluations per step after the initial design."""
    initial: int | None = None
    """Evaluations of the space-filling initial design; None: ``max(batch, DEFAULT_INITIAL)``."""
    eval_delay_s: float = 0.0
    """Seconds each evaluation sleeps: stands in for an expensive evaluation (tests, benchmarks)."""

    def __post_init__(self) -> None:
        _check_int("batch", self.batch, 1)
        if self.initial is not None:
            _check_int("initial", self.initial, 1)
        delay = self.eval_delay_s
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay < math.inf:
            raise InvalidValueError("eval_delay_s", "a finite number >= 0", delay)

    @property
    def design(self) -> int:
        """Evaluations of the initial design."""
        return max(self.batch, DEFAULT_INITIAL) if self.initial is None else self.initial

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and canonical (the initial design resolved): what a spec stores."""
        return {**asdict(self), "initial": self.design, "eval_delay_s": float(self.eval_delay_s)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BudgetedOptions:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the known ones."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(doc) - known)
        if extra:
            raise InvalidValueError("budgeted options", "the keys " + ", ".join(sorted(known)), extra)
        return cls(**doc)


SEARCH = SearchOptions()
"""The defaults of a search."""
BUDGETED = BudgetedOptions()
"""The defaults of an evaluation-budgeted search."""
