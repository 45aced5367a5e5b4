"""PredictorKey, the one builder and parser of derived predictor names: round trips, names whose space or device
holds ``:``, and malformed names refused with the part that is wrong."""

from __future__ import annotations

import pytest

from hwpareto.errors import InvalidValueError
from hwpareto.predictor_key import PredictorKey


def test_names_round_trip() -> None:
    plain = PredictorKey("latency_ms", "nb201", "new-x")
    few = PredictorKey("latency_ms", "nb201", "new-x", 10)
    assert plain.name == str(plain) == "latency_ms:nb201:new-x"
    assert few.name == "latency_ms:nb201:new-x:fewshot10" and few.plain == plain
    for key in (plain, few, PredictorKey("test_acc_pct", "mbv3-digits", "digits")):
        assert PredictorKey.parse(key.name) == key
    # a space or device name may hold ':' itself: parsed with the space given
    odd = PredictorKey("energy_mj", "my:space", "lab:board", 3)
    assert PredictorKey.parse(odd.name, space="my:space") == odd
    assert PredictorKey.of(odd.name) is None and PredictorKey.of("my-own-name") is None


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("latency_ms", "metric"),
        ("Latency:nb201:x", "metric"),
        ("latency_ms:nb201", "subject"),
        ("latency_ms:nb201:", "subject"),
        ("latency_ms:nb201:a:b", "subject"),
        ("latency_ms:nb201:x:fewshot0", "fewshot_k"),
        ("latency_ms:nb201:x:fewshot", "fewshot_k"),
        ("latency_ms::x", "space"),
    ],
)
def test_malformed_names_name_the_field(name: str, field: str) -> None:
    with pytest.raises(InvalidValueError, match=f"predictor name {name!r} {field}: expected"):
        PredictorKey.parse(name)


def test_parse_with_the_space_checks_it() -> None:
    with pytest.raises(InvalidValueError, match="space: expected mbv3, got 'nb201'"):
        PredictorKey.parse("latency_ms:nb201:x", space="mbv3")
    with pytest.raises(InvalidValueError, match="predictor key fewshot_k: expected a whole number >= 1"):
        PredictorKey("latency_ms", "nb201", "x", 0)
