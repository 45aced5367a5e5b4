"""The name of a predictor hwpareto derives, ``METRIC:SPACE:SUBJECT[:fewshotK]``: the one place that builds and
parses it (training, the search's objectives, export provenance, the CLI).

``SUBJECT`` is the device of a cost predictor or the dataset of an accuracy one; ``fewshotK`` marks a device's
few-shot transfer fitted on K of its measurements. A predictor saved under a name given by hand is not a key
(:meth:`PredictorKey.of` returns None for it). Space and device names may hold ``:`` themselves, so a name is
parsed unambiguously only with its space given (:meth:`PredictorKey.parse` ``space=``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from hwpareto.errors import InvalidValueError
from hwpareto.metrics import NAME as _METRIC

__all__ = ["PredictorKey"]

_FEWSHOT = re.compile(r"fewshot([1-9][0-9]*)")
_FORM = "METRIC:SPACE:SUBJECT[:fewshotK]"


@dataclass(frozen=True, slots=True)
class PredictorKey:
    """A derived predictor name as its parts; ``str(key)`` and ``key.name`` spell it."""

    metric: str
    space: str
    subject: str
    fewshot_k: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not _METRIC.fullmatch(self.metric):
            raise InvalidValueError("predictor key metric", "a metric name (a-z, 0-9, _)", self.metric)
        for field, value in (("space", self.space), ("subject", self.subject)):
            if not isinstance(value, str) or not value:
                raise InvalidValueError(f"predictor key {field}", "a non-empty name", value)
        k = self.fewshot_k
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise InvalidValueError("predictor key fewshot_k", "a whole number >= 1 or None", k)

    @property
    def name(self) -> str:
        """``metric:space:subject`` plus ``:fewshotK`` for a few-shot transfer."""
        plain = f"{self.metric}:{self.space}:{self.subject}"
        return plain if self.fewshot_k is None else f"{plain}:fewshot{self.fewshot_k}"

    def __str__(self) -> str:
        return self.name

    @property
    def plain(self) -> PredictorKey:
        """The same metric, space and subject without the few-shot mark (the device's own predictor)."""
        return replace(self, fewshot_k=None)

    @classmethod
    def parse(cls, name: str, *, space: str | None = None) -> PredictorKey:
        """The key ``name`` spells; ``space`` (when known) settles names whose space or subject holds ``:``.
        A malformed name raises :class:`~hwpareto.errors.InvalidValueError` naming the part that is wrong."""
        if not isinstance(name, str):
            raise InvalidValueError("predictor name", _FORM, name)
        metric, sep, rest = name.partition(":")
        if not sep or not _METRIC.fullmatch(metric):
            raise InvalidValueError(
                f"predictor name {name!r} metric", f"a metric name (a-z, 0-9, _) in {_FORM}", metric
            )
        k = None
        head, _, last = rest.rpartition(":")
        if head and (few := _FEWSHOT.fullmatch(last)):
            rest, k = head, int(few[1])
        elif head and re.fullmatch(r"fewshot[0-9]*", last):
            raise InvalidValueError(f"predictor name {name!r} fewshot_k", "fewshotK with a whole K >= 1", last)
        if space is not None:
            if not rest.startswith(space + ":"):
                raise InvalidValueError(f"predictor name {name!r} space", space, rest.partition(":")[0])
            subject = rest.removeprefix(space + ":")
        else:
            space, sep, subject = rest.partition(":")
            if not sep or ":" in subject:
                raise InvalidValueError(
                    f"predictor name {name!r} subject", f"one SPACE:SUBJECT pair in {_FORM}", rest or "none"
                )
        if not space or not subject:
            field = "space" if not space else "subject"
            raise InvalidValueError(f"predictor name {name!r} {field}", "a non-empty name", "none")
        return cls(metric, space, subject, k)

    @classmethod
    def of(cls, name: str, *, space: str | None = None) -> PredictorKey | None:
        """The key ``name`` spells, or None for a name given by hand (see :meth:`parse`)."""
        try:
            return cls.parse(name, space=space)
        except InvalidValueError:
            return None
