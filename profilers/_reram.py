"""The ``reram`` backend: an analytical ReRAM crossbar compute-in-memory model (NeuroSim/ISAAC style).

Every figure is a device parameter (:class:`ReRAMParams`; the defaults are the ``cim-reram`` preset, whose YAML
gives the source of each number). Units: pJ, ns, GHz; outputs in ms and mJ (mW·ns = pJ).

Notation: crossbars of ``R × C`` cells (``xbar_rows × xbar_cols``); ``cpw = ⌈weight_bits / bits_per_cell⌉``
cells per weight, side by side on one row; ``S = ⌈input_bits / bits_per_input_slice⌉`` input slices streamed
bit-serially; ``V`` input vectors (conv: ``oh·ow·batch``; linear: ``seq·batch``; the two 1×1 convs of ``se``:
``batch``); ``f = digital_clock_ghz``. Weights are stored offset-encoded on one cell column per weight slice (no
differential pairs).

Mapping a weight matrix of ``g`` groups, each ``r = (cin/g)·k²`` rows × ``c = (cout/g)·cpw`` columns:

- tiled (dense, or a group larger than a crossbar): ``rt = ⌈r/R⌉`` row tiles × ``ct = ⌈c/C⌉`` column tiles per
  group, ``X = g·rt·ct`` crossbars;
- packed (``g > 1``, ``r ≤ R`` and ``c ≤ C``): ``P = min(⌊R/r⌋, ⌊C/c⌋)`` groups share a crossbar as diagonal
  blocks (off-diagonal cells hold zero conductance), ``X = ⌈g/P⌉``, ``rt = ct = 1``. A depthwise 3×3 conv with
  ``cpw = 4`` fills only ``P·9·4`` of the ``R·C`` cells (14·36/16384 ≈ 3 % at 128×128), and each converted
  column sums only 9 products instead of up to 128, so its DAC and ADC energy per MAC is up to 14× a dense
  conv's (about 8× overall against a dense 3×3 conv of equal MACs with the preset);
- utilisation ``U = g·r·c / (X·R·C)``.

Per input vector and slice every one of the ``X`` crossbars performs one MVM; with ``D = g·r·ct`` rows driven,
``A = g·c·rt`` columns converted and ``M = g·r·c`` programmed cells, the layer costs

- ``E_array = V·S·(xbar_read_pj·M/(R·C) + dac_pj_per_row·D)``: cell read energy scales with the cells used
  (``xbar_read_pj`` is a full-array read), plus one 1-bit DAC/row driver per driven row;
- ``E_adc = V·S·A·adc_pj_per_conversion``: one conversion per active column per MVM;
- ``E_shift_add = V·S·A·shift_add_pj``: each ADC output is shifted by its input-slice and weight-slice position
  and added into its output register (bit-slice and weight-column merging);
- ``E_accumulation = N_acc·accum_pj_per_add`` with ``N_acc = V·cout·(rt − 1)`` full-precision adds merging the
  partial sums of the row tiles; they run on the vector unit: ``T_acc = ⌈N_acc / vector_lanes⌉ / f``;
- ``E_buffer = (input + output activation bytes)·buffer_pj_per_byte``, activations of ``input_bits`` each, every
  tensor moved once (sliding-window reuse in the input registers); overlapped with the crossbar steps;
- ``T_xbar = V·S·(xbar_read_ns + min(adc_share, a)·adc_conversion_ns)``: crossbars of a layer work in parallel,
  MVM steps are sequential, and each step is a read followed by the conversions of the busiest ADC, which
  serves ``min(adc_share, a)`` columns (``a`` = active columns of the fullest crossbar: ``min(c, C)`` tiled,
  ``min(g, P)·c`` packed). Read and conversion are not pipelined (as in NeuroSim's read latency; ISAAC overlaps
  them, so this is conservative by up to 2×).

The ADC energy is counted only in ``adc``: the ISAAC figures list crossbar, DAC, S+H and ADC power separately, so
``array`` (cells + DACs) and ``adc`` do not overlap. One full 128×128 MVM with the preset costs 30 + 50 + 200 +
2.7 ≈ 283 pJ, within 3 % of the PUMA simulator's lumped crossbar inner-product figure (2 × 1.37 mW over 100 ns =
274 pJ, peripherals and ADCs included). NeuroSim instead folds the cell current into its ADC/sense-amp column
power: with NeuroSim-derived ADC figures set ``xbar_read_pj`` to 0.

A layer needing more than ``max_crossbars`` crossbars raises :class:`UnmappableLayerError`: weights are
stationary (reprogramming ReRAM per inference would cost write energy, µs-scale writes and endurance).
:meth:`ReRAMBackend.measure_subnet` reports the SubNet's resident footprint (``crossbars``, ``fits_on_chip``).

Digital fallbacks (marked in ``Cost.details["fallback"]``):

- attention (Q·Kᵀ and A·V: both operands change at run time, so they cannot be stored in ReRAM) runs on a
  digital MAC unit, ``T = ⌈macs / fallback_macs_per_cycle⌉ / f``, ``E = macs·fallback_pj_per_mac`` with
  ``macs = 2·heads·seq·context·hidden·batch``; its softmax (``5`` ops per score: max, subtract, exp, sum, scale)
  runs on the vector unit; Q, K, V are read and the output written once;
- ops without weights (add, pool, gap, batchnorm, layernorm, rmsnorm, rope, swiglu, the se GAP/activations/scale,
  conv and linear bias/BN/activation post-ops) run on a vector unit of ``vector_lanes`` lanes:
  ``T = max(⌈ops / vector_lanes⌉, ⌈bytes / buffer_bytes_per_cycle⌉) / f``,
  ``E = ops·vector_pj_per_op + bytes·buffer_pj_per_byte``, with the ops and the elements moved of the shared
  vector-unit model (:mod:`profilers._vector`; activations at ``input_bits``, weights at ``weight_bits``);
- embedding lookups are reads of ``seq·cout`` table weights into the activations, one vector op per value.

Latency is the sum of the stages (``crossbar``, ``accumulation``, ``vector``, ``fallback``; no overlap between
them); ``E_leakage = leakage_mw·latency_ns``. ``Cost.details`` holds ``energy_pj`` per component (array, adc,
shift_add, accumulation, buffer, vector, fallback, leakage), ``latency_ns`` per stage and the mapping.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hwpareto.errors import InvalidValueError
from profilers._base import Backend, Cost, DeviceSpec, UnmappableLayerError, param
from profilers._vector import attention_operands, vector_work
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["MODEL_VERSION", "ReRAMBackend", "ReRAMParams"]

MODEL_VERSION = "hwpareto-reram-1"
COMPONENTS = ("array", "adc", "shift_add", "accumulation", "buffer", "vector", "fallback", "leakage")
STAGES = ("crossbar", "accumulation", "vector", "fallback")

_FALLBACK_ATTENTION = "digital MAC unit: Q·Kᵀ and A·V operands change at run time and cannot be stored in ReRAM"
_FALLBACK_VECTOR = "vector unit: op without weights"
_FALLBACK_EMBEDDING = "buffer read: embedding lookup"


@dataclass(frozen=True, slots=True)
class ReRAMParams:
    """The model's parameters; defaults are the ``cim-reram`` preset (ISAAC, 32 nm; sources in its YAML)."""

    xbar_rows: int = 128
    xbar_cols: int = 128
    bits_per_cell: int = 2
    weight_bits: int = 8
    input_bits: int = 8
    bits_per_input_slice: int = 1
    adc_share: int = 128
    max_crossbars: int = 16128
    xbar_read_pj: float = 30.0
    xbar_read_ns: float = 100.0
    dac_pj_per_row: float = 0.390625
    adc_pj_per_conversion: float = 1.5625
    adc_conversion_ns: float = 0.78125
    shift_add_pj: float = 0.021
    accum_pj_per_add: float = 0.0711
    buffer_pj_per_byte: float = 0.639
    buffer_bytes_per_cycle: int = 32
    digital_clock_ghz: float = 1.2
    vector_lanes: int = 32
    vector_pj_per_op: float = 0.2844
    fallback_macs_per_cycle: int = 256
    fallback_pj_per_mac: float = 0.2133
    leakage_mw: float = 0.0

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any], owner: str = "params") -> ReRAMParams:
        """Validate ``params`` (unknown keys, types, ranges) with errors naming ``<owner>.<field>``."""
        known = [f.name for f in fields(cls)]
        for name in params:
            if name not in known:
                raise InvalidValueError(
                    f"{owner}.{name}", "a parameter of backend reram: " + ", ".join(known), params[name]
                )
        values: dict[str, Any] = {}
        for f in fields(cls):
            if type(f.default) is int:
                high = 16 if f.name.endswith("bits") or f.name.startswith("bits_") else None
                values[f.name] = param(params, f.name, int, f.default, low=1, high=high, owner=owner)
            elif f.name == "digital_clock_ghz":
                values[f.name] = param(params, f.name, float, f.default, low=1e-6, owner=owner)
            else:
                values[f.name] = param(params, f.name, float, f.default, low=0.0, owner=owner)
        return cls(**values)

    @property
    def cells_per_weight(self) -> int:
        return math.ceil(self.weight_bits / self.bits_per_cell)

    @property
    def input_slices(self) -> int:
        return math.ceil(self.input_bits / self.bits_per_input_slice)

    @property
    def act_bytes(self) -> float:
        return self.input_bits / 8


@dataclass(slots=True)
class _Tally:
    """Energy (pJ) per component, latency (ns) per stage and mapping records of one layer."""

    energy_pj: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    latency_ns: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    matrices: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int | float] = field(default_factory=lambda: {"vector_ops": 0, "fallback_macs": 0})


class ReRAMBackend(Backend):
    """Analytical ReRAM crossbar CIM accelerator (see the module docstring for every formula)."""

    name = "reram"
    kinds = ("cim",)
    measures = False
    parallel = False

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        self.p = ReRAMParams.from_mapping(device.params, owner=f"device {device.name!r} params")

    # ------------------------------------------------------------------ building blocks
    def _crossbar(self, t: _Tally, rows: int, cols: int, groups: int, vectors: int) -> None:
        """Map ``groups`` matrices of ``rows × cols`` weights and stream ``vectors`` inputs through them."""
        p = self.p
        r, c = rows, cols * p.cells_per_weight
        R, C = p.xbar_rows, p.xbar_cols
        if groups > 1 and r <= R and c <= C:
            per_xbar = min(R // r, C // c)
            rt = ct = 1
            crossbars = math.ceil(groups / per_xbar)
            busiest = min(groups, per_xbar) * c
        else:
            per_xbar = 1
            rt, ct = math.ceil(r / R), math.ceil(c / C)
            crossbars = groups * rt * ct
            busiest = min(c, C)
        steps = vectors * p.input_slices
        driven, converted, cells = groups * r * ct, groups * c * rt, groups * r * c
        conversions = steps * converted
        adds = vectors * groups * cols * (rt - 1)
        step_ns = p.xbar_read_ns + min(p.adc_share, busiest) * p.adc_conversion_ns
        t.energy_pj["array"] += steps * (p.xbar_read_pj * cells / (R * C) + p.dac_pj_per_row * driven)
        t.energy_pj["adc"] += conversions * p.adc_pj_per_conversion
        t.energy_pj["shift_add"] += conversions * p.shift_add_pj
        t.energy_pj["accumulation"] += adds * p.accum_pj_per_add
        t.latency_ns["crossbar"] += steps * step_ns
        t.latency_ns["accumulation"] += math.ceil(adds / p.vector_lanes) / p.digital_clock_ghz
        t.matrices.append(
            {
                "rows": r,
                "cols": c,
                "groups": groups,
                "groups_per_crossbar": per_xbar,
                "row_tiles": rt,
                "col_tiles": ct,
                "crossbars": crossbars,
                "utilisation": cells / (crossbars * R * C),
                "mvms": steps * crossbars,
                "adc_conversions": conversions,
                "accumulation_adds": adds,
                "step_ns": step_ns,
                "cells": cells,
            }
        )

    def _vector(self, t: _Tally, ops: float, nbytes: float) -> None:
        """``ops`` element operations on the vector unit streaming ``nbytes`` through the buffer."""
        p = self.p
        t.energy_pj["vector"] += ops * p.vector_pj_per_op
        t.energy_pj["buffer"] += nbytes * p.buffer_pj_per_byte
        cycles = max(math.ceil(ops / p.vector_lanes), math.ceil(nbytes / p.buffer_bytes_per_cycle))
        t.latency_ns["vector"] += cycles / p.digital_clock_ghz
        t.counts["vector_ops"] += ops

    def _fallback(self, t: _Tally, macs: int) -> None:
        p = self.p
        t.energy_pj["fallback"] += macs * p.fallback_pj_per_mac
        t.latency_ns["fallback"] += math.ceil(macs / p.fallback_macs_per_cycle) / p.digital_clock_ghz
        t.counts["fallback_macs"] += macs

    # ------------------------------------------------------------------ Backend API
    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        """Cost of ``spec`` at ``batch``; raises :class:`UnmappableLayerError` when its weights need more than
        ``max_crossbars`` crossbars."""
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InvalidValueError("batch", "a positive integer", batch)
        p, t = self.p, _Tally()
        ab = p.act_bytes
        n = spec.cin * spec.h * spec.w * spec.seq * batch  # input elements
        work = vector_work(spec, batch)
        moved = work.nbytes(ab, p.weight_bits / 8)
        fallback: str | None = None
        if spec.op == "conv2d":
            oh, ow = spec.out_hw
            out = spec.cout * oh * ow * batch
            g = spec.groups
            self._crossbar(t, spec.cin // g * spec.kernel**2, spec.cout // g, g, oh * ow * batch)
            t.energy_pj["buffer"] += (n + out) * ab * p.buffer_pj_per_byte
        elif spec.op == "linear":
            out = spec.seq * spec.cout * batch
            self._crossbar(t, spec.cin, spec.cout, 1, spec.seq * batch)
            t.energy_pj["buffer"] += (n + out) * ab * p.buffer_pj_per_byte
        elif spec.op == "se":
            self._crossbar(t, spec.cin, spec.hidden, 1, batch)
            self._crossbar(t, spec.hidden, spec.cin, 1, batch)
        elif spec.op == "attention":
            fallback = _FALLBACK_ATTENTION
            self._fallback(t, spec.macs * batch)
            moved += attention_operands(spec, batch) * ab
        else:
            fallback = _FALLBACK_EMBEDDING if spec.op == "embedding" else _FALLBACK_VECTOR
        if work.ops or moved:
            self._vector(t, work.ops, moved)
        crossbars = sum(m["crossbars"] for m in t.matrices)
        if crossbars > p.max_crossbars:
            raise UnmappableLayerError(
                self.name,
                spec,
                f"needs {crossbars} crossbars of {p.xbar_rows}×"
                f"{p.xbar_cols}, the chip has max_crossbars = {p.max_crossbars}",
            )
        latency_ns = sum(t.latency_ns.values())
        t.energy_pj["leakage"] = p.leakage_mw * latency_ns
        details: dict[str, Any] = {
            "model": MODEL_VERSION,
            "mapping": "crossbar" if t.matrices else "digital",
            "fallback": fallback,
            "energy_pj": t.energy_pj,
            "latency_ns": t.latency_ns,
            "crossbars": crossbars,
            "macs": spec.macs * batch,
            **t.counts,
        }
        if t.matrices:
            cells = sum(m["cells"] for m in t.matrices)
            details.update(
                utilisation=cells / (crossbars * p.xbar_rows * p.xbar_cols),
                matrices=t.matrices,
                mvms=sum(m["mvms"] for m in t.matrices),
                adc_conversions=sum(m["adc_conversions"] for m in t.matrices),
            )
        return Cost(latency_ns * 1e-6, 0.0, sum(t.energy_pj.values()) * 1e-9, 0.0, 1, details)

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        """Sum of :meth:`measure_layer` over ``space.layers(config)`` (each distinct layer once, × its count);
        details add the per-component energy, the resident crossbar footprint and whether it fits the chip."""
        latency_ms = energy_mj = 0.0
        energy_pj = dict.fromkeys(COMPONENTS, 0.0)
        crossbars = fallback_layers = 0
        layers = space.layers(config)
        counts = Counter(layers)
        for spec, count in counts.items():
            cost = self.measure_layer(spec, batch)
            latency_ms += count * cost.latency_ms
            energy_mj += count * (cost.energy_mj or 0.0)
            for k, v in cost.details["energy_pj"].items():
                energy_pj[k] += count * v
            crossbars += count * cost.details["crossbars"]
            fallback_layers += count if cost.details["fallback"] else 0
        details = {
            "model": MODEL_VERSION,
            "energy_pj": energy_pj,
            "crossbars": crossbars,
            "fits_on_chip": crossbars <= self.p.max_crossbars,
            "layers": len(layers),
            "distinct_layers": len(counts),
            "fallback_layers": fallback_layers,
        }
        return Cost(latency_ms, 0.0, energy_mj, 0.0, 1, details)

    def describe(self) -> dict[str, Any]:
        """Model version, device, every resolved parameter and the cited references."""
        return {
            "backend": self.name,
            "model": MODEL_VERSION,
            "device": self.device.name,
            "description": self.device.description,
            "params": asdict(self.p),
            "references": list(self.device.references),
        }
