"""The search-space abstraction every other hwpareto package keys on."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hwpareto.errors import CapabilityError, InvalidValueError
from supernet._family import TORCH, ModelFamily
from supernet._types import OPS, Dimension, LayerSpec, Scalar, SubNetConfig
from supernet.preprocessing import ImagePreprocessing

if TYPE_CHECKING:
    import torch
    from scipy import sparse
    from torch import nn

__all__ = ["LayerCounts", "LayerTerm", "SearchSpace", "distinct_configs"]

LayerTerm = tuple[tuple[str, ...], Callable[[tuple[Scalar, ...]], Sequence[LayerSpec]]]
"""A part of a space's layer model: the dimensions it reads and the LayerSpecs it adds for their values."""
_Tally = tuple[np.ndarray, np.ndarray]
"""Numbers of distinct LayerSpecs (a space's own numbering) in order of first appearance, how often each occurs."""
TERM_CACHE_SIZE = 30_000
"""Most layer-term tallies a space remembers for :meth:`SearchSpace.layer_counts` (about 1 kB each with the layers
they hold; every combination of every term of mbv3 is about 27,000)."""


@dataclass(frozen=True, slots=True)
class LayerCounts:
    """How often each distinct LayerSpec occurs in the layers of each of ``n`` configs.

    ``matrix`` is a sparse ``(n, len(specs))`` array: row ``i`` counts config ``i``'s layers, column ``j`` is
    ``specs[j]``. Per-layer quantities (params, MACs, a device's LUT latencies) become per-config totals with one
    matrix product: :meth:`total`. A space hands the same counts to callers counting the same configs: read only.
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
      follow :class:`~supernet.SuperNet`, ``set_active(config)`` (OFA's ``elastic_nn`` convention: the next forward
      runs that SubNet);
    - optional, model family: ``family``, the hooks bundles and training call (:class:`~supernet.ModelFamily`;
      default: a plain PyTorch SubNet, ``weights.safetensors``);
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
    family: ClassVar[ModelFamily] = TORCH
    """How its SubNets are saved, loaded, checked and trained (:class:`~supernet.ModelFamily`)."""

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
        if values.keys() != self._by_name.keys():
            missing = [d.name for d in self.dimensions if d.name not in values]
            if missing:
                raise InvalidValueError(f"{self.name} config", "values for " + ", ".join(missing), "none (missing)")
            extra = [k for k in values if k not in self._by_name]
            raise InvalidValueError(
                f"{self.name} config", "only the dimensions " + ", ".join(self._by_name), "extra " + ", ".join(extra)
            )
        items = tuple([(d.name, d.coerce(values[d.name], self.name)) for d in self.dimensions])
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
        values is built once, and remembered by the space), else one :meth:`layers` call per distinct config.
        The columns are in the order of the LayerSpecs' keys, and so is each row's sum in :meth:`LayerCounts.total`:
        a config's totals do not depend on the configs counted with it. Counting the configs of the last call again
        returns its counts.
        """
        configs = [self.validate(c) for c in configs]
        keys = tuple(c.key for c in configs)
        found = self._recent_counts.get(keys)
        if found is not None:  # counted just now: an evaluation's costs, then its accuracy features
            return found
        n = len(configs)
        terms = self.layer_terms()
        parts: list[tuple[np.ndarray, list[_Tally]]] = []  # (row -> its part's index, the parts' layer tallies)
        if terms is None:
            unique, inverse = distinct_configs(configs)
            parts.append((inverse, [self._tally(self.layers(c)) for c in unique]))
        else:
            position = {name: j for j, name in enumerate(self._names)}
            table = list(zip(*([v for _, v in c.items] for c in configs), strict=True)) if n else []
            factors: dict[str, tuple[np.ndarray, int]] = {}  # dimension -> codes by first appearance, how many
            for index, (dims, build) in enumerate(terms):
                combined, size = np.zeros(n, dtype=np.int64), 1
                for d in dims:
                    if d not in factors:
                        seen: dict[Any, int] = {}
                        codes = [seen.setdefault(v, len(seen)) for v in table[position[d]]] if n else []
                        factors[d] = np.asarray(codes, dtype=np.int64), max(len(seen), 1)
                    codes_d, count = factors[d]
                    if size * count >= 2**62:  # keep the mixed-radix code in range: renumber it densely
                        combined = np.unique(combined, return_inverse=True)[1].reshape(-1).astype(np.int64)
                        size = int(combined.max(initial=0)) + 1
                    combined, size = combined * count + codes_d, size * count
                # the combinations in lexicographic order of their codes, each with a row that has it
                _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
                if dims:
                    picked = [[table[position[d]][i] for i in first.tolist()] for d in dims]
                    combos: list[tuple[Scalar, ...]] = list(zip(*picked, strict=True))
                else:  # the fixed part: counted even without configs
                    combos, inverse = [()], np.zeros(n, dtype=np.intp)
                parts.append((inverse.reshape(-1), [self._term_tally(index, build, combo) for combo in combos]))
        specs = self._layer_ids[1]
        flat = [np.concatenate([np.zeros(0, dtype=np.int64), *(t[0] for t in tallies)]) for _, tallies in parts]
        everything = np.concatenate([np.zeros(0, dtype=np.int64), *flat])
        distinct = np.unique(everything)
        order = np.array(sorted(distinct.tolist(), key=lambda i: specs[i].key), dtype=np.int64)  # the columns
        column = np.zeros(int(distinct.max(initial=-1)) + 1, dtype=np.int64)
        column[order] = np.arange(len(order))
        rows, cols, data = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
        for (inverse, tallies), layer_ids in zip(parts, flat, strict=True):
            lengths = np.array([len(t[0]) for t in tallies], dtype=np.int64)
            starts = np.cumsum(lengths) - lengths
            per_row = lengths[inverse]
            ends = np.cumsum(per_row)
            gather = np.arange(int(ends[-1]) if n else 0) + np.repeat(starts[inverse] - (ends - per_row), per_row)
            rows.append(np.repeat(np.arange(n), per_row))
            cols.append(column[layer_ids[gather]])
            data.append(np.concatenate([np.zeros(0), *(t[1] for t in tallies)])[gather])
        from scipy import sparse

        matrix = sparse.csr_array(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, len(order))
        )
        matrix.sum_duplicates()  # a layer several terms add is counted once; each row in column order
        counts = LayerCounts(matrix, tuple(specs[i] for i in order))
        self._recent_counts.clear()
        self._recent_counts[keys] = counts
        return counts

    def _term_tally(
        self, index: int, build: Callable[[tuple[Scalar, ...]], Sequence[LayerSpec]], values: tuple[Scalar, ...]
    ) -> _Tally:
        """The layer tally of term ``index`` of :meth:`layer_terms` (``build``) for ``values``, remembered (up to
        :data:`TERM_CACHE_SIZE` of them per space)."""
        cache = self._term_tallies
        found = cache.get((index, values))
        if found is None:
            found = self._tally(build(values))
            if len(cache) < TERM_CACHE_SIZE:
                cache[index, values] = found
        return found

    @functools.cached_property
    def _term_tallies(self) -> dict[tuple[int, tuple[Scalar, ...]], _Tally]:
        """:meth:`_term_tally`'s memory."""
        return {}

    @functools.cached_property
    def _recent_counts(self) -> dict[tuple[str, ...], LayerCounts]:
        """The last :meth:`layer_counts`, by its configs' keys."""
        return {}

    @functools.cached_property
    def _layer_ids(self) -> tuple[dict[LayerSpec, int], list[LayerSpec]]:
        """A number for every LayerSpec :meth:`layer_counts` has met (the space's own), and the specs by number."""
        return {}, []

    def _tally(self, layers: Sequence[LayerSpec]) -> _Tally:
        """The numbers (:attr:`_layer_ids`) of the distinct LayerSpecs of ``layers`` in order of first appearance, and
        how often each occurs."""
        ids, specs = self._layer_ids
        counter = Counter(layers)
        for spec in counter:
            if spec not in ids:
                ids[spec] = len(specs)
                specs.append(spec)
        numbers = np.fromiter((ids[spec] for spec in counter), dtype=np.int64, count=len(counter))
        return numbers, np.fromiter(counter.values(), dtype=np.float64, count=len(counter))

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
