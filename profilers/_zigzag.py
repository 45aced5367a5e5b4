"""The ``zigzag`` backend: simulated NPUs (systolic arrays) and SRAM in-memory-computing (CIM) macros, through the
ZigZag design-space explorer (``zigzag-dse``, Mei et al., IEEE TC 2021; IMC cost model of Sun, Houshmand and
Verhelst, ICCAD 2023).

A device names a ZigZag hardware description and mapping (``params.hardware``/``params.mapping``: a preset under
``data/devices/zigzag/{hardware,mapping}/`` or a path to a ``.yaml``) and the figures of the parts ZigZag does not
model. ``b = precision_bits / 8`` bytes per activation, ``N`` = batch, ``n = N·cin·h·w·seq`` input elements,
``f = clock_ghz``. The parts run one after the other (no overlap):
``latency_ms = (zigzag_cycles + vector_cycles + fallback_cycles) / (f·10⁶)``, energy the sum of the parts (pJ).

MAC layers are written straight into ZigZag's workload format (``W`` and ``I`` at ``precision_bits``, partial sums
at twice that) and simulated as one workload per :class:`~supernet.LayerSpec`:

- ``conv2d``: ``O[b][g][k][oy][ox] += W[g][k][c][fy][fx]·I[b][g][c][iy][ix]`` with ``B = N``, ``G = groups``,
  ``K = cout/G``, ``C = cin/G``, ``ix = stride·ox + fx`` and ``kernel // 2`` padding on each side (depthwise:
  ``K = C = 1``, ``G = cin``);
- ``linear``: GEMM ``O[d][k] += I[d][c]·W[c][k]``, ``D = N·seq`` rows, ``C = cin``, ``K = cout``;
- ``se``: two chained GEMMs on ``D = N`` rows (``cin → hidden``, ``hidden → cin``);
- ``attention`` (NPU): two chained matmuls with run-time operands, ``O[h][d][k] += I[h][d][c]·W[h][c][k]`` with
  ``H = N·heads`` and ``D = seq``: Q·Kᵀ (``C = hidden``, ``K = seq``) then A·V (``C = seq``, ``K = hidden``); the
  causal mask is ignored (full score matrix, as :attr:`~supernet.LayerSpec.macs` counts it).

ZigZag looks a layer's mapping entry up by its name (``conv2d``, ``linear``, ``se_reduce``, ``se_expand``,
``attention_qk``, ``attention_av``), then by operator type (``Conv``, ``Gemm``), then ``default``. The search
composes ZigZag's stages without its save/visualisation stages (nothing is written): spatial mappings from the
mapping's hints (``spatial_mappings`` best by ZigZag's utilisation indicator, ``mix_spatial_mapping``), LOMA
temporal mappings with ``lpf_limit`` loop prime factors, of which at most ``temporal_orderings`` loop orderings
are evaluated (a fixed-seed random sample when there are more, so results are deterministic), the best mapping
by ``opt`` (latency, energy or EDP). ``exploit_data_locality`` adds ZigZag's inter-layer data-locality stages:
activations (and weights, where they fit a memory serving the whole array) start and end in the lowest memory
that holds them instead of DRAM (per layer, so a whole network's weights are assumed resident if each layer's
are). ``zigzag_cycles`` is ZigZag's ``latency_total2`` (stalls, on/off-loading and systolic drain included); on
CIM macros it counts bit-serial array cycles, so ``clock_ghz`` should match the macro clock ZigZag models
(``1/tclk``, reported in ``Cost.details["tclk_ns"]``).

Parts ZigZag does not model (it simulates MAC layers only), on a vector unit of ``vector_lanes`` lanes:
``vector_cycles = ⌈ops / vector_lanes⌉``, ``E = ops·vector_pj_per_op + bytes·dram_pj_per_byte``, with the ops and
the elements moved (at ``b`` bytes, weights included) of the shared vector-unit model, :mod:`profilers._vector`.

On CIM devices (``in_memory_compute``) both operands of Q·Kᵀ and A·V change at run time and cannot be stored in
the array: attention matmuls run on a digital MAC array, ``fallback_cycles = ⌈macs / fallback_macs_per_cycle⌉``,
``E = macs·fallback_pj_per_mac + 2·N·(heads·seq + kv_heads·context)·hidden·b·dram_pj_per_byte`` (Q, K, V
read, output written),
marked in ``Cost.details["fallback"]``; with ``fallback_macs_per_cycle = 0`` attention is unmappable.

Layers with an operand larger than the largest memory holding it, or for which LOMA finds no valid loop
ordering, raise :class:`UnmappableLayerError`; any other ZigZag failure raises :class:`SimulatorError`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.safeload import parse_yaml, read_bytes
from profilers._base import Backend, Cost, DeviceSpec, SimulatorError, UnmappableLayerError, param
from profilers._devices import PRESETS_DIR
from profilers._vector import attention_operands, vector_work
from supernet import LayerSpec, SearchSpace, SubNetConfig

__all__ = ["ZIGZAG_DIR", "ZigZagBackend"]

ZIGZAG_DIR = PRESETS_DIR / "zigzag"
OPTS = ("latency", "energy", "edp")
COMPONENTS = ("zigzag_mac", "zigzag_memory", "vector", "fallback", "dram")
STAGES = ("zigzag", "vector", "fallback")
PARAMS = (
    "hardware",
    "mapping",
    "clock_ghz",
    "in_memory_compute",
    "exploit_data_locality",
    "mix_spatial_mapping",
    "precision_bits",
    "opt",
    "lpf_limit",
    "spatial_mappings",
    "temporal_orderings",
    "vector_lanes",
    "vector_pj_per_op",
    "dram_pj_per_byte",
    "fallback_macs_per_cycle",
    "fallback_pj_per_mac",
)

SAMPLE_SEED = 0  # seed of the loop-ordering sample

_FALLBACK_ATTENTION = "digital MAC array: Q·Kᵀ and A·V operands change at run time, the CIM array cannot store them"
_FALLBACK_VECTOR = "vector unit: op without MACs (ZigZag simulates MAC layers only)"
_CONV = "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]"
_GEMM = "O[d][k]+=I[d][c]*W[c][k]"
_MATMUL = "O[h][d][k]+=I[h][d][c]*W[h][c][k]"


class ZigZagBackend(Backend):
    """NPU and SRAM-CIM devices simulated layer by layer with ZigZag (formulas in the module docstring)."""

    name = "zigzag"
    kinds = ("npu", "cim")
    measures = False
    parallel = True

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        p, owner = device.params, f"device {device.name!r} params"
        for key in p:
            if key not in PARAMS:
                raise InvalidValueError(f"{owner}.{key}", "a parameter of backend zigzag: " + ", ".join(PARAMS), p[key])
        self.hardware = _resolve(p, "hardware", owner)
        self.mapping = _resolve(p, "mapping", owner)
        self.clock_ghz: float = param(p, "clock_ghz", float, None, low=1e-3, high=100.0, owner=owner)
        self.in_memory_compute: bool = param(p, "in_memory_compute", bool, False, owner=owner)
        self.exploit_data_locality: bool = param(p, "exploit_data_locality", bool, self.in_memory_compute, owner=owner)
        self.mix_spatial_mapping: bool = param(p, "mix_spatial_mapping", bool, True, owner=owner)
        self.precision_bits: int = param(p, "precision_bits", int, 8, low=1, high=32, owner=owner)
        self.opt: str = param(p, "opt", str, "latency", owner=owner)
        if self.opt not in OPTS:
            raise InvalidValueError(f"{owner}.opt", "one of " + ", ".join(OPTS), self.opt)
        self.lpf_limit: int = param(p, "lpf_limit", int, 6, low=1, high=12, owner=owner)
        self.spatial_mappings: int = param(p, "spatial_mappings", int, 1, low=1, high=100, owner=owner)
        self.temporal_orderings: int = param(p, "temporal_orderings", int, 60, low=1, high=100_000, owner=owner)
        self.vector_lanes: int = param(p, "vector_lanes", int, None, low=1, owner=owner)
        self.vector_pj_per_op: float = param(p, "vector_pj_per_op", float, None, low=0.0, owner=owner)
        self.dram_pj_per_byte: float = param(p, "dram_pj_per_byte", float, None, low=0.0, owner=owner)
        self.fallback_macs_per_cycle: int = param(p, "fallback_macs_per_cycle", int, 0, low=0, owner=owner)
        self.fallback_pj_per_mac: float = param(p, "fallback_pj_per_mac", float, 0.0, low=0.0, owner=owner)
        self.hardware_doc, self.hardware_sha256 = _load(self.hardware, "hardware", owner, p["hardware"])
        self.mapping_doc, self.mapping_sha256 = _load(self.mapping, "mapping", owner, p["mapping"])
        array = self.hardware_doc["operational_array"]
        self.is_imc: bool = bool(array.get("is_imc", False))
        if self.is_imc != self.in_memory_compute:
            raise InvalidValueError(
                f"{owner}.in_memory_compute",
                f"{self.is_imc} for hardware {Path(self.hardware).name} (its operational_array.is_imc)",
                self.in_memory_compute,
            )
        if self.is_imc and list(array["input_precision"]) != [self.precision_bits] * 2:
            raise InvalidValueError(
                f"{owner}.precision_bits",
                f"the input precision {array['input_precision']} of CIM array {Path(self.hardware).name}",
                self.precision_bits,
            )
        self.pes: int = math.prod(array["sizes"])

    # ------------------------------------------------------------------ workload
    def _precision(self) -> dict[str, int]:
        b = self.precision_bits
        return {"W": b, "I": b, "O": 2 * b, "O_final": b}

    def _conv(self, spec: LayerSpec, batch: int) -> dict[str, Any]:
        g, k, s, pad = spec.groups, spec.kernel, spec.stride, spec.kernel // 2
        oh, ow = spec.out_hw
        return {
            "id": 0,
            "name": "conv2d",
            "operator_type": "Conv",
            "equation": _CONV,
            "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
            "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
            "loop_sizes": [batch, spec.cout // g, g, ow, oh, spec.cin // g, k, k],
            "operand_precision": self._precision(),
            "operand_source": {"W": 0},
            "pr_loop_dims": ["IX", "IY"],
            "pr_loop_sizes": [spec.w, spec.h],
            "padding": [[pad, pad], [pad, pad]],
        }

    def _gemm(self, layer_id: int, name: str, rows: int, cin: int, cout: int) -> dict[str, Any]:
        source = {"W": layer_id} | ({"I": layer_id - 1} if layer_id else {})
        return {
            "id": layer_id,
            "name": name,
            "operator_type": "Gemm",
            "equation": _GEMM,
            "dimension_relations": [],
            "loop_dims": ["D", "C", "K"],
            "loop_sizes": [rows, cin, cout],
            "operand_precision": self._precision(),
            "operand_source": source,
        }

    def _matmul(self, layer_id: int, name: str, heads: int, rows: int, inner: int, cols: int) -> dict[str, Any]:
        return {
            "id": layer_id,
            "name": name,
            "operator_type": "Gemm",
            "equation": _MATMUL,
            "dimension_relations": [],
            "loop_dims": ["H", "D", "C", "K"],
            "loop_sizes": [heads, rows, inner, cols],
            "operand_precision": self._precision(),
            "operand_source": {"I": layer_id - 1} if layer_id else {},
        }

    # ------------------------------------------------------------------ simulation
    def _simulate(self, spec: LayerSpec, layers: list[dict[str, Any]]) -> list[Any]:
        """Run ZigZag on ``layers`` (one workload) and return its best cost-model evaluation per layer."""
        zz = _zigzag()
        with _zigzag_logs() as messages:
            try:
                accelerator = zz.AcceleratorFactory(zz.AcceleratorValidator(self.hardware_doc).normalized_data).create()
                mapping = zz.MappingValidator(self.mapping_doc).normalized_data
                validator = zz.WorkloadValidator(layers)
                if not validator.validate():
                    raise ValueError("invalid workload")
                workload = zz.WorkloadFactory(validator.normalized_data, mapping).create()
            except Exception as exc:
                raise _failure(spec, exc, messages) from exc
            self._check_fits(spec, accelerator, workload)
            locality = [zz.SearchInterLayerDataLocalityStage] if self.exploit_data_locality else []
            exploit = [zz.ExploitInterLayerDataLocalityStage] if self.exploit_data_locality else []
            reduce = {"latency": zz.MinimalLatencyStage, "energy": zz.MinimalEnergyStage, "edp": zz.MinimalEDPStage}[
                self.opt
            ]
            stages = [
                *locality,
                zz.WorkloadStage,
                *exploit,
                reduce,
                zz.SpatialMappingGeneratorStage,
                reduce,
                zz.SampledTemporalMappingStage,
                zz.CostModelStage,
            ]
            try:
                results = zz.MainStage(
                    stages,
                    accelerator=accelerator,
                    workload=workload,
                    loma_lpf_limit=self.lpf_limit,
                    loma_show_progress_bar=False,
                    nb_mappings_generated=self.spatial_mappings,
                    enable_mix_spatial_mapping_generation=self.mix_spatial_mapping,
                    access_same_data_considered_as_no_access=True,
                    temporal_mapping_type=zz.TemporalMappingType("uneven"),
                    temporal_orderings=self.temporal_orderings,
                ).run()
            except zz.NoValidLoopOrderingFoundException as exc:
                raise UnmappableLayerError(self.name, spec, _first_line(exc)) from None
            except Exception as exc:
                raise _failure(spec, exc, messages) from exc
        return [cme for cme, _ in results]

    def _check_fits(self, spec: LayerSpec, accelerator: Any, workload: Any) -> None:
        """Unmappable when an operand exceeds the largest memory that holds it (ZigZag would fail obscurely)."""
        for layer in workload.layer_node_list:
            for layer_op in layer.layer_operands:
                mem_op = layer.memory_operand_links.layer_to_mem_op(layer_op)
                levels = accelerator.memory_hierarchy.get_memory_levels(mem_op)
                top = max((level.memory_instance for level in levels), key=lambda m: m.size)
                bits = layer.operand_size_bit[layer_op]
                if bits > top.size:
                    raise UnmappableLayerError(
                        self.name,
                        spec,
                        f"operand {layer_op} of {layer.name} needs {bits} "
                        f"bits, more than its largest memory {top.name} holds ({top.size})",
                    )

    # ------------------------------------------------------------------ Backend API
    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        """Cost of ``spec`` at ``batch``: ZigZag for the MAC parts, the vector unit (and on CIM the digital MAC
        array for attention) for the rest."""
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InvalidValueError("batch", "a positive integer", batch)
        ab = self.precision_bits / 8
        work = vector_work(spec, batch)
        vector_ops, vector_bytes = work.ops, work.nbytes(ab, ab)
        layers: list[dict[str, Any]] = []
        fallback_macs, fallback_bytes = 0, 0.0
        fallback: str | None = None
        if spec.op == "conv2d":
            layers = [self._conv(spec, batch)]
        elif spec.op == "linear":
            layers = [self._gemm(0, "linear", spec.seq * batch, spec.cin, spec.cout)]
        elif spec.op == "se":
            layers = [
                self._gemm(0, "se_reduce", batch, spec.cin, spec.hidden),
                self._gemm(1, "se_expand", batch, spec.hidden, spec.cin),
            ]
        elif spec.op == "attention":
            if not self.in_memory_compute:
                heads, ctx = batch * spec.heads, spec.context or spec.seq
                layers = [
                    self._matmul(0, "attention_qk", heads, spec.seq, spec.hidden, ctx),
                    self._matmul(1, "attention_av", heads, spec.seq, ctx, spec.hidden),
                ]
            elif self.fallback_macs_per_cycle:
                fallback = _FALLBACK_ATTENTION
                fallback_macs = spec.macs * batch
                fallback_bytes = attention_operands(spec, batch) * ab
            else:
                raise UnmappableLayerError(
                    self.name,
                    spec,
                    "Q·Kᵀ and A·V operands change at run time and cannot be "
                    "stored in the CIM array, and the device has no digital fallback "
                    "(params.fallback_macs_per_cycle is 0)",
                )
        else:
            fallback = _FALLBACK_VECTOR
        cmes = self._simulate(spec, layers) if layers else []
        zz_cycles = sum(float(c.latency_total2) for c in cmes)
        zz_macs = sum(int(c.layer.total_mac_count) for c in cmes)
        cycles = {
            "zigzag": zz_cycles,
            "vector": math.ceil(vector_ops / self.vector_lanes),
            "fallback": math.ceil(fallback_macs / self.fallback_macs_per_cycle) if fallback_macs else 0,
        }
        energy_pj = {
            "zigzag_mac": sum(float(c.mac_energy) for c in cmes),
            "zigzag_memory": sum(float(c.mem_energy) for c in cmes),
            "vector": vector_ops * self.vector_pj_per_op,
            "fallback": fallback_macs * self.fallback_pj_per_mac,
            "dram": (vector_bytes + fallback_bytes) * self.dram_pj_per_byte,
        }
        total_cycles = sum(cycles.values())
        details: dict[str, Any] = {
            "simulator": "zigzag",
            "mapping": "zigzag" if cmes else "digital",
            "fallback": fallback,
            "cycles": total_cycles,
            "cycles_by_stage": cycles,
            "clock_ghz": self.clock_ghz,
            "energy_pj": energy_pj,
            "macs": spec.macs * batch,
            "zigzag_macs": zz_macs,
            "pes": self.pes,
            "utilisation": zz_macs / (self.pes * zz_cycles) if zz_cycles else None,
            "vector_ops": vector_ops,
            "dram_bytes": vector_bytes + fallback_bytes,
            "fallback_macs": fallback_macs,
            "zigzag_layers": [
                {
                    "name": c.layer.name,
                    "macs": int(c.layer.total_mac_count),
                    "cycles": float(c.latency_total2),
                    "ideal_cycles": float(c.ideal_cycle),
                    "spatial_mapping": str(c.layer.spatial_mapping),
                    "mac_energy_pj": float(c.mac_energy),
                    "memory_energy_pj": float(c.mem_energy),
                }
                for c in cmes
            ],
        }
        if self.is_imc and cmes:
            details["tclk_ns"] = float(cmes[0].tclk)
        return Cost(total_cycles / (self.clock_ghz * 1e6), 0.0, sum(energy_pj.values()) * 1e-9, 0.0, 1, details)

    def measure_subnet(self, space: SearchSpace, config: SubNetConfig, batch: int = 1) -> Cost:
        """Sum of :meth:`measure_layer` over ``space.layers(config)`` (each distinct layer simulated once, × its
        count); details add the per-component energy and cycles."""
        latency_ms = energy_mj = 0.0
        energy_pj = dict.fromkeys(COMPONENTS, 0.0)
        cycles = dict.fromkeys(STAGES, 0.0)
        fallback_layers = 0
        layers = space.layers(config)
        counts = Counter(layers)
        for spec, count in counts.items():
            cost = self.measure_layer(spec, batch)
            latency_ms += count * cost.latency_ms
            energy_mj += count * (cost.energy_mj or 0.0)
            for k, v in cost.details["energy_pj"].items():
                energy_pj[k] += count * v
            for k, v in cost.details["cycles_by_stage"].items():
                cycles[k] += count * v
            fallback_layers += count if cost.details["fallback"] else 0
        details = {
            "simulator": "zigzag",
            "energy_pj": energy_pj,
            "cycles_by_stage": cycles,
            "layers": len(layers),
            "distinct_layers": len(counts),
            "fallback_layers": fallback_layers,
        }
        return Cost(latency_ms, 0.0, energy_mj, 0.0, 1, details)

    def describe(self) -> dict[str, Any]:
        """Simulator version, hardware and mapping files (with content hashes), array, search settings, the
        vector-unit/fallback figures and the cited references."""
        array = self.hardware_doc["operational_array"]
        return {
            "backend": self.name,
            "device": self.device.name,
            "description": self.device.description,
            "simulator": "zigzag-dse",
            "version": _zigzag_version(),
            "hardware": Path(self.hardware).name,
            "hardware_sha256": self.hardware_sha256,
            "mapping": Path(self.mapping).name,
            "mapping_sha256": self.mapping_sha256,
            "clock_ghz": self.clock_ghz,
            "array": {
                "name": self.hardware_doc.get("name"),
                "dimensions": list(array["dimensions"]),
                "sizes": list(array["sizes"]),
                "pes": self.pes,
                "in_memory_compute": self.is_imc,
                "imc_type": array.get("imc_type"),
                "systolic_dimensions": list(array.get("systolic_dimensions", [])),
            },
            "precision_bits": self.precision_bits,
            "search": {
                "opt": self.opt,
                "lpf_limit": self.lpf_limit,
                "spatial_mappings": self.spatial_mappings,
                "temporal_orderings": self.temporal_orderings,
                "mix_spatial_mapping": self.mix_spatial_mapping,
                "exploit_data_locality": self.exploit_data_locality,
            },
            "vector_unit": {
                "lanes": self.vector_lanes,
                "pj_per_op": self.vector_pj_per_op,
                "dram_pj_per_byte": self.dram_pj_per_byte,
            },
            "fallback": {"macs_per_cycle": self.fallback_macs_per_cycle, "pj_per_mac": self.fallback_pj_per_mac},
            "references": list(self.device.references),
        }

    def check(self) -> None:
        """Raise when the ``zigzag-dse`` package is not installed."""
        try:
            _zigzag()
        except ImportError as exc:
            raise HwparetoError(f"backend zigzag needs the zigzag-dse package ({exc})") from None


def _presets(kind: str) -> list[str]:
    return sorted(p.stem for p in (ZIGZAG_DIR / kind).glob("*.yaml"))


def _resolve(params: Mapping[str, Any], kind: str, owner: str) -> str:
    """A preset name (file under ``data/devices/zigzag/<kind>/``) or a path to a ``.yaml`` file, as a path."""
    value = params.get(kind)
    if isinstance(value, str):
        if value in _presets(kind):
            return str(ZIGZAG_DIR / kind / f"{value}.yaml")
        path = Path(value).expanduser()
        if path.suffix == ".yaml" and path.is_file():
            return str(path.resolve())
    presets = ", ".join(_presets(kind))
    raise InvalidValueError(f"{owner}.{kind}", f"a preset ({presets}) or the path of a ZigZag {kind} .yaml file", value)


def _load(path: str, kind: str, owner: str, value: str) -> tuple[Any, str]:
    """Read and validate a ZigZag hardware or mapping file: its document and the SHA-256 of its content."""
    field = f"{owner}.{kind}"
    raw = read_bytes(path, f"{field}: ZigZag {kind} file")
    doc = parse_yaml(raw, f"{field}: ZigZag {kind} file {path}")  # safe, size- and alias-limited
    reason = _rejection(kind, doc)
    if reason:
        raise InvalidValueError(field, f"a valid ZigZag {kind} description ({reason})", value)
    array = doc.get("operational_array") if isinstance(doc, dict) else None
    sizes = array.get("sizes") if isinstance(array, dict) else None
    if kind == "hardware":
        if not (isinstance(sizes, list) and sizes and all(isinstance(s, int) for s in sizes)):
            raise InvalidValueError(field, "a ZigZag hardware description with operational_array.sizes", value)
        held = {op for memory in doc["memories"].values() for op in memory["operands"]}
        if not {"I1", "I2", "O"} <= held:
            raise InvalidValueError(
                field, "a ZigZag hardware description with memories for operands I1, I2 and O", value
            )
    return doc, hashlib.sha256(raw).hexdigest()[:16]


def _rejection(kind: str, doc: Any) -> str | None:
    """Why ZigZag's validator rejects a hardware or mapping document (None when valid, or when zigzag-dse is not
    installed: :meth:`ZigZagBackend.check` reports that)."""
    try:
        from zigzag.parser.accelerator_validator import AcceleratorValidator
        from zigzag.parser.mapping_validator import MappingValidator
    except ImportError:
        return None
    with _zigzag_logs() as messages:
        try:
            if (AcceleratorValidator if kind == "hardware" else MappingValidator)(doc).validate():
                return None
        except Exception as exc:  # the validators index fields they have not checked yet
            messages.append(f"{type(exc).__name__}: {_first_line(exc)}")
    return "; ".join(messages) or "rejected by ZigZag's validator"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failure(spec: LayerSpec, exc: BaseException, messages: list[str]) -> SimulatorError:
    logged = f" ({messages[-1].splitlines()[0]})" if messages else ""
    return SimulatorError(f"zigzag failed on layer {spec.key}: {type(exc).__name__}: {_first_line(exc)}{logged}")


def _zigzag_version() -> str | None:
    try:
        return metadata.version("zigzag-dse")
    except metadata.PackageNotFoundError:
        return None


class _Collect(logging.Handler):
    """Keeps ZigZag's error messages (it logs the reason, then raises a generic exception)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _zigzag_logs() -> Iterator[list[str]]:
    """Silence ZigZag's logging for the duration, collecting its errors."""
    log = logging.getLogger("zigzag")
    handler = _Collect()
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.ERROR)
    log.propagate = False
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


@cache
def _zigzag() -> SimpleNamespace:
    """ZigZag's classes, imported on first use, and the sampled-LOMA temporal-mapping stage."""
    from zigzag.datatypes import LayerDim
    from zigzag.mapping.temporal_mapping import TemporalMapping, TemporalMappingType
    from zigzag.opt.loma.engine import LomaEngine, NoValidLoopOrderingFoundException
    from zigzag.parser.accelerator_factory import AcceleratorFactory
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_factory import WorkloadFactory
    from zigzag.parser.workload_validator import WorkloadValidator
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.exploit_data_locality_stages import (
        ExploitInterLayerDataLocalityStage,
        SearchInterLayerDataLocalityStage,
    )
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.results.reduce_stages import MinimalEDPStage, MinimalEnergyStage, MinimalLatencyStage
    from zigzag.stages.workload_iterator import WorkloadStage

    class SampledLoma(LomaEngine):
        """LOMA over at most ``temporal_orderings`` loop orderings: a fixed-seed random sample, followed by the
        remaining orderings only to replace sampled ones that do not fit the memories."""

        def __init__(self, *, temporal_orderings: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.budget = temporal_orderings

        def ordering_generator(self) -> Generator[list[tuple[LayerDim, int]], None, None]:
            orderings = list(super().ordering_generator())
            if len(orderings) > self.budget:
                picked = sorted(random.Random(SAMPLE_SEED).sample(range(len(orderings)), self.budget))
                rest = sorted(set(range(len(orderings))) - set(picked))
                orderings = [orderings[i] for i in itertools.chain(picked, rest)]
            yield from orderings

    class SampledTemporalMappingStage(TemporalMappingGeneratorStage):
        """ZigZag's temporal-mapping stage on :class:`SampledLoma` (user orderings in the mapping constrain it)."""

        def generate_temporal_mappings(self) -> Generator[TemporalMapping, None, None]:
            engine = SampledLoma(
                accelerator=self.accelerator,
                layer=self.layer,
                spatial_mapping=self.spatial_mapping,
                mapping_type=self.mapping_type,
                **self.kwargs,
            )
            constraints = self.layer.temporal_ordering.get_constraints()
            if any(not c.is_empty() for c in constraints):
                engine.set_constraints(constraints)
            yield from itertools.islice(engine.run(), engine.budget)

    return SimpleNamespace(
        AcceleratorFactory=AcceleratorFactory,
        AcceleratorValidator=AcceleratorValidator,
        CostModelStage=CostModelStage,
        ExploitInterLayerDataLocalityStage=ExploitInterLayerDataLocalityStage,
        MainStage=MainStage,
        MappingValidator=MappingValidator,
        MinimalEDPStage=MinimalEDPStage,
        MinimalEnergyStage=MinimalEnergyStage,
        MinimalLatencyStage=MinimalLatencyStage,
        NoValidLoopOrderingFoundException=NoValidLoopOrderingFoundException,
        SampledTemporalMappingStage=SampledTemporalMappingStage,
        SearchInterLayerDataLocalityStage=SearchInterLayerDataLocalityStage,
        SpatialMappingGeneratorStage=SpatialMappingGeneratorStage,
        TemporalMappingType=TemporalMappingType,
        WorkloadFactory=WorkloadFactory,
        WorkloadStage=WorkloadStage,
        WorkloadValidator=WorkloadValidator,
    )
