"""``hwpareto demo``: the whole loop on the embedded default, from shipped data the project produced itself.

Store (with the demo's Llama SuperNet registered from its shipped Hugging Face folder, as ``hwpareto space from-hf``
does) → devices (this CPU plus the NPU/CIM presets) → LUTs (shipped simulator LUTs from ``data/luts``, this CPU
profiled now) → accuracy / perplexity tables of the trained demo SuperNets (``data/demo``) → their predictors → one
search per device under a default budget (latency; the LLM's decode time per token) → the chosen SubNet's bundle per
device. Every step skips what the store already holds, so a second run only re-prints the results.

The image space's searches trade accuracy against ``latency_ms`` (and ``energy_mj``); the Llama space's against the
two phases of generation, ``decode_ms_per_token`` (time per output token, which the budget bounds) and
``prefill_ms`` (time to first token), and ``energy_mj_per_token``, each its own objective (at the space's runtime
setting: batch, prompt and generated length, :data:`HF_OPTIONS`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwpareto.errors import HwparetoError
from hwpareto.predictor_key import PredictorKey
from hwpareto.resources import data_path
from hwpareto.store import Store, find_study
from supernet import SearchSpace

if TYPE_CHECKING:
    from pareto.search._search import SearchSpec

__all__ = [
    "DEMO_SPACES",
    "HF_OPTIONS",
    "SIM_DEVICES",
    "DemoSpace",
    "default_budget_ms",
    "demo_space",
    "describe_demo",
    "run_demo",
]

DATA = data_path()
SIM_DEVICES = ("npu-tpu", "npu-edgetpu", "cim-sram-analog", "cim-sram-digital", "cim-reram")
"""Simulated presets whose LUTs ship in ``data/luts/<device>.csv`` (``make demo-luts`` regenerates them)."""


@dataclass(frozen=True)
class DemoSpace:
    """A demo space with its accuracy table (``data/demo``; its README has the commands). A built-in space's trained
    SuperNet, ``data/demo/<space>.safetensors``, is what exports use by default
    (:func:`pareto.bundles._export.shipped_checkpoint`); a Hugging Face one (``hf``) is the trained model folder
    ``data/demo/<space>/``, registered in the store with :data:`HF_OPTIONS` (:func:`demo_space`)."""

    space: str
    dataset: str
    metric: str = "val_acc_pct"
    hf: bool = False

    @property
    def objective(self) -> str:
        return f"{self.metric}@{self.dataset}"

    @property
    def table(self) -> Path:
        return DATA / "demo" / f"{self.space}_accuracy.csv"

    @property
    def folder(self) -> Path:
        """The trained Hugging Face model folder (``hf`` spaces)."""
        return DATA / "demo" / self.space

    def costs(self, energy: bool) -> tuple[str, ...]:
        """The cost metrics searched on a device, the budgeted one first: an LLM's decode time per token and its
        prefill time (energy per token), an image SubNet's latency (energy) (``energy``: the device reports it)."""
        if self.hf:
            return ("decode_ms_per_token", "prefill_ms", *(("energy_mj_per_token",) if energy else ()))
        return ("latency_ms", *(("energy_mj",) if energy else ()))


DEMO_SPACES = (DemoSpace("mbv3-digits", "digits-affine"), DemoSpace("llama-stdlib", "stdlib", "val_ppl", hf=True))
HF_OPTIONS: dict[str, Any] = {"batch": [1], "importance": False}
"""How the demo registers its Hugging Face folder: ``hwpareto space from-hf data/demo/llama-stdlib --name
llama-stdlib --batch 1 --no-importance`` (batch 1 keeps its LUT small; the sandwich-trained SuperNet's channels
are in order already, an importance reordering would scramble its SubNets)."""


def demo_space(store: Store, demo: DemoSpace) -> SearchSpace:
    """The demo space, a Hugging Face one registered from its shipped folder first (a no-op when stored)."""
    if not demo.hf:
        return store.spaces.get(demo.space)
    from supernet.llama import space_from_hf

    if not (demo.folder / "config.json").is_file():
        raise HwparetoError(f"shipped model folder {demo.folder} is missing (data/demo/README.md: the commands)")
    space = space_from_hf(demo.folder, demo.space, **HF_OPTIONS)
    store.spaces.register(space)
    return space


Step = Callable[[str], None]
"""Prints one progress line."""
Bar = Callable[[str, int], Callable[[int], None]]
"""Opens a progress bar (description, total) and returns its ``advance_to(done)``."""


@dataclass(frozen=True)
class Choice:
    """The SubNet chosen on one device: the best feasible trial of its search (most accurate, or lowest
    perplexity); ``objectives`` starts with the demo space's quality objective, then its costs on ``device``, the
    budgeted ``budget_metric`` first."""

    space: str
    device: str
    study: str
    budget_metric: str
    budget_ms: float
    trial: int
    objectives: dict[str, float]
    bundle: str
    runtime: str | None = None
    """An LLM SubNet's runtime setting its costs are for (batch, prompt and generated tokens); None otherwise."""


def default_budget_ms(
    store: Store, space: SearchSpace, device: str, n: int = 500, seed: int = 0, metric: str = "latency_ms"
) -> float:
    """The median ``metric`` (two significant digits) of ``n`` random SubNets on ``device``: half the space fits."""
    from pareto._objectives import Evaluator, parse_objective

    rng = np.random.default_rng(seed)
    configs = [space.sample(rng) for _ in range(n)]
    mean, _ = Evaluator(store, space, [parse_objective(f"{metric}@{device}")]).evaluate(configs)
    median = float(np.median(mean[:, 0]))
    return float(f"{median:.2g}")


def _has_energy(store: Store, device: str) -> bool:
    energy = store.luts.get(device)["energy_mj_mean"]
    return not energy.empty and bool(energy.notna().all())


def _lut_progress(advance_to: Callable[[int], None], total: int) -> Callable[[int, int, str], None]:
    """``build_lut``'s ``(done, todo, key)`` as the bar's position (layers stored by an earlier run count as done)."""
    return lambda done, todo, _key: advance_to(total - todo + done)


def _search_progress(advance_to: Callable[[int], None]) -> Callable[[int, int], None]:
    """``run_surrogate``'s ``(done, total)`` as the bar's position."""
    return lambda done, _total: advance_to(done)


def run_demo(store: Store, out_dir: Path, *, step: Step, bar: Bar, n_trials: int = 3000, seed: int = 0) -> list[Choice]:
    """Run the demo on ``store``; bundles go to ``out_dir``. Returns the chosen SubNet per (space, device)."""
    from pareto._importer import import_table, parse_columns
    from pareto._objectives import parse_objective
    from pareto.analysis._analysis import export_trial, study_results
    from pareto.search._search import SearchSpec, run_surrogate
    from predictors import train_accuracy
    from profilers import LOCAL_CPU, build_lut, device_spec, import_lut_csv

    start = time.monotonic()
    store.optuna_storage()
    spaces = {d.space: demo_space(store, d) for d in DEMO_SPACES}
    hf = ", ".join(f"{d.space} from {d.folder.relative_to(DATA.parent)}" for d in DEMO_SPACES if d.hf)
    step(f"[1/6] store ready: {store.url}" + (f" (Hugging Face space {hf})" if hf else ""))

    devices = (LOCAL_CPU, *SIM_DEVICES)
    specs = {name: device_spec(store, name) for name in devices}
    step("[2/6] devices: " + ", ".join(f"{n} ({s.kind})" for n, s in specs.items()))

    universes = {name: sp.layer_universe() for name, sp in spaces.items()}
    layers = {spec.key for universe in universes.values() for spec in universe}
    step("[3/6] LUTs: shipped simulator LUTs, this CPU profiled now (resumable)")
    for name in SIM_DEVICES:
        if not layers <= set(store.luts.get(name)["layer_key"]):
            path = DATA / "luts" / f"{name}.csv"
            if not path.is_file():
                raise HwparetoError(f"shipped LUT {path} is missing (regenerate it with `make demo-luts`)")
            n = import_lut_csv(store, path, name)
            step(f"      {name}: {n} LUT entries loaded from {path.relative_to(DATA.parent)}")
        else:
            step(f"      {name}: LUT already in the store")
    for sp in spaces.values():
        total = len(universes[sp.name])
        advance = bar(f"      {LOCAL_CPU} × {sp.name}", total)
        build_lut(store, specs[LOCAL_CPU], sp, progress=_lut_progress(advance, total))
        advance(total)

    step("[4/6] accuracy / perplexity tables and predictors")
    have = {p.name for p in store.predictors.list()}
    for demo in DEMO_SPACES:
        sp = spaces[demo.space]
        path = demo.table
        if not path.is_file():
            raise HwparetoError(
                f"shipped accuracy table {path} is missing (data/demo/README.md: the commands that make it)"
            )
        report = import_table(
            store,
            path,
            space=sp,
            columns=parse_columns([demo.metric], demo.dataset),
            subject_kind="dataset",
            metric=demo.metric,
            source="measured",
        )
        name = PredictorKey(demo.metric, sp.name, demo.dataset).name
        if name in have and not report.written.inserted:
            step(f"      {name}: predictor already trained")
            continue
        trained = train_accuracy(store, sp, metric=demo.metric, dataset=demo.dataset, seed=seed)
        v = trained.validation
        step(
            f"      {name}: {trained.n_train} SubNets, held-out Kendall τ {v['kendall_tau']:.2f}, RMSE {v['rmse']:.2f}"
        )

    step(
        "[5/6] searches per device: accuracy × latency (× energy); perplexity × decode ms/token × prefill ms "
        f"(× energy/token); budget = the median of the first cost, {n_trials} trials"
    )
    choices: list[Choice] = []
    for demo in DEMO_SPACES:
        sp = spaces[demo.space]
        maximize = parse_objective(demo.objective).direction == "maximize"
        for device in devices:
            costs = demo.costs(_has_energy(store, device))
            budget_ms = default_budget_ms(store, sp, device, seed=seed, metric=costs[0])
            budget = f"{costs[0]}@{device} <= {budget_ms:g}"
            objectives = (demo.objective, *(f"{c}@{device}" for c in costs))
            spec = SearchSpec(
                f"demo-{sp.name}-{device}",
                sp.name,
                objectives,
                (budget,),
                sampler="nsga2",
                n_trials=n_trials,
                population=100,
                seed=seed,
            )
            target = out_dir / spec.name
            if _replace_stale_study(store, spec):  # the demo's own study, written by an earlier hwpareto
                step(f"      {spec.name}: written by an earlier hwpareto with other settings; searched again")
                (target / "config.json").unlink(missing_ok=True)
            advance = bar(f"      {spec.name}", n_trials)
            run_surrogate(store, spec, progress=_search_progress(advance))  # a finished study returns at once
            advance(n_trials)
            results = study_results(store, spec.name)
            feasible = results.trials[results.trials["feasible"]]
            best = feasible.sort_values([demo.objective, objectives[1]], ascending=[not maximize, True]).iloc[0]
            number = int(best["number"])
            if not (target / "config.json").is_file():
                export_trial(store, spec.name, number, target, force=True)  # an interrupted run's leftovers
            choices.append(
                Choice(
                    sp.name,
                    device,
                    spec.name,
                    costs[0],
                    budget_ms,
                    number,
                    {o: float(best[o]) for o in objectives},
                    str(target),
                    _runtime(results.configs[number]) if demo.hf else None,
                )
            )
    step(f"[6/6] done in {time.monotonic() - start:.0f} s")
    return choices


def _replace_stale_study(store: Store, spec: SearchSpec) -> bool:
    """Delete study ``spec.name`` when it holds another search (an earlier release's demo objectives), so the demo
    searches it again instead of refusing the name; whether it did."""
    from pareto.analysis._catalog import delete_study
    from pareto.search._search import SPEC_ATTR

    found = find_study(store, spec.name, SPEC_ATTR)
    if found is None or spec.same_search(json.loads(found[1]) if found[1] else None):
        return False
    delete_study(store, spec.name)
    return True


def _runtime(config: dict[str, Any]) -> str:
    return f"batch {config['batch']}, prompt {config['prompt_len']}, generated {config['gen_len']} tokens"


DESCRIBED_COSTS = ("latency_ms", "decode_ms_per_token", "prefill_ms", "energy_mj", "energy_mj_per_token")
"""The cost columns of :func:`describe` (None where a space's search has no such objective)."""


def describe_demo(choices: list[Choice]) -> list[dict[str, Any]]:
    """JSON-ready rows of the chosen SubNets (same columns for every space and device; ``quality`` is the value of
    each demo space's own metric ``quality_metric``, see :data:`DEMO_SPACES`; ``budget_metric <= budget_ms`` is
    the budget; one column per cost metric of :data:`DESCRIBED_COSTS`; an LLM's ``runtime`` setting)."""
    rows = []
    for c in choices:
        quality, *costs = c.objectives.items()
        by_metric = {name.partition("@")[0]: value for name, value in costs}
        rows.append(
            {
                "space": c.space,
                "device": c.device,
                "budget_metric": c.budget_metric,
                "budget_ms": c.budget_ms,
                "trial": c.trial,
                "quality_metric": quality[0].partition("@")[0],
                "quality": round(quality[1], 3),
                **{m: float(f"{by_metric[m]:.4g}") if m in by_metric else None for m in DESCRIBED_COSTS},
                "runtime": c.runtime,
                "study": c.study,
                "bundle": c.bundle,
            }
        )
    return rows
