"""Portable (pickle-free) persistence for predictors: a JSON document with plain arrays and XGBoost models.

A document is ``{"format": "hwpareto-predictor", "version": 1, "class": ..., "params": {...}, "state": {...}}``;
``state`` holds lists, numbers, strings and XGBoost boosters as base64 of XGBoost's own UBJSON model format
(``{"xgboost_ubj": "<base64>"}``). Loading checks the format, version and class, and builds boosters with
``xgboost.Booster.load_model`` on those bytes: nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from hwpareto.errors import HwparetoError

__all__ = ["FORMAT", "VERSION", "booster_from_state", "booster_to_state", "dumps", "loads"]

FORMAT = "hwpareto-predictor"
VERSION = 1


def booster_to_state(booster: Any) -> dict[str, str]:
    """An XGBoost booster as ``{"xgboost_ubj": base64}`` (XGBoost's portable UBJSON model format)."""
    return {"xgboost_ubj": base64.b64encode(bytes(booster.save_raw(raw_format="ubj"))).decode("ascii")}


def booster_from_state(state: Any, where: str = "model", nthread: int = 1) -> Any:
    """Inverse of :func:`booster_to_state`, predicting on ``nthread`` threads (a saved booster keeps no thread count:
    loaded, it took every core, which on a busy machine made each small prediction many times slower); a malformed
    entry raises :class:`HwparetoError`."""
    import xgboost as xgb

    if not isinstance(state, dict) or not isinstance(state.get("xgboost_ubj"), str):
        raise HwparetoError(f"{where}: expected an XGBoost UBJSON entry, got {type(state).__name__}")
    try:
        raw = base64.b64decode(state["xgboost_ubj"], validate=True)
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": nthread})
    except (ValueError, xgb.core.XGBoostError) as exc:
        raise HwparetoError(f"{where}: not a valid XGBoost model ({str(exc).splitlines()[0][:120]})") from None
    return booster


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def dumps(cls_name: str, params: dict[str, Any], state: dict[str, Any]) -> bytes:
    """Serialise a predictor's constructor ``params`` and fitted ``state`` to UTF-8 JSON bytes."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "class": cls_name,
        "params": _jsonable(params),
        "state": _jsonable(state),
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


def loads(blob: bytes, expected_class: str | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Parse :func:`dumps` output; returns (class name, params, state). Foreign or corrupt bytes raise
    :class:`HwparetoError` saying what was found."""
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        head = blob[:16]
        raise HwparetoError(f"predictor blob: not an hwpareto predictor document (starts with {head!r})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HwparetoError(
            f"predictor blob: format {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r}"
        )
    if doc.get("version") != VERSION:
        raise HwparetoError(f"predictor blob: version {doc.get('version')!r}, this hwpareto reads {VERSION}")
    cls_name = doc.get("class")
    if expected_class is not None and cls_name != expected_class:
        raise HwparetoError(f"predictor blob: a {cls_name!r}, expected a {expected_class!r}")
    if not isinstance(doc.get("params"), dict) or not isinstance(doc.get("state"), dict):
        raise HwparetoError("predictor blob: params and state must be mappings")
    return str(cls_name), doc["params"], doc["state"]
