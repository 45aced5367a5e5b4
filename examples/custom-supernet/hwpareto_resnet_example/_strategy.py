"""A search strategy: ``mutate`` changes one dimension of a SubNet on the front of what has been evaluated so far
(first generation: uniform draws)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hwpareto.options import SearchOptions
from pareto import Problem, Strategy, non_dominated_mask
from supernet import SubNetConfig

__all__ = ["MutationStrategy"]


class MutationStrategy(Strategy):
    """Mutates front members: each proposal is a random parent of the feasible front (of the whole front when
    nothing is feasible) with one free dimension redrawn."""

    def __init__(
        self,
        problem: Problem,
        options: SearchOptions,
        configs: Sequence[SubNetConfig] = (),
        values: np.ndarray | None = None,
        constraints: np.ndarray | None = None,
    ) -> None:
        super().__init__(problem, options, configs, values, constraints)
        self.free = [j for j in range(len(self.genome.dims)) if j not in self.genome.fixed]
        self.configs: list[SubNetConfig] = []
        self.values = np.empty((0, len(problem.directions)))
        self.feasible = np.empty(0, dtype=bool)
        if configs and values is not None:
            self.tell(configs, values, constraints if constraints is not None else np.empty((len(configs), 0)))

    def ask(self, n: int) -> list[SubNetConfig]:
        if not self.configs or not self.free:
            return self.uniform(n)
        pool = np.flatnonzero(self.feasible) if self.feasible.any() else np.arange(len(self.configs))
        front = pool[non_dominated_mask(self.values[pool] * self.problem.signs)]
        genes = np.array([self.genome.encode(self.configs[i]) for i in self.rng.choice(front, size=n)])
        fresh = self.genome.random(self.rng, n)
        for row, j in enumerate(self.rng.choice(self.free, size=n)):
            genes[row, j] = fresh[row, j]
        return self.genome.decode(genes, self.rng)

    def tell(self, configs: Sequence[SubNetConfig], values: np.ndarray, constraints: np.ndarray) -> None:
        self.configs.extend(configs)
        self.values = np.vstack([self.values, values])
        self.feasible = np.concatenate([self.feasible, (constraints <= 0).all(axis=1)])
