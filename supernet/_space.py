"""The search-space abstraction every other hwpareto package keys on."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hwpareto.errors import CapabilityError, InvalidValueError
from supernet._types import OPS, Dimension, LayerSpec, Scalar, SubNetConfig
from supernet.preprocessing import ImagePreprocessing

if TYPE_CHECKING:
    import torch
    from scipy import sparse
    from torch import nn

__all__ = ["LayerCounts", "LayerTerm", "SearchSpace", "distinct_configs"]

LayerTerm = tuple[tuple[str, ...], Callable[[tuple[Scalar, ...]], Sequence[LayerSpec]]]
"""A part of a space's layer model: the dimensions it reads and the LayerSpecs it adds for their values."""


@dataclass(frozen=True, slots=True)
class LayerCounts:
    """How often each distinct LayerSpec occurs in the layers of each of ``n`` configs.

    ``matrix`` is a sparse ``(n, len(specs))`` array: row ``i`` counts config ``i``'s layers, column ``j`` is
    ``specs[j]``. Per-layer quantities (params, MACs, a device's LUT latencies) become per-config totals with one
    matrix product: :meth:`total`.
    """

    matrix: sparse.csr_array
    specs: tuple[LayerSpec, ...]

    def total(self, per_spec: np.ndarray) -> np.ndarray:
        """``sum over layers`` of ``per_spec`` (one value per ``specs`` entry) for every config: shape ``(n,)``."""
        return np.asarray(self.matrix @ np.asarray(per_spec, dtype=np.float64), dtype=np.float64)


class SearchSpace:
    """A named set of SubNets, described by :class:`Dimension` s.

    Contract for a space (built-in or a plugin of the ``hwpareto.spaces`` entry-point group, see
    :mod:`hwpareto.plugins`):

    - required: a ``name`` (equal to its entry-point name) and the dimensions passed to ``__init__``; sampling,
      validation, encoding, Optuna distributions and the default predictor features then work;
    - optional, cost model: :meth:`layers` (the LUT keys of a config) and :meth:`layer_universe`, better also
      :meth:`layer_terms`; without them profiling and LUT-sums raise :class:`CapabilityError`;
    - optional, PyTorch: :meth:`supernet`, :meth:`extract`, :meth:`subnet` and :meth:`dummy_input` (set
      ``has_model = False`` when absent); ``train-supernet`` and ``eval-subnets`` also need the SuperNet module to
      have ``set_active(config)`` (OFA's ``elastic_nn`` convention: the next forward runs that SubNet);
    - optional: cross-dimension rules in :meth:`_check`, inactive parts in :meth:`canonical`, a compact
      :meth:`encode`, space-specific predictor columns in :meth:`feature_names` / :meth:`features`, and the
      third-party table formats of :meth:`from_record`.

    Spaces are immutable and thread-safe; randomness is always passed in.
    """

    name: str
    description: str = ""
    has_model: bool = True
    input_dimension: str | None = None
    """The dimension that sets the input shape (resolution, sequence length), if any."""
    preprocessing: ImagePreprocessing | None = None
    """How input images are resized and normalised and BN recalibrated (image spaces); None for other inputs."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        names = [d.name for d in dimensions]
        if len(set(names)) != len(names):
            raise InvalidValueError(f"space {self.name!r} dimensions", "unique names", names)
        self.dimensions: tuple[Dimension, ...] = tuple(dimensions)
        self._by_name = {d.name: d for d in self.dimensions}
        self._names = tuple(names)

    # ------------------------------------------------------------------ configs
    def dimension(self, name: str) -> Dimension:
        """The dimension called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidValueError(f"{self.name}.dimension", "one of " + ", ".join(self._by_name), name) from None

    def validate(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """Check a config (missing, extra and out-of-range dimensions, cross rules) and freeze it.

        Accepts a plain mapping, a ``{"space": ..., "values": {...}}`` document or a :class:`SubNetConfig`
        (one of this space, with its dimensions, is returned as is: configs are immutable and checked when built).
        Raises :class:`InvalidValueError` naming the first offending field.
        """
        if isinstance(config, SubNetConfig):
            if config.space != self.name:
                raise InvalidValueError("config.space", repr(self.name), config.space)
            if config.names == self._names:
                return config
            values: Mapping[str, Any] = config.values
        elif isinstance(config, Mapping):
            values = config
            if "values" in config and isinstance(config["values"], Mapping):
                space = config.get("space", self.name)
                if space != self.name:
                    raise InvalidValueError("config.space", repr(self.name), space)
                values = config["values"]
        else:
            raise InvalidValueError(f"{self.name} config", "a mapping of dimension names to values", config)
        missing = [d.name for d in self.dimensions if d.name not in values]
        if missing:
            raise InvalidValueError(f"{self.name} config", "values for " + ", ".join(missing), "none (missing)")
        extra = [k for k in values if k not in self._by_name]
        if extra:
            raise InvalidValueError(
                f"{self.name} config", "only the dimensions " + ", ".join(self._by_name), "extra " + ", ".join(extra)
            )
        items = tuple((d.name, d.coerce(values[d.name], self.name)) for d in self.dimensions)
        self._check(dict(items))
        return SubNetConfig(self.name, items)

    def _check(self, values: dict[str, Scalar]) -> None:
        """Cross-dimension rules; raise :class:`InvalidValueError`. Default: none."""

    def canonical(self, config: Mapping[str, Any] | SubNetConfig) -> SubNetConfig:
        """The config with its inactive parts (values the SubNet never runs) at a canonical value, so that configs
        of the same network are equal. Default: the config itself (every value is active).

        ``config.key`` stays the literal content hash (stored measurements are keyed by it);
        :meth:`arch_key` (``canonical(config).key``) is the effective-architecture identity.
        """
        return self.validate(config)

    def arch_key(self, config: Mapping[str, Any] | SubNetConfig) -> str:
        """Effective-architecture identity: the key of :meth:`canonical` (equal for configs that differ only in
        inactive parts)."""
        return self.canonical(config).key

    def sample(self, rng: np.random.Generator) -> SubNetConfig:
        """Draw a valid config uniformly per dimension (rejecting configs that break cross rules)."""
        for _ in range(1000):
            values = {d.name: d.sample(rng) for d in self.dimensions}
            try:
                return self.validate(values)
            except InvalidValueError:
                continue
        raise RuntimeError(f"space {self.name!r}: no valid config after 1000 draws")

    def smallest(self) -> SubNetConfig:
        """Every dimension at its smallest value."""
        return self.validate({d.name: d.bounds()[0] for d in self.dimensions})

    def largest(self) -> SubNetConfig:
        """Every dimension at its largest value."""
        return self.validate({d.name: d.bounds()[1] for d in self.dimensions})

    def encoding_names(self) -> list[str]:
        """Column names of :meth:`encode` (``dim`` or ``dim=choice`` for one-hot columns)."""
        names: list[str] = []
        for d in self.dimensions:
            names.extend([d.name] if d.numeric else [f"{d.name}={c}" for c in d.choices])
        return names

    def encode(self, config: SubNetConfig) -> np.ndarray:
        """Fixed-length float vector (numeric values as is, string categories one-hot)."""
        out: list[float] = []
        for d in self.dimensions:
            out.extend(d.encode(config[d.name]))
        return np.asarray(out, dtype=np.float64)

    # ------------------------------------------------------------------ predictor features
    def feature_names(self) -> list[str]:
        """Column names of :meth:`features` (distinct). Default: :meth:`encoding_names`, then, when the space has
        a layer model, ``log_params`` and ``log_macs`` (``log1p``), ``n_layers`` and ``n_<op>`` (layers per op kind
        the space can produce). Overrides append their own columns to ``super().feature_names()``."""
        ops = self._feature_ops
        extra = [] if ops is None else ["log_params", "log_macs", "n_layers", *(f"n_{op}" for op in ops)]
        return [*self.encoding_names(), *extra]

    def features(self, configs: Sequence[SubNetConfig], canonical: bool = True) -> np.ndarray:
        """The ``(len(configs), len(feature_names()))`` float64 matrix accuracy and cost predictors learn from.

        With ``canonical`` (accuracy models) a row describes what the SubNet computes: configs that differ only in
        parts that cannot change the output get equal rows; without it (cost models) it describes the network as it
        runs. Default: :meth:`encode` and the layer-model columns (of :meth:`canonical` configs when
        ``canonical``). Overrides keep the columns of ``super().features`` first, in order, and add their own.
        """
        configs = [self.validate(c) for c in configs]
        if canonical:
            configs = [self.canonical(c) for c in configs]
        if not configs:
            return np.empty((0, len(self.feature_names())), dtype=np.float64)
        ops = self._feature_ops
        blocks = [np.stack([self.encode(c) for c in configs])]
        if ops is not None:
            counts = self.layer_counts(configs)
            per_op = np.array([[spec.op == op for op in ops] for spec in counts.specs], dtype=np.float64)
            blocks += [
                np.log1p(counts.total(np.array([spec.params for spec in counts.specs], dtype=np.float64)))[:, None],
                np.log1p(counts.total(np.array([spec.macs for spec in counts.specs], dtype=np.float64)))[:, None],
                np.asarray(counts.matrix.sum(axis=1), dtype=np.float64).reshape(-1, 1),
                np.asarray(counts.matrix @ per_op.reshape(len(counts.specs), -1), dtype=np.float64),
            ]
        return np.hstack(blocks)

    @functools.cached_property
    def _feature_ops(self) -> tuple[str, ...] | None:
        """The op kinds of the ``n_<op>`` feature columns (in :data:`OPS` order), or None without a layer model."""
        try:
            self.layers(self.smallest())
        except CapabilityError:
            return None
        try:
            seen = {spec.op for spec in self.layer_universe()}
        except CapabilityError:
            seen = set(OPS)
        return tuple(op for op in OPS if op in seen)

    # ------------------------------------------------------------------ external formats
    def from_record(self, record: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> SubNetConfig:
        """Parse a row of a third-party table. Default: one column per dimension (numbers parsed from text)."""
        values: dict[str, Any] = dict(defaults or {})
        for d in self.dimensions:
            if d.name in record:
                values[d.name] = _parse_scalar(record[d.name], d)
        return self.validate(values)

    def to_record(self, config: SubNetConfig) -> dict[str, Any]:
        """The config as the columns :meth:`from_record` reads."""
        return config.values

    def summary(self, config: SubNetConfig) -> str:
        """A compact one-line rendering of ``config`` for tables and logs."""
        return " ".join(f"{k}={v}" for k, v in config.items)

    def record_columns(self) -> list[list[str]]:
        """Alternative sets of columns from which :meth:`from_record` can build a config."""
        return [[d.name for d in self.dimensions]]

    # ------------------------------------------------------------------ cost model
    def layers(self, config: SubNetConfig) -> list[LayerSpec]:
        """The LayerSpecs (LUT keys) the SubNet executes, in order, repeats included."""
        raise CapabilityError(f"space {self.name!r} has no layer model (declarative space)")

    def layer_terms(self) -> Sequence[LayerTerm] | None:
        """How :meth:`layers` splits into parts that each read a few dimensions, or None (default: it does not).

        When given, for every config ``layers(config)`` equals, as a multiset, the concatenation over the terms
        ``(dims, fn)`` of ``fn(tuple(config[d] for d in dims))``; :meth:`layer_counts` then builds each distinct
        part once instead of every config's layers. A term with no dimensions is the fixed part.
        """
        return None

    def layer_counts(self, configs: Sequence[SubNetConfig]) -> LayerCounts:
        """Counts of every distinct LayerSpec in the layers of each config (see :class:`LayerCounts`).

        Vectorised over :meth:`layer_terms` when the space declares them (each distinct combination of a term's
        values is built once), else one :meth:`layers` call per distinct config.
        """
        import pandas as pd
        from scipy import sparse

        configs = [self.validate(c) for c in configs]
        columns: dict[LayerSpec, int] = {}
        parts: list[tuple[np.ndarray, list[Counter[LayerSpec]]]] = []  # (row -> part index, parts' layer counts)
        terms = self.layer_terms()
        if terms is None:
            unique, inverse = distinct_configs(configs)
            parts.append((inverse, [Counter(self.layers(c)) for c in unique]))
        else:
            by_dimension = {
                d.name: pd.factorize(pd.Series([c[d.name] for c in configs], dtype=object))
                for d in self.dimensions
                if any(d.name in dims for dims, _ in terms)
            }
            for dims, build in terms:
                if not dims:
                    parts.append((np.zeros(len(configs), dtype=np.intp), [Counter(build(()))]))
                    continue
                factors = [by_dimension[d] for d in dims]
                stacked = np.column_stack([codes for codes, _ in factors]).reshape(len(configs), len(dims))
                combos, inverse = np.unique(stacked, axis=0, return_inverse=True)
                parts.append(
                    (
                        inverse.reshape(-1),
                        [
                            Counter(
                                build(tuple(uniq[int(code)] for code, (_, uniq) in zip(combo, factors, strict=True)))
                            )
                            for combo in combos
                        ],
                    )
                )
        for _, counters in parts:
            for counter in counters:
                for spec in counter:
                    columns.setdefault(spec, len(columns))
        matrix = sparse.csr_array((len(configs), len(columns)))
        for rows, counters in parts:
            data = [float(n) for counter in counters for n in counter.values()]
            indices = [columns[spec] for counter in counters for spec in counter]
            indptr = np.cumsum([0, *map(len, counters)])
            matrix = matrix + sparse.csr_array((data, indices, indptr), shape=(len(counters), len(columns)))[rows]
        return LayerCounts(sparse.csr_array(matrix), tuple(columns))

    def layer_universe(self, restrict: Mapping[str, Sequence[Any]] | None = None) -> list[LayerSpec]:
        """Every distinct LayerSpec any config of the space can produce (the LUT a device needs), in a stable
        order; ``restrict`` limits some dimensions (e.g. ``{"r": [224]}``) to the given values."""
        raise CapabilityError(f"space {self.name!r} has no layer model (declarative space)")

    def _restrict(self, restrict: Mapping[str, Sequence[Any]] | None, allowed: set[str]) -> dict[str, list[Any]]:
        """Validated values per restrictable dimension (all choices where not restricted)."""
        restrict = dict(restrict or {})
        unknown = sorted(set(restrict) - allowed)
        if unknown:
            raise InvalidValueError(
                f"{self.name} layer restriction", "dimensions " + ", ".join(sorted(allowed)), unknown
            )
        out: dict[str, list[Any]] = {}
        for name in sorted(allowed):
            dim = self.dimension(name)
            values = restrict.get(name, dim.choices)
            if not values:
                raise InvalidValueError(f"{self.name} layer restriction {name}", "at least one value", [])
            out[name] = list(dict.fromkeys(dim.coerce(v, self.name) for v in values))
        return out

    def params(self, config: SubNetConfig) -> int:
        """Learned parameters of the extracted SubNet."""
        return sum(spec.params for spec in self.layers(config))

    def macs(self, config: SubNetConfig) -> int:
        """Multiply-accumulates of one forward pass at batch 1 (FLOPs = 2 × MACs)."""
        return sum(spec.macs for spec in self.layers(config))

    # ------------------------------------------------------------------ models
    def supernet(self, seed: int = 0) -> nn.Module:
        """A freshly initialised weight-shared SuperNet (deterministic for a seed)."""
        raise CapabilityError(f"space {self.name!r} has no PyTorch SuperNet (declarative space)")

    def extract(self, supernet: nn.Module, config: SubNetConfig) -> nn.Module:
        """A standalone module whose weights are copies of the SuperNet slices ``config`` selects."""
        raise CapabilityError(f"space {self.name!r} has no PyTorch SuperNet (declarative space)")

    def subnet(self, config: SubNetConfig) -> nn.Module:
        """An untrained standalone module with the architecture ``extract`` returns (to load weights into)."""
        raise CapabilityError(f"space {self.name!r} has no PyTorch SuperNet (declarative space)")

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """A deterministic input of the shape ``config`` runs on (images or token ids)."""
        raise CapabilityError(f"space {self.name!r} has no PyTorch SuperNet (declarative space)")

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, description, dimensions, size and capabilities."""
        return {
            "name": self.name,
            "description": self.description,
            "has_model": self.has_model,
            "size": self.size(),
            "dimensions": [d.to_dict() for d in self.dimensions],
            "record_columns": self.record_columns(),
        }

    def size(self) -> int | float:
        """Number of distinct configs (exact integer; ``inf`` when a dimension is continuous)."""
        total = 1
        for d in self.dimensions:
            if d.kind == "float":
                return float("inf")
            if d.kind == "int":
                lo, hi = d.bounds()
                total *= (int(hi) - int(lo)) // d.step + 1
            else:
                total *= len(d.choices)
        return total

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.dimensions)} dimensions>"


def _parse_scalar(raw: Any, dim: Dimension) -> Any:
    """Parse a table cell for ``dim``; leave it unchanged when it is not text (validation reports it)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not dim.numeric:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and dim.kind != "float" else number


def distinct_configs(configs: Sequence[SubNetConfig]) -> tuple[list[SubNetConfig], np.ndarray]:
    """The distinct configs (by key, in order of first appearance) and, for each input, its index among them:
    ``[unique[i] for i in inverse]`` is ``configs`` again."""
    import pandas as pd

    inverse, _ = pd.factorize(pd.Series([c.key for c in configs], dtype=object))
    first = np.unique(inverse, return_index=True)[1]  # codes number configs in order of first appearance
    return [configs[i] for i in first], np.asarray(inverse, dtype=np.intp)
