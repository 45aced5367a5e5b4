"""Core value types: search-space dimensions, SubNet configurations and layer specifications."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import numpy as np

from hwpareto.errors import InvalidValueError
from hwpareto.metrics import phase_metrics

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = ["ACTIVATIONS", "OPS", "Dimension", "LayerSpec", "SubNetConfig"]

Scalar = int | float | str
DimensionKind = Literal["categorical", "int", "float"]

MAX_CHOICES = 1_000  # choices of one categorical dimension
MAX_BOUND = 1e15  # |low| and |high| of int/float dimensions (sampling stays exact and finite)


def _is_number(value: Any) -> TypeGuard[float | int | np.integer[Any] | np.floating[Any]]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, slots=True)
class Dimension:
    """One searchable dimension of a space.

    ``categorical`` dimensions list their ``choices`` (numbers or strings); ``int`` and ``float`` dimensions
    span ``[low, high]`` (``int`` with ``step``). ``group`` is a display hint (e.g. ``"stage 2"``).
    """

    name: str
    kind: DimensionKind = "categorical"
    choices: tuple[Scalar, ...] = ()
    low: float | None = None
    high: float | None = None
    step: int = 1
    group: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        # plain Python scalars, so configs hash to canonical JSON whatever built the dimension (numpy, YAML)
        object.__setattr__(self, "choices", tuple(c.item() if isinstance(c, np.generic) else c for c in self.choices))
        if self.kind == "categorical":
            if not self.choices:
                raise InvalidValueError(f"dimension {self.name!r}.choices", "a non-empty list", list(self.choices))
            if len(self.choices) > MAX_CHOICES:
                raise InvalidValueError(
                    f"dimension {self.name!r}.choices",
                    f"at most {MAX_CHOICES:,} choices",
                    f"{len(self.choices):,} choices",
                )
            if len(set(self.choices)) != len(self.choices):
                raise InvalidValueError(f"dimension {self.name!r}.choices", "distinct values", list(self.choices))
            numeric = [_is_number(c) for c in self.choices]
            if any(numeric) and not all(numeric):
                raise InvalidValueError(
                    f"dimension {self.name!r}.choices", "all numbers or all strings", list(self.choices)
                )
        elif self.kind in ("int", "float"):
            low, high = self.low, self.high
            if not _is_number(low) or not _is_number(high) or not low <= high:
                raise InvalidValueError(f"dimension {self.name!r}.low/high", "low <= high", (low, high))
            for end, value in (("low", low), ("high", high)):
                if not abs(float(value)) <= MAX_BOUND:  # also refuses nan
                    raise InvalidValueError(
                        f"dimension {self.name!r}.{end}", f"a finite number in [-{MAX_BOUND:g}, {MAX_BOUND:g}]", value
                    )
            if self.kind == "int" and (low != int(low) or high != int(high) or self.step < 1):
                raise InvalidValueError(
                    f"dimension {self.name!r}", "integer low/high and step >= 1", (low, high, self.step)
                )
        else:
            raise InvalidValueError(f"dimension {self.name!r}.kind", "categorical, int or float", self.kind)

    @property
    def numeric(self) -> bool:
        """True when values are numbers (ordinal); False for string categories."""
        return self.kind != "categorical" or _is_number(self.choices[0])

    @property
    def allowed(self) -> str:
        """Human-readable description of the allowed values."""
        if self.kind == "categorical":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "int":
            step = f" in steps of {self.step}" if self.step != 1 else ""
            return f"an integer in [{int(self.low or 0)}, {int(self.high or 0)}]{step}"
        return f"a number in [{self.low}, {self.high}]"

    @property
    def encoding_width(self) -> int:
        """Number of columns this dimension takes in a space's encoding vector."""
        return 1 if self.numeric else len(self.choices)

    def coerce(self, value: Any, owner: str = "") -> Scalar:
        """Return ``value`` in canonical form, or raise :class:`InvalidValueError` naming the field."""
        if self.kind == "categorical":
            for choice in self.choices:  # fast path: the canonical object itself (searches pass these)
                if value is choice:
                    return choice
            if _is_number(value) and self.numeric:
                for choice in self.choices:
                    if math.isclose(float(value), float(choice), rel_tol=0, abs_tol=1e-9):
                        return choice
            elif isinstance(value, str) and not self.numeric and value in self.choices:
                return value
            raise InvalidValueError(f"{owner}.{self.name}" if owner else self.name, self.allowed, value)
        where = f"{owner}.{self.name}" if owner else self.name
        if not _is_number(value) or not math.isfinite(float(value)):
            raise InvalidValueError(where, self.allowed, value)
        assert self.low is not None and self.high is not None
        number = float(value)
        if not self.low <= number <= self.high:
            raise InvalidValueError(where, self.allowed, value)
        if self.kind == "int":
            if number != int(number) or (int(number) - int(self.low)) % self.step:
                raise InvalidValueError(where, self.allowed, value)
            return int(number)
        return number

    def sample(self, rng: np.random.Generator) -> Scalar:
        """Draw a value uniformly at random."""
        if self.kind == "categorical":
            return self.choices[int(rng.integers(len(self.choices)))]
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            n = (int(self.high) - int(self.low)) // self.step + 1
            return int(self.low) + self.step * int(rng.integers(n))
        return float(rng.uniform(self.low, self.high))

    def bounds(self) -> tuple[Scalar, Scalar]:
        """Smallest and largest value (categorical: first and last choice)."""
        if self.kind == "categorical":
            return self.choices[0], self.choices[-1]
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            top = int(self.low) + (int(self.high) - int(self.low)) // self.step * self.step
            return int(self.low), top
        return float(self.low), float(self.high)

    def encode(self, value: Scalar) -> list[float]:
        """Numeric dimensions encode as the value, string categories as one-hot."""
        if self.numeric:
            return [float(value)]
        return [1.0 if value == choice else 0.0 for choice in self.choices]

    def distribution(self) -> BaseDistribution:
        """The matching Optuna distribution."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), step=self.step)
        return FloatDistribution(float(self.low), float(self.high))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high)
            if self.kind == "int":
                out["step"] = self.step
        if self.group:
            out["group"] = self.group
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class SubNetConfig:
    """A validated, immutable SubNet configuration of one space.

    Build it with ``space.validate(...)``. ``key`` is a stable content hash of the space name and all values
    (16 hex digits of SHA-256 over canonical JSON); it is the cache and database key.
    """

    space: str
    items: tuple[tuple[str, Scalar], ...]
    key: str = field(init=False, compare=False, repr=False)
    _index: dict[str, Scalar] = field(init=False, compare=False, repr=False)
    _names: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", dict(self.items))
        object.__setattr__(self, "_names", tuple(self._index))
        object.__setattr__(self, "key", hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16])

    @property
    def values(self) -> dict[str, Scalar]:
        """The values as a new dict, in the space's dimension order."""
        return dict(self.items)

    def __getitem__(self, name: str) -> Scalar:
        return self._index[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    @property
    def names(self) -> tuple[str, ...]:
        """The dimension names, in order."""
        return self._names

    def __len__(self) -> int:
        return len(self.items)

    def canonical_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces) of space and values: what ``key`` hashes."""
        return json.dumps({"space": self.space, "values": self._index}, sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """``{"space": ..., "key": ..., "values": {...}}``."""
        return {"space": self.space, "key": self.key, "values": self.values}


ACTIVATIONS = ("none", "relu", "hswish", "gelu")
OPS = (
    "conv2d",
    "batchnorm",
    "se",
    "add",
    "pool",
    "gap",
    "linear",
    "layernorm",
    "embedding",
    "attention",
    "rmsnorm",
    "rope",
    "swiglu",
)
PHASES = ("", "prefill", "decode")
PHASE_METRICS = phase_metrics()
"""LLM cost metrics → the phase of the LayerSpecs they cover (energy per token: the decode step's energy / batch),
as the metric catalogue declares them (:attr:`hwpareto.metrics.Metric.phase`)."""


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One profiled unit of computation (a kernel in nn-Meter's sense): the op and every shape that changes cost.

    Shapes describe the input tensor: images as ``(cin, h, w)``, token sequences as ``(seq, cin)``. Fields that
    do not apply to an op keep their defaults and are left out of ``key``.

    ops:
      - ``conv2d``: ``cout × cin/groups × kernel²`` conv, padding ``kernel // 2``, optional ``bias``, ``bn`` and
        ``act`` (applied after the BN, or before the conv when ``preact``). Depthwise: ``groups == cin == cout``.
      - ``batchnorm``: BN over ``cin`` channels then ``act``.
      - ``se``: squeeze-excite on ``cin`` channels with ``hidden`` mid channels (GAP, 1×1 conv + ReLU,
        1×1 conv + hard-sigmoid, scale).
      - ``add``: element-wise sum of two tensors of the input shape.
      - ``pool``: average pooling with ``kernel``/``stride`` (padding ``kernel // 2`` when ``stride == 1``).
      - ``gap``: global average pooling.
      - ``linear``: ``cin → cout`` on ``seq`` rows, optional ``bias`` and ``act``.
      - ``layernorm``: over ``cin`` features on ``seq`` rows.
      - ``embedding``: table of ``cin`` rows × ``cout`` features, looked up for ``seq`` tokens.
      - ``attention``: causal scaled-dot-product attention core (Q·Kᵀ, softmax, A·V) for ``heads`` query heads of
        ``hidden`` dims: ``seq`` queries against ``context`` keys (0: ``seq``; the queries are the last ``seq``
        positions, so ``seq == 1`` with a longer ``context`` is one decode step against a KV cache), grouped-query
        with ``kv_heads`` key/value heads (0: ``heads``; a divisor of ``heads``).
      - ``rmsnorm``: RMS norm (scale only) over ``cin`` features on ``seq`` rows.
      - ``rope``: rotary position embedding applied to the ``heads`` query and ``kv_heads`` key heads of
        ``hidden`` dims on ``seq`` rows.
      - ``swiglu``: ``silu(gate) * up`` on ``seq`` rows of ``cin`` features each (the gate and up projections are
        separate ``linear`` specs).

    ``phase`` tags the inference phase of a language model (``prefill`` or ``decode``; empty otherwise), so that
    specs of the two phases never share a LUT key.
    """

    op: str
    cin: int
    cout: int = 0
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    h: int = 1
    w: int = 1
    seq: int = 1
    heads: int = 0
    hidden: int = 0
    act: str = "none"
    preact: bool = False
    bias: bool = False
    bn: bool = False
    kv_heads: int = 0
    context: int = 0
    phase: str = ""
    _key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()
        parts = [
            f"{name}={int(v) if isinstance(v, bool) else v}"
            for name, default in _SPEC_DEFAULTS
            if (v := getattr(self, name)) != default
        ]
        object.__setattr__(self, "_key", f"{self.op}:" + ",".join(parts))

    def _validate(self) -> None:
        if self.op not in OPS:
            raise InvalidValueError("LayerSpec.op", "one of " + ", ".join(OPS), self.op)
        if self.act not in ACTIVATIONS:
            raise InvalidValueError("LayerSpec.act", "one of " + ", ".join(ACTIVATIONS), self.act)
        for name in ("cin", "kernel", "stride", "groups", "h", "w", "seq"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidValueError(f"LayerSpec.{name}", "a positive integer", value)
        if self.phase not in PHASES:
            raise InvalidValueError("LayerSpec.phase", "empty, prefill or decode", self.phase)
        for name in ("cout", "heads", "hidden", "kv_heads", "context"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidValueError(f"LayerSpec.{name}", "a non-negative integer", value)
        if self.op in ("conv2d", "linear", "embedding") and self.cout < 1:
            raise InvalidValueError("LayerSpec.cout", f"a positive integer for op {self.op}", self.cout)
        if self.op == "conv2d" and (self.cin % self.groups or self.cout % self.groups):
            raise InvalidValueError("LayerSpec.groups", "a divisor of cin and cout", self.groups)
        if self.op in ("attention", "rope") and (self.heads < 1 or self.hidden < 1):
            raise InvalidValueError("LayerSpec.heads/hidden", f"positive for op {self.op}", (self.heads, self.hidden))
        if self.kv_heads and (self.op not in ("attention", "rope") or self.heads % self.kv_heads):
            raise InvalidValueError(
                "LayerSpec.kv_heads", "0, or a divisor of heads for ops attention and rope", self.kv_heads
            )
        if self.context and (self.op != "attention" or self.context < self.seq):
            raise InvalidValueError("LayerSpec.context", "0, or at least seq for op attention", self.context)
        if self.op == "se" and self.hidden < 1:
            raise InvalidValueError("LayerSpec.hidden", "positive for op se", self.hidden)

    @property
    def key(self) -> str:
        """Stable, readable LUT key: op then every non-default field, e.g. ``conv2d:cin=16,cout=32,...``."""
        return self._key

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output spatial size for convs and pools (same padding); input size otherwise."""
        if self.op == "conv2d" or (self.op == "pool" and self.stride == 1):
            pad = self.kernel // 2
            return (
                (self.h + 2 * pad - self.kernel) // self.stride + 1,
                (self.w + 2 * pad - self.kernel) // self.stride + 1,
            )
        if self.op == "pool":
            return (self.h - self.kernel) // self.stride + 1, (self.w - self.kernel) // self.stride + 1
        if self.op == "gap":
            return 1, 1
        return self.h, self.w

    @property
    def params(self) -> int:
        """Number of learned parameters of this unit."""
        if self.op == "conv2d":
            n = self.cout * (self.cin // self.groups) * self.kernel * self.kernel
            return n + (self.cout if self.bias else 0) + (2 * self.cout if self.bn else 0)
        if self.op == "batchnorm" or self.op == "layernorm":
            return 2 * self.cin
        if self.op == "rmsnorm":
            return self.cin
        if self.op == "se":
            return 2 * self.cin * self.hidden + self.hidden + self.cin
        if self.op == "linear":
            return self.cin * self.cout + (self.cout if self.bias else 0)
        if self.op == "embedding":
            return self.cin * self.cout
        return 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the matrix parts (convs, linears, SE convs, attention matmuls)."""
        if self.op == "conv2d":
            oh, ow = self.out_hw
            return self.cout * (self.cin // self.groups) * self.kernel * self.kernel * oh * ow
        if self.op == "se":
            return 2 * self.cin * self.hidden
        if self.op == "linear":
            return self.seq * self.cin * self.cout
        if self.op == "attention":
            return 2 * self.heads * self.seq * (self.context or self.seq) * self.hidden
        return 0

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready."""
        return {"op": self.op, **{name: getattr(self, name) for name, _ in _SPEC_DEFAULTS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`InvalidValueError`."""
        known = {"op", *(name for name, _ in _SPEC_DEFAULTS)}
        extra = sorted(set(data) - known)
        if extra:
            raise InvalidValueError("LayerSpec", "fields " + ", ".join(sorted(known)), extra)
        if "op" not in data or "cin" not in data:
            raise InvalidValueError("LayerSpec", "at least fields op and cin", sorted(data))
        return cls(**dict(data))


_SPEC_DEFAULTS = tuple((f.name, f.default) for f in fields(LayerSpec) if f.init and f.name != "op")


def unique_layers(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Distinct specs in first-seen order."""
    return list(dict.fromkeys(specs))
