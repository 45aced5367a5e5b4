"""Latency/energy lookup tables: building them on a device (resumable), LUT-sums, and LUT files in and out."""

from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from hwpareto.errors import HwparetoError, InvalidValueError
from hwpareto.safeload import parse_json
from hwpareto.store import LUT_COLUMNS, Store, csv_safe, open_table
from profilers._base import Backend, Cost, DeviceSpec, SimulatorError, UnmappableLayerError
from profilers._devices import LOCAL_CPUS, backend_for, device_from_dict, local_cpu_spec, presets
from supernet import (
    PHASE_METRICS,
    LayerCounts,
    LayerSpec,
    SearchSpace,
    SubNetConfig,
    check_metric_value,
    check_name,
    metric_range,
)

__all__ = [
    "LUT_METRICS",
    "LUT_SCHEMES",
    "PHASE_LATENCY",
    "Lut",
    "LutReport",
    "MissingLutError",
    "build_lut",
    "device_spec",
    "export_lut_csv",
    "import_lut_csv",
    "lut_entries_per_space",
    "measure_subnets",
]

LUT_SCHEMES = ("layer", "ofa-block")
LUT_METRICS = ("latency_ms", "energy_mj", *PHASE_METRICS)
"""The device costs a LUT-sum gives (:meth:`Lut.metric_sums`); any other needs a predictor trained on measurements."""
PHASE_LATENCY = {"prefill": "prefill_ms", "decode": "decode_ms_per_token"}
"""The measurement each LLM phase's timing is stored as (the objectives of the same names read its LUT-sum)."""
FLUSH_ROWS = 25
FLUSH_SECONDS = 2.0
Progress = Callable[[int, int, str], None]


class MissingLutError(HwparetoError):
    """The LUT lacks entries a SubNet needs."""


# ---------------------------------------------------------------------------------------------------- devices
def device_spec(store: Store, name: str, *, register: bool = True) -> DeviceSpec:
    """The measurable device ``name``: registered in the store, or a shipped preset / ``cpu-local`` (registered
    on first use with its backend's provenance). A stored ``cpu-local`` must describe this machine's CPU."""
    try:
        stored = store.devices.get(name)
    except InvalidValueError:
        stored = None
    if stored is not None:
        if stored.kind == "imported":
            raise InvalidValueError(
                f"device {name!r}",
                "a device with a backend; it was imported from a table",
                "kind imported",
            )
        spec = device_from_dict(stored.spec, source=f"stored device {name!r}")
        if name in LOCAL_CPUS.values():
            _check_same_cpu(spec, stored.provenance)
        _check_same_files(spec, stored.provenance)
        return spec
    candidates = {**{n: local_cpu_spec(runtime=r) for r, n in LOCAL_CPUS.items()}, **presets()}
    if name not in candidates:
        known = [d.name for d in store.devices.list() if d.kind != "imported"]
        raise InvalidValueError("device", "a registered device or preset: " + ", ".join([*candidates, *known]), name)
    spec = candidates[name]
    if register:
        backend = backend_for(spec)
        backend.check()
        store.devices.add(spec.name, spec.kind, spec.to_dict(), backend.describe())
    return spec


def _check_same_cpu(spec: DeviceSpec, provenance: Mapping[str, Any]) -> None:
    here = backend_for(spec).describe()
    for key in ("host", "cpu_model", "threads"):
        if key in provenance and provenance[key] != here[key]:
            raise HwparetoError(
                f"device {spec.name!r} in this store was profiled with {key} {provenance[key]!r}, this machine has "
                f"{here[key]!r}: register this machine under its own name (hwpareto device add --local-cpu NAME)"
            )


def _check_same_files(spec: DeviceSpec, provenance: Mapping[str, Any]) -> None:
    """Refuse a stored device whose backend reads files (a ZigZag hardware or mapping file) that changed since it
    was registered: its LUT would mix two devices' figures."""
    recorded = {k: v for k, v in provenance.items() if k.endswith("_sha256")}
    if not recorded:
        return
    here = backend_for(spec).describe()
    for key, digest in recorded.items():
        if here.get(key) != digest:
            raise InvalidValueError(
                f"device {spec.name!r}: {key.removesuffix('_sha256')} file {here.get(key.removesuffix('_sha256'))}",
                f"the contents registered (SHA-256 {digest}); register the edited file with 'hwpareto device add "
                "FILE --replace' or under a new name",
                f"SHA-256 {here.get(key)}",
            )


# ---------------------------------------------------------------------------------------------------- building
@dataclass(frozen=True, slots=True)
class LutReport:
    """What :func:`build_lut` did: layer counts and the layers that failed (key, reason)."""

    device: str
    space: str
    total: int
    already: int
    measured: int
    failed: tuple[tuple[str, str], ...]
    remaining: int
    seconds: float


def _exit_with_parent(parent: int, period_s: float = 0.5) -> None:
    """Pool worker initializer: a daemon thread ends this process soon after ``parent`` dies (a SIGKILLed
    ``hwpareto profile`` would otherwise leave its workers, and through them the resource tracker, running)."""

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="hwpareto-parent-watchdog", daemon=True).start()


def _measure_one(backend: Backend, spec: LayerSpec, batch: int) -> Cost:
    return backend.measure_layer(spec, batch)


def _row(spec: LayerSpec, cost: Cost, batch: int, source: str) -> dict[str, Any]:
    return {
        "layer_key": spec.key,
        "op": spec.op,
        "spec_json": spec.to_dict(),
        "batch": batch,
        "latency_ms_mean": cost.latency_ms,
        "latency_ms_std": cost.latency_ms_std,
        "energy_mj_mean": cost.energy_mj,
        "energy_mj_std": cost.energy_mj_std,
        "n": cost.n,
        "source": source,
    }


def build_lut(
    store: Store,
    device: DeviceSpec,
    space: SearchSpace,
    *,
    restrict: Mapping[str, Sequence[Any]] | None = None,
    batch: int = 1,
    budget_s: float | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> LutReport:
    """Measure every distinct layer of ``space`` (``restrict``-ed) not yet in ``device``'s LUT and store each row
    as it completes (flushed every few rows or seconds), so an interrupted build resumes without duplicates.

    Simulated backends (``parallel``) run layers in ``workers`` processes. Layers a backend cannot map or a
    simulator fails on are reported, not stored, and the build continues. ``budget_s`` stops scheduling new
    layers after that many seconds. ``progress(done, total, layer_key)`` is called after each layer.
    """
    start = time.monotonic()
    backend = backend_for(device)
    backend.check()
    universe = space.layer_universe(restrict)
    have = set(store.luts.get(device.name, batch)["layer_key"])
    todo = [s for s in universe if s.key not in have]
    source = backend.source
    pending: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    done = 0
    last_flush = time.monotonic()

    def record(spec: LayerSpec, outcome: Cost | BaseException) -> None:
        nonlocal done, last_flush
        done += 1
        if isinstance(outcome, Cost):
            pending.append(_row(spec, outcome, batch, source))
        elif isinstance(outcome, (UnmappableLayerError, SimulatorError, HwparetoError)):
            failed.append((spec.key, str(outcome)))
        else:
            failed.append((spec.key, f"{type(outcome).__name__}: {outcome}"))
        if len(pending) >= FLUSH_ROWS or time.monotonic() - last_flush >= FLUSH_SECONDS:
            flush()
        if progress is not None:
            progress(done, len(todo), spec.key)

    def flush() -> None:
        nonlocal last_flush
        if pending:
            store.luts.add(device.name, pending)
            pending.clear()
        last_flush = time.monotonic()

    def over_budget() -> bool:
        return budget_s is not None and time.monotonic() - start >= budget_s

    scheduled = 0
    try:
        if backend.parallel and (workers or 2) > 1 and len(todo) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=workers or 2, mp_context=ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)
            ) as pool:
                running: dict[Future[Cost], LayerSpec] = {}
                queue = iter(todo)
                while True:
                    while len(running) < 2 * (workers or 2) and not over_budget():
                        spec = next(queue, None)
                        if spec is None:
                            break
                        running[pool.submit(_measure_one, backend, spec, batch)] = spec
                        scheduled += 1
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        spec = running.pop(fut)
                        exc = fut.exception()
                        record(spec, exc if exc is not None else fut.result())
        else:
            for spec in todo:
                if over_budget():
                    break
                scheduled += 1
                try:
                    outcome: Cost | BaseException = backend.measure_layer(spec, batch)
                except (HwparetoError, RuntimeError, ValueError) as exc:
                    outcome = exc
                record(spec, outcome)
    finally:
        flush()
    return LutReport(
        device.name,
        space.name,
        len(universe),
        len(universe) - len(todo),
        done - len(failed),
        tuple(failed),
        len(todo) - scheduled,
        time.monotonic() - start,
    )


def measure_subnets(
    store: Store,
    device: DeviceSpec,
    space: SearchSpace,
    configs: Iterable[SubNetConfig],
    *,
    batch: int = 1,
    progress: Progress | None = None,
) -> int:
    """Measure (or simulate) SubNets end to end and store ``latency_ms`` (and ``energy_mj``, and the backend's
    other device costs: :attr:`Cost.metrics`) per SubNet, one transaction per SubNet so an interruption keeps what
    was measured. Returns the number stored.

    LLM SubNets timed by phase (:func:`profilers._cpu.measure_phases`) also store ``prefill_ms`` (time to first
    token), ``decode_ms_per_token`` (one decode step of every sequence) and, with energy,
    ``energy_mj_per_token`` (the decode step's energy / sequences); ``latency_ms`` is then prefill + one decode
    step, the quantity the space's LUT-sum models."""
    from hwpareto.store import MeasurementIn

    backend = backend_for(device)
    backend.check()
    items = list(configs)
    source = backend.source
    for i, cfg in enumerate(items, start=1):
        cost = backend.measure_subnet(space, cfg, batch)
        figures: list[tuple[str, float, float | None, int]] = [
            ("latency_ms", cost.latency_ms, cost.latency_ms_std, cost.n)
        ]
        if cost.energy_mj is not None:
            figures.append(("energy_mj", cost.energy_mj, cost.energy_mj_std, cost.n))
        phases: Mapping[str, Cost] = cost.details.get("phases", {})
        for phase, part in phases.items():
            figures.append((PHASE_LATENCY[phase], part.latency_ms, part.latency_ms_std, part.n))
        decode = phases.get("decode")
        if decode is not None and decode.energy_mj is not None:
            sequences = int(cost.details["sequences"])
            std = None if decode.energy_mj_std is None else decode.energy_mj_std / sequences
            figures.append(("energy_mj_per_token", decode.energy_mj / sequences, std, decode.n))
        figures.extend((metric, value, None, cost.n) for metric, value in cost.metrics.items())
        store.measurements.add(
            [
                MeasurementIn(cfg, "device", device.name, metric, value, std, n, batch, source, "hwpareto measure")
                for metric, value, std, n in figures
            ]
        )
        if progress is not None:
            progress(i, len(items), cfg.key)
    return len(items)


# ---------------------------------------------------------------------------------------------------- using
@dataclass
class Lut:
    """A device's LUT at one batch size, for LUT-sums. ``scheme`` says how a SubNet maps to keys: ``layer``
    (hwpareto LayerSpec keys) or ``ofa-block`` (OFA's block-level keys, e.g. an imported OFA LUT)."""

    device: str
    batch: int
    scheme: str
    latency_ms: dict[str, float]
    energy_mj: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, device: str, batch: int = 1) -> Lut:
        """Read the LUT of ``device`` from the store."""
        scheme = store.devices.get(device).spec.get("lut_scheme", "layer")
        df = store.luts.get(device, batch)
        energy = {
            k: float(v)
            for k, v in zip(df["layer_key"], df["energy_mj_mean"], strict=True)
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        return cls(
            device, batch, scheme, dict(zip(df["layer_key"], df["latency_ms_mean"].astype(float), strict=True)), energy
        )

    def keys(self, space: SearchSpace, config: SubNetConfig) -> list[str]:
        """The LUT keys ``config`` looks up, repeats included."""
        if self.scheme == "ofa-block":
            keys_of = getattr(space, "ofa_block_keys", None)
            if keys_of is None:
                raise InvalidValueError(f"LUT of {self.device!r}", "a space with OFA block keys (mbv3)", space.name)
            return list(keys_of(config))
        return [spec.key for spec in space.layers(config)]

    def missing(self, space: SearchSpace, config: SubNetConfig) -> list[str]:
        """Keys of ``config`` the LUT lacks (distinct)."""
        return [k for k in dict.fromkeys(self.keys(space, config)) if k not in self.latency_ms]

    def latency_sum_ms(self, space: SearchSpace, config: SubNetConfig) -> float:
        """Sum of per-layer latencies (raises :class:`MissingLutError` naming the missing keys)."""
        return float(self.sums(space, [config], "latency")[0])

    def energy_sum_mj(self, space: SearchSpace, config: SubNetConfig) -> float:
        """Sum of per-layer energies (raises :class:`MissingLutError` when any layer has no energy)."""
        return float(self.sums(space, [config], "energy")[0])

    def metric_sums(
        self, space: SearchSpace, configs: Sequence[SubNetConfig], metric: str, layer_counts: LayerCounts | None = None
    ) -> np.ndarray:
        """LUT-sums of the cost ``metric``: ``latency_ms`` / ``energy_mj`` over every layer; a phase metric
        (:data:`supernet.PHASE_METRICS`) over that phase's layers, energy per token divided by each config's
        ``batch``. ``layer_counts``: ``space.layer_counts(configs)`` when the caller has it already."""
        what = "energy" if metric.startswith("energy") else "latency"
        sums = self.sums(space, configs, what, PHASE_METRICS.get(metric), layer_counts)
        if metric == "energy_mj_per_token":
            sums = sums / np.array([float(c["batch"]) for c in configs])
        return sums

    def sums(
        self,
        space: SearchSpace,
        configs: Sequence[SubNetConfig],
        what: str = "latency",
        phase: str | None = None,
        layer_counts: LayerCounts | None = None,
    ) -> np.ndarray:
        """LUT-sums of many configs at once: ``what`` is ``latency`` (ms) or ``energy`` (mJ); ``phase`` (``prefill``
        or ``decode``, LLM spaces) sums only the layers of that phase. One
        :meth:`~supernet.SearchSpace.layer_counts` call (none when ``layer_counts`` are given) and one matrix
        product; raises :class:`MissingLutError` naming the first SubNet with a layer the LUT lacks."""
        table = self.energy_mj if what == "energy" else self.latency_ms
        if self.scheme == "ofa-block":
            counts = [Counter(self.keys(space, c)) for c in configs]
            keys = list(dict.fromkeys(k for c in counts for k in c))
            matrix = sparse.csr_array(
                np.array([[c.get(k, 0) for k in keys] for c in counts], dtype=np.float64).reshape(
                    len(configs), len(keys)
                )
            )
        else:
            if layer_counts is None:
                layer_counts = space.layer_counts(configs)
            keys, matrix = [spec.key for spec in layer_counts.specs], layer_counts.matrix
            if phase is not None:
                kept = np.flatnonzero([spec.phase == phase for spec in layer_counts.specs])
                keys, matrix = [keys[j] for j in kept], sparse.csr_array(matrix.tocsc()[:, kept])
        per_key = np.array([table.get(k, np.nan) for k in keys], dtype=np.float64)
        absent = np.flatnonzero(np.isnan(per_key))
        if len(absent):
            i = int(np.flatnonzero(matrix[:, absent].sum(axis=1))[0])
            row = matrix[[i]].toarray().reshape(-1)
            missing = [keys[j] for j in absent if row[j] > 0]
            if self.scheme != "ofa-block":  # in the order the SubNet runs them (layer counts go by key)
                runs: dict[str, int] = {}
                for n, spec in enumerate(space.layers(configs[i])):
                    runs.setdefault(spec.key, n)
                missing.sort(key=runs.__getitem__)
            raise MissingLutError(
                f"LUT of device {self.device!r} (batch {self.batch}) has no {what} for "
                f"{len(missing)} layer(s) of {space.name} SubNet {configs[i].key}, e.g. "
                f"{missing[0]}: run hwpareto profile --device {self.device} --space {space.name}"
            )
        return np.asarray(matrix @ per_key, dtype=np.float64).reshape(-1)


def lut_entries_per_space(store: Store, device: str, spaces: Iterable[SearchSpace]) -> dict[str, int]:
    """How many of each space's distinct layers ``device``'s LUT (batch 1) holds."""
    scheme = store.devices.get(device).spec.get("lut_scheme", "layer")
    keys = set(store.luts.get(device)["layer_key"])
    out: dict[str, int] = {}
    for space in spaces:
        if not space.has_model or not keys:
            continue
        if scheme == "ofa-block":
            count = len(keys) if hasattr(space, "ofa_block_keys") else 0
        else:
            count = len(keys & _universe_keys(space))
        if count:
            out[space.name] = count
    return out


@functools.lru_cache(maxsize=32)
def _universe_keys(space: SearchSpace) -> frozenset[str]:
    return frozenset(s.key for s in space.layer_universe())


# ---------------------------------------------------------------------------------------------------- files
HWPARETO_COLUMNS = LUT_COLUMNS  # a LUT file holds exactly the store's LUT columns
OFA_COLUMNS = ["resolution", "op_key", "count", "mean_ms", "std_ms"]
MAX_BATCH = 65_536
MAX_COUNT = 2**31 - 1
MAX_RESOLUTION = 65_536


def export_lut_csv(store: Store, device: str, path: str | Path, batch: int = 1) -> int:
    """Write ``device``'s LUT at ``batch`` as a portable CSV (hwpareto format); returns the row count."""
    df = store.luts.get(device, batch)
    try:
        csv_safe(df[HWPARETO_COLUMNS]).to_csv(path, index=False)
    except OSError as exc:
        raise HwparetoError(f"LUT file {path}: cannot write ({exc.strerror})") from None
    return len(df)


def import_lut_csv(store: Store, path: str | Path, device: str, *, fmt: str = "hwpareto", description: str = "") -> int:
    """Load a LUT file into the store for ``device`` (registered as kind ``imported`` when new).

    ``fmt`` ``hwpareto``: the columns of :func:`export_lut_csv`; every ``spec_json`` must be a LayerSpec whose key
    is ``layer_key``. ``fmt`` ``ofa``: OFA's per-resolution block LUT (``resolution, op_key, count, mean_ms,
    std_ms``), stored under keys ``r<resolution>/<op_key>`` with scheme ``ofa-block``. Every row is checked
    before anything is written (errors list row numbers; the header is row 1); then one transaction.
    """
    if fmt not in ("hwpareto", "ofa"):
        raise InvalidValueError("LUT format", "hwpareto or ofa", fmt)
    check_name("--device", device)
    p = Path(path)
    try:
        with open_table(p, "LUT file") as lines:
            reader = csv.DictReader(lines)
            header = reader.fieldnames or []
            needed = HWPARETO_COLUMNS if fmt == "hwpareto" else OFA_COLUMNS
            missing = [c for c in needed if c not in header]
            if missing:
                raise InvalidValueError(f"LUT file {p} columns", ", ".join(needed), "missing " + ", ".join(missing))
            rows, errors = [], []
            for line, record in enumerate(reader, start=2):
                try:
                    rows.append(_hwpareto_row(record) if fmt == "hwpareto" else _ofa_row(record))
                except (HwparetoError, ValueError, KeyError, TypeError) as exc:
                    errors.append(f"row {line}: {exc}")
    except OSError as exc:
        raise HwparetoError(f"LUT file {p}: cannot read ({exc.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise HwparetoError(f"LUT file {p}: not a readable CSV ({exc})") from None
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise HwparetoError(
            f"LUT file {p}: {len(errors)} bad row(s), nothing imported: " + "; ".join(errors[:10]) + more
        )
    if not rows:
        raise HwparetoError(f"LUT file {p}: no rows")
    keys = [(r["layer_key"], r["batch"]) for r in rows]
    if len(set(keys)) != len(keys):
        dup = next(k for k, n in Counter(keys).items() if n > 1)
        raise HwparetoError(f"LUT file {p}: layer {dup[0]} (batch {dup[1]}) appears more than once")
    scheme = "ofa-block" if fmt == "ofa" else "layer"
    with store.transaction() as conn:  # a device registered here is kept only with its LUT
        try:
            existing = store.devices.get(device, conn=conn)
        except InvalidValueError:
            existing = None
        if existing is None:
            spec = {"lut_scheme": scheme, "source": p.name, "description": description}
            store.devices.add(device, "imported", spec, conn=conn)
        elif existing.spec.get("lut_scheme", "layer") != scheme:
            raise InvalidValueError(f"device {device!r} LUT scheme", existing.spec.get("lut_scheme", "layer"), scheme)
        result = store.luts.add(device, rows, conn=conn)
    return result.inserted + result.updated + result.unchanged


def _number(record: Mapping[str, Any], column: str, *, optional: bool = False) -> float | None:
    """One layer's cost: in the range of its unit (``supernet.metric_range``, 0 allowed), as the store checks."""
    raw = (record.get(column) or "").strip()
    if not raw and optional:
        return None
    metric = "energy_mj" if "mj" in column else "latency_ms"
    try:
        return check_metric_value(column, metric, float(raw), std=column.endswith("std"), per_layer=True)
    except (InvalidValueError, ValueError):
        allowed = f"a finite non-negative number <= {metric_range(metric)[1]:g}"
        raise ValueError(f"column {column!r}: expected {allowed}, got {raw!r}") from None


def _integer(record: Mapping[str, Any], column: str, high: int) -> int:
    """A count in ``[1, high]``, read from its text without Python's unbounded ``int`` (5,000 digits)."""
    raw = (record.get(column) or "").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and 1 <= int(raw) <= high):
        shown = raw if len(raw) <= 20 else raw[:20] + f"... ({len(raw):,} characters)"
        raise ValueError(f"column {column!r}: expected an integer in [1, {high}], got {shown!r}")
    return int(raw)


def _hwpareto_row(record: Mapping[str, Any]) -> dict[str, Any]:
    spec = LayerSpec.from_dict(parse_json(record.get("spec_json") or "", "column 'spec_json'"))
    if spec.key != record["layer_key"]:
        raise ValueError(f"layer_key {record['layer_key']!r} does not match its spec_json ({spec.key})")
    return {
        "layer_key": spec.key,
        "op": spec.op,
        "spec_json": spec.to_dict(),
        "batch": _integer(record, "batch", MAX_BATCH),
        "latency_ms_mean": _number(record, "latency_ms_mean"),
        "latency_ms_std": _number(record, "latency_ms_std"),
        "energy_mj_mean": _number(record, "energy_mj_mean", optional=True),
        "energy_mj_std": _number(record, "energy_mj_std", optional=True),
        "n": _integer(record, "n", MAX_COUNT),
        "source": "imported",
    }


def _ofa_row(record: Mapping[str, Any]) -> dict[str, Any]:
    resolution, key = _integer(record, "resolution", MAX_RESOLUTION), (record["op_key"] or "").strip()
    if not key or "-input:" not in key:
        raise ValueError(f"op_key: expected an OFA key like 'Conv-input:224x224x3-output:...', got {key!r}")
    return {
        "layer_key": f"r{resolution}/{key}",
        "op": key.split("-", 1)[0][:32],
        "spec_json": {},
        "batch": 1,
        "latency_ms_mean": _number(record, "mean_ms"),
        "latency_ms_std": _number(record, "std_ms"),
        "energy_mj_mean": None,
        "energy_mj_std": None,
        "n": _integer(record, "count", MAX_COUNT),
        "source": "imported",
    }
