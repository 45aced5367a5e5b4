"""An analytic objective in one file: ``blocks``, the residual blocks a SubNet runs (the sum of its stage
depths), a catalogue metric with its computation (entry point ``blocks`` of the group ``hwpareto.objectives``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hwpareto.metrics import Metric
from pareto import AnalyticObjective
from supernet import LayerCounts, SearchSpace, SubNetConfig

__all__ = ["BLOCKS"]


def _blocks(space: SearchSpace, configs: Sequence[SubNetConfig], counts: LayerCounts) -> np.ndarray:
    depths = [d.name for d in space.dimensions if d.name.startswith("d_")]
    return np.array([float(sum(int(c[name]) for name in depths)) for c in configs])


BLOCKS = AnalyticObjective(Metric("blocks", "blocks", "analytic", low=0.0, label="residual blocks"), _blocks)
