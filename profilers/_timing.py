"""Repeat-until-window timing with robust statistics, shared by the CPU and CUDA backends."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TimingPolicy", "TimingResult", "robust_stats", "time_calls"]

MIN_FOR_OUTLIERS = 10


@dataclass(frozen=True, slots=True)
class TimingPolicy:
    """How long and how often to time: warm-up calls and time, then calls until ``min_window_ms`` of timed
    work and at least ``min_samples`` samples (at most ``max_samples``); samples beyond ``outlier_mads`` median
    absolute deviations from the median are dropped."""

    warmup_calls: int = 3
    warmup_ms: float = 20.0
    min_window_ms: float = 100.0
    min_samples: int = 5
    max_samples: int = 10_000
    outlier_mads: float = 5.0


@dataclass(frozen=True, slots=True)
class TimingResult:
    """Per-call latency: median and standard deviation of the kept samples, kept and dropped counts."""

    median_ms: float
    std_ms: float
    n: int
    outliers: int
    window_ms: float


def robust_stats(samples_ms: list[float], outlier_mads: float) -> TimingResult:
    """Median and spread after dropping samples more than ``outlier_mads`` MADs from the median (only with at
    least ``MIN_FOR_OUTLIERS`` samples: fewer say too little about the spread to call any an outlier)."""
    median = statistics.median(samples_ms)
    mad = statistics.median(abs(s - median) for s in samples_ms)
    limit = outlier_mads * 1.4826 * mad  # 1.4826 MAD estimates sigma for normal noise
    reject = mad > 0 and len(samples_ms) >= MIN_FOR_OUTLIERS
    kept = [s for s in samples_ms if abs(s - median) <= limit] if reject else list(samples_ms)
    centre = statistics.median(kept)
    spread = statistics.stdev(kept) if len(kept) > 1 else 0.0
    return TimingResult(centre, spread, len(kept), len(samples_ms) - len(kept), sum(samples_ms))


def time_calls(
    fn: Callable[[], object], policy: TimingPolicy, timer: Callable[[Callable[[], object]], float] | None = None
) -> TimingResult:
    """Time ``fn`` per call under ``policy``. ``timer(fn)`` returns one call's milliseconds (default: wall clock
    with ``perf_counter_ns``; the CUDA backend passes an event-based timer that synchronises)."""
    measure = timer or _wall_ms
    start = time.perf_counter()
    calls = 0
    while calls < policy.warmup_calls or (time.perf_counter() - start) * 1e3 < policy.warmup_ms:
        fn()
        calls += 1
    samples: list[float] = []
    total = 0.0
    while len(samples) < policy.max_samples and (total < policy.min_window_ms or len(samples) < policy.min_samples):
        ms = measure(fn)
        samples.append(ms)
        total += ms
    return robust_stats(samples, policy.outlier_mads)


def _wall_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6
