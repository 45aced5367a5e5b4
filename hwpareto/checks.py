"""The one validator for names and the one rule for metric values, used by every write path and entry point.

Names (devices, searches/studies, spaces, predictors, dataset subjects): letters, digits and ``_ . : @ + -``,
1 to 128 characters, starting with a letter or digit — no spaces, slashes, quotes, control characters or escape
codes. Names stored before this check may hold anything; :func:`show_name` prints them escaped.

Metric values lie in their metric's range, which the metric catalogue gives (:func:`hwpareto.metrics.lookup`: the
catalogue's metrics, and for other names the rule of their unit suffix: ``_ms`` and ``_mj`` positive, percentages
and accuracies in [0, 100], counts non-negative, anything else a finite number).

Standard deviations are finite, non-negative and at most the metric's upper bound. A LUT entry is one layer's
cost, which may be 0 (e.g. a skip or zero op on a simulator), so per-layer latency/energy need ``>= 0``.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from hwpareto.errors import InvalidValueError
from hwpareto.metrics import MAX_ENERGY_MJ, MAX_LATENCY_MS, lookup

__all__ = [
    "MAX_ENERGY_MJ",
    "MAX_LATENCY_MS",
    "NAME_CHARS",
    "check_metric_value",
    "check_name",
    "metric_range",
    "show_name",
]

NAME_CHARS = "letters, digits and _ . : @ + - (max 128, starting with a letter or digit)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def check_name(field: str, value: Any) -> str:
    """``value`` when it is a valid name, else :class:`InvalidValueError` naming ``field``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidValueError(field, NAME_CHARS, value)
    return value


def show_name(value: Any) -> str:
    """A stored name fit for a terminal: valid names as they are, others with control characters and escape codes
    written as ``\\xNN`` / ``\\uNNNN`` (as ``repr`` would)."""
    text = str(value)
    if _NAME.fullmatch(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def metric_range(metric: str) -> tuple[float, float, bool]:
    """``(low, high, low_inclusive)`` allowed for values of ``metric`` (its catalogue entry's range)."""
    return lookup(metric).range


def check_metric_value(field: str, metric: str, value: Any, *, std: bool = False, per_layer: bool = False) -> float:
    """``value`` as a float when it lies in ``metric``'s range (a standard deviation with ``std``: ``>= 0`` and at
    most the upper bound; one layer's cost with ``per_layer``: 0 allowed), else :class:`InvalidValueError`."""
    low, high, inclusive = metric_range(metric)
    if std or per_layer:
        low, inclusive = max(low, 0.0), True
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number):
        raise InvalidValueError(field, "a finite number", value)
    if (number >= low if inclusive else number > low) and number <= high:
        return number
    what = "a standard deviation" if std else metric
    raise InvalidValueError(field, f"{what} in {'[' if inclusive else '('}{low:g}, {high:g}]", value)
