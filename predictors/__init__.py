"""Predictors: latency/energy (LUT-sum + learned correction, few-shot transfer) and accuracy (with calibrated
uncertainty) as scikit-learn estimators, stored in portable formats and served over the store."""

from predictors._accuracy import AccuracyPredictor
from predictors._features import SpaceFeatures, additive_costs
from predictors._fewshot import FewShotLatency, reference_set
from predictors._latency import LatencyPredictor
from predictors._service import (
    Model,
    TrainReport,
    check_drift,
    load_model,
    metrics,
    predict_table,
    suggest_references,
    train_accuracy,
    train_latency,
)

__all__ = [
    "AccuracyPredictor",
    "FewShotLatency",
    "LatencyPredictor",
    "Model",
    "SpaceFeatures",
    "TrainReport",
    "additive_costs",
    "check_drift",
    "load_model",
    "metrics",
    "predict_table",
    "reference_set",
    "suggest_references",
    "train_accuracy",
    "train_latency",
]
