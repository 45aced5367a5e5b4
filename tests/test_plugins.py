"""Extension points: third-party spaces and backends found through entry points (a ``*.dist-info`` folder on
``sys.path``, nothing installed), code registration, plugin errors, and the layering rules they rely on."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import profilers._devices
import supernet._registry
from hwpareto.errors import InvalidValueError
from hwpareto.plugins import PluginError
from predictors import SpaceFeatures
from profilers import Backend, Cost, DeviceSpec, backend_for, backend_names, device_from_dict, register_backend
from supernet import (
    DeclarativeSpace,
    Dimension,
    LayerSpec,
    SearchSpace,
    get_space,
    list_spaces,
    register_space,
    register_space_kind,
    space_from_document,
    space_kinds,
)

ROOT = Path(__file__).resolve().parents[1]

SPACE_MODULE = """
from supernet import Dimension, LayerSpec, SearchSpace


class TinySpace(SearchSpace):
    name = "tiny"
    description = "a third-party space"
    has_model = False

    def __init__(self):
        super().__init__([Dimension("width", choices=(8, 16)), Dimension("act", choices=("relu", "gelu"))])

    def layers(self, config):
        w = int(self.validate(config)["width"])
        return [LayerSpec("linear", cin=w, cout=w, act=str(config["act"]))] * 2

    def layer_universe(self, restrict=None):
        configs = [{"width": w, "act": a} for w in (8, 16) for a in ("relu", "gelu")]
        return list(dict.fromkeys(spec for config in configs for spec in self.layers(config)))


def tiny_factory():
    space = TinySpace()
    space.name = "tiny-made"
    return space


class WideSpace(TinySpace):
    # one space of a family the store rebuilds from a document (stored kind "tiny-wide")
    def __init__(self, name, widths):
        SearchSpace.__init__(self, [Dimension("width", choices=tuple(widths)), Dimension("act", choices=("relu",))])
        self.name = name

    def to_dict(self):
        return {"kind": "tiny-wide", "name": self.name, "widths": list(self.dimensions[0].choices)}


def wide_from_document(doc, source):
    return WideSpace(doc["name"], doc["widths"])


def misnamed():
    return TinySpace()


def not_a_space():
    return 42


def failing():
    raise RuntimeError("no GPU here\\nsecond line of the reason")


class Unrelated:
    pass
"""

BACKEND_MODULE = """
from profilers import Backend, Cost


class TinyBackend(Backend):
    name = "tiny-sim"
    kinds = ("npu",)
    measures = False

    def measure_layer(self, spec, batch=1):
        return Cost(float(spec.macs * batch) / 1e6)

    def measure_subnet(self, space, config, batch=1):
        return Cost(float(space.macs(config) * batch) / 1e6)

    def describe(self):
        return {"simulator": "tiny", "params": dict(self.device.params)}


# a device kind hwpareto's core has never heard of, timed on (pretend) real hardware
class FpgaBackend(Backend):
    name = "tiny-fpga"
    kinds = ("fpga",)
    measures = True

    def measure_layer(self, spec, batch=1):
        return Cost(1.0 + spec.macs * batch / 1e6, 0.01)

    def measure_subnet(self, space, config, batch=1):
        return Cost(2.0 + space.macs(config) * batch / 1e6, 0.02)

    def describe(self):
        return {"board": "tiny-fpga"}


class Unmeasured(TinyBackend):
    name = "tiny-unmeasured"
    measures = None


class Unrelated:
    name = "not-a-backend"
"""


def _distribution(root: Path, dist: str, modules: dict[str, str], groups: dict[str, dict[str, str]]) -> None:
    """What ``pip install`` of a package ``dist`` would leave in site-packages: its modules and a dist-info folder
    with ``METADATA`` and ``entry_points.txt``."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in points.items()) for group, points in groups.items()]
    (info / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture(autouse=True)
def _registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations and loaded plugins of a test stay in that test."""
    for registry in (supernet._registry._SPACES, supernet._registry._KINDS, profilers._devices._BACKENDS):
        monkeypatch.setattr(registry, "_code", dict(registry._code))
        monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    yield


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package ``hwp-tiny`` on ``sys.path`` declaring spaces and backends (good and broken ones)."""
    _distribution(
        tmp_path,
        "hwp_tiny",
        {"hwp_tiny_space": SPACE_MODULE, "hwp_tiny_backend": BACKEND_MODULE},
        {
            "hwpareto.spaces": {
                "tiny": "hwp_tiny_space:TinySpace",
                "tiny-made": "hwp_tiny_space:tiny_factory",
                "tiny-misnamed": "hwp_tiny_space:misnamed",
                "tiny-number": "hwp_tiny_space:not_a_space",
                "tiny-failing": "hwp_tiny_space:failing",
                "tiny-missing": "hwp_tiny_nowhere:Space",
                "tiny-unrelated": "hwp_tiny_space:Unrelated",
            },
            "hwpareto.space_kinds": {"tiny-wide": "hwp_tiny_space:wide_from_document"},
            "hwpareto.backends": {
                "tiny-sim": "hwp_tiny_backend:TinyBackend",
                "tiny-fpga": "hwp_tiny_backend:FpgaBackend",
                "tiny-unmeasured": "hwp_tiny_backend:Unmeasured",
                "tiny-unrelated": "hwp_tiny_backend:Unrelated",
                "tiny-missing": "hwp_tiny_backend:Nothing",
            },
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("hwp_tiny_space", "hwp_tiny_backend"):
        monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    return tmp_path


# ---------------------------------------------------------------------------------------------------- spaces
def test_builtins_are_entry_points_of_hwpareto() -> None:
    assert {"nb201", "mbv3", "gpt", "mbv3-digits", "gpt-stdlib"} <= set(supernet._registry.BUILTIN_SPACES)
    assert set(supernet._registry.BUILTIN_SPACES) <= set(list_spaces())
    assert get_space("mbv3-digits").name == "mbv3-digits" and get_space("nb201") is get_space("nb201")


def test_third_party_space_is_discovered(third_party: Path) -> None:
    assert {"tiny", "tiny-made", "nb201"} <= set(list_spaces())
    space = get_space("tiny")
    assert type(space).__name__ == "TinySpace" and space is get_space("tiny")  # built once
    assert get_space("tiny-made").name == "tiny-made"  # a factory
    config = space.validate({"width": 16, "act": "gelu"})
    assert space.params(config) == 2 * (16 * 16)
    # predictors know nothing of it, and use its default features (encoding, then the layer model)
    features = SpaceFeatures(space).fit()
    names = list(features.get_feature_names_out())
    assert names[:3] == ["width", "act=relu", "act=gelu"] and "n_linear" in names
    row = dict(zip(names, features.transform([config])[0], strict=True))
    assert row["n_layers"] == 2 and row["log_params"] == pytest.approx(np.log1p(512))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "tiny-missing",
            r"^hwpareto\.spaces plugin 'tiny-missing' \(hwp_tiny_nowhere:Space\): cannot load: "
            r"ModuleNotFoundError: No module named 'hwp_tiny_nowhere'$",
        ),
        (
            "tiny-misnamed",
            r"^hwpareto\.spaces plugin 'tiny-misnamed': expected a space named 'tiny-misnamed', got 'tiny'$",
        ),
        ("tiny-number", r"^hwpareto\.spaces plugin 'tiny-number': expected a SearchSpace from the factory, got a int$"),
        (
            "tiny-failing",
            r"^hwpareto\.spaces plugin 'tiny-failing': cannot build the space: RuntimeError: no GPU here$",
        ),
        ("tiny-unrelated", r"^hwpareto\.spaces plugin 'tiny-unrelated': expected a SearchSpace .*got a Unrelated$"),
    ],
)
def test_broken_space_plugins_are_one_line_errors(third_party: Path, name: str, message: str) -> None:
    with pytest.raises(PluginError, match=message) as error:
        get_space(name)
    assert "\n" not in str(error.value)
    assert get_space("tiny").name == "tiny"  # a broken plugin spoils nothing else


def test_unknown_space_lists_the_plugins(third_party: Path) -> None:
    with pytest.raises(InvalidValueError, match=r"^space: expected one of .*, got 'resnet'$") as error:
        get_space("resnet")
    listed = str(error.value).removeprefix("space: expected one of ").split(", got")[0].split(", ")
    assert {"tiny", "tiny-made", "nb201", "mbv3"} <= set(listed)


def test_spaces_registered_in_code(third_party: Path) -> None:
    toy = DeclarativeSpace("toy-plug", [Dimension("k", choices=(1, 2))])
    assert register_space(toy) is toy and get_space("toy-plug") is toy and "toy-plug" in list_spaces()
    register_space(DeclarativeSpace("toy-plug", [Dimension("k", choices=(1, 2))]))  # same dimensions: fine
    other = DeclarativeSpace("toy-plug", [Dimension("k", choices=(1, 3))])
    with pytest.raises(InvalidValueError, match=r"^space\.name: expected a name not yet registered"):
        register_space(other)
    assert register_space(other, replace=True) is other and get_space("toy-plug") is other
    for installed in ("nb201", "tiny"):  # neither a built-in nor another package's space can be replaced
        with pytest.raises(
            InvalidValueError, match=rf"^space.name: expected a name other than the installed .*got '{installed}'$"
        ):
            register_space(DeclarativeSpace(installed, [Dimension("k", choices=(1,))]), replace=True)
    with pytest.raises(InvalidValueError, match=r"^space: expected a SearchSpace, got 'str'$"):
        register_space("toy")  # type: ignore[arg-type]


BROKEN_MODULE = """
raise RuntimeError("needs the vendor SDK\\nsecond line of the reason")
"""


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package ``hwp_broken`` on ``sys.path`` declaring a good space and one whose object raises on load; the
    broken one's one-line error."""
    _distribution(
        tmp_path,
        "hwp_broken",
        {"hwp_tiny_space": SPACE_MODULE, "hwp_broken_space": BROKEN_MODULE},
        {"hwpareto.spaces": {"tiny": "hwp_tiny_space:TinySpace", "broken": "hwp_broken_space:BrokenSpace"}},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("hwp_tiny_space", "hwp_broken_space"):
        monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # rich tables: one line per row
    return (
        "hwpareto.spaces plugin 'broken' (hwp_broken_space:BrokenSpace): cannot load: RuntimeError: "
        "needs the vendor SDK"
    )


def test_a_broken_space_plugin_spoils_no_cli_listing(broken_plugin: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hwpareto.cli import app

    runner = CliRunner()
    store = ["--store", str(tmp_path / "store.db")]
    listed = runner.invoke(app, ["spaces", "--json", *store])
    assert listed.exit_code == 0, listed.output
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert {"tiny", "nb201", "mbv3"} <= set(entries) and entries["tiny"]["dimensions"]
    assert entries["broken"] == {"name": "broken", "error": broken_plugin}
    table = runner.invoke(app, ["spaces", *store])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if " broken " in line)
    assert f"broken plugin: {broken_plugin}" in row
    assert any(" tiny " in line and "a third-party space" in line for line in table.stdout.splitlines())
    devices = runner.invoke(app, ["devices", *store])  # loads every space too
    assert devices.exit_code == 0, devices.output
    for asked in (["space", "show", "broken"], ["sample", "broken"]):  # asked for by name: its one-line error
        failed = runner.invoke(app, [*asked, *store])
        assert failed.exit_code == 1 and failed.stderr == f"error: {broken_plugin}\n"


def test_a_broken_space_plugin_is_left_out_of_dashboard_lists(broken_plugin: str, tmp_path: Path) -> None:
    from dashboard import _data, _state
    from hwpareto.store import Store

    with Store.open(str(tmp_path / "store.db")) as store:
        spaces, warnings = _data.space_choices(store)
        names = [s.name for s in spaces]
        assert {"tiny", "nb201", "mbv3"} <= set(names) and "broken" not in names
        assert warnings == [f"space 'broken' left out: broken plugin: {broken_plugin}"]
        store.devices.add("npu", "npu", {"name": "npu", "kind": "npu", "backend": "fake"})
        coverage = set(_data.lut_coverage(store, "npu")["space"])
        assert "nb201" in coverage and "broken" not in coverage
        assert _data.default_space(store, ["npu"]) in names and _state.hint_space(store, "npu") in names
        with pytest.raises(PluginError, match=f"^{re.escape(broken_plugin)}$"):
            store.spaces.get("broken")


def test_a_plugin_declares_its_stored_space_kind(third_party: Path, tmp_path: Path) -> None:
    from hwpareto.store import Store

    assert {"hf-causal-lm", "tiny-wide"} <= set(space_kinds())
    module = __import__("hwp_tiny_space")
    with Store.open(str(tmp_path / "kinds.db")) as store:
        store.spaces.register(module.WideSpace("wide-3", [8, 16, 32]))
        back = store.spaces.get("wide-3")  # rebuilt by the plugin's factory from the stored document
        assert type(back).__name__ == "WideSpace" and back.dimensions[0].choices == (8, 16, 32)
    with pytest.raises(InvalidValueError, match=r"^doc: kind: expected one of .*tiny-wide.*, got 'other'$"):
        space_from_document({"kind": "other", "name": "x"}, "doc")
    register_space_kind("coded-wide", lambda doc, source: module.WideSpace(doc["name"], [4]))
    assert space_from_document({"kind": "coded-wide", "name": "w"}).dimensions[0].choices == (4,)
    with pytest.raises(PluginError, match=r"space_kinds plugin 'bad': expected a factory"):
        register_space_kind("bad", 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- backends
def test_third_party_backend_is_discovered(third_party: Path) -> None:
    assert {"tiny-sim", "fake", "torch-cpu"} <= set(backend_names())
    spec = device_from_dict({"name": "tiny-npu", "kind": "npu", "backend": "tiny-sim", "params": {"x": 1}})
    backend = backend_for(spec)
    assert isinstance(backend, Backend) and backend.describe() == {"simulator": "tiny", "params": {"x": 1}}
    assert backend.measure_layer(LayerSpec("linear", cin=1000, cout=1000)) == Cost(1.0)


def test_a_plugin_backend_brings_its_own_device_kind(third_party: Path, tmp_path: Path) -> None:
    from hwpareto.store import Store
    from tests._cli import hw

    (tmp_path / "fpga.yaml").write_text("name: fpga0\nkind: fpga\nbackend: tiny-fpga\n")
    url = str(tmp_path / "fpga.db")
    hw("device", "add", tmp_path / "fpga.yaml", "--store", url)
    hw("profile", "--device", "fpga0", "--space", "nb201", "--store", url)
    with Store.open(url) as store:
        assert store.devices.get("fpga0").kind == "fpga"
        lut = store.luts.get("fpga0")
        assert len(lut) == len(get_space("nb201").layer_universe()) and set(lut["source"]) == {"measured"}
    with pytest.raises(InvalidValueError, match=r"kind: expected one of fpga for backend tiny-fpga, got 'npu'"):
        device_from_dict({"name": "f", "kind": "npu", "backend": "tiny-fpga"})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "tiny-unmeasured",
            r"^hwpareto\.backends plugin 'tiny-unmeasured': expected class attributes kinds .* and measures "
            r"\(True: times real hardware, False: simulates\)$",
        ),
        (
            "tiny-unrelated",
            r"^hwpareto\.backends plugin 'tiny-unrelated': expected a concrete Backend subclass, "
            r"got class Unrelated$",
        ),
        ("tiny-missing", r"^hwpareto\.backends plugin 'tiny-missing' \(hwp_tiny_backend:Nothing\): cannot load: "),
    ],
)
def test_broken_backend_plugins_are_one_line_errors(third_party: Path, name: str, message: str) -> None:
    with pytest.raises(PluginError, match=message) as error:
        device_from_dict({"name": "dev", "kind": "npu", "backend": name})
    assert "\n" not in str(error.value)


def test_unknown_backend_lists_the_plugins(third_party: Path) -> None:
    with pytest.raises(InvalidValueError, match=r"^dev\.yaml: backend: expected one of .*, got 'tpu'$") as error:
        device_from_dict({"name": "dev", "kind": "npu", "backend": "tpu"}, source="dev.yaml")
    listed = str(error.value).removeprefix("dev.yaml: backend: expected one of ").split(", got")[0].split(", ")
    assert {"tiny-sim", "fake", "torch-cpu", "zigzag"} <= set(listed)


class _Coded(Backend):
    name = "coded"
    kinds = ("fake",)
    measures = False

    def measure_layer(self, spec: LayerSpec, batch: int = 1) -> Cost:
        return Cost(2.0)

    def measure_subnet(self, space: SearchSpace, config: object, batch: int = 1) -> Cost:  # type: ignore[override]
        return Cost(3.0)

    def describe(self) -> dict[str, str]:
        return {"backend": self.name}


def test_backends_registered_in_code() -> None:
    assert "coded" not in backend_names()
    assert register_backend("coded", _Coded) is _Coded and "coded" in backend_names()
    assert backend_for(DeviceSpec("c", "fake", "coded")).measure_layer(LayerSpec("add", cin=4)) == Cost(2.0)
    with pytest.raises(
        InvalidValueError, match=r"^device\.backend name: expected a name not yet registered, got 'coded'$"
    ):
        register_backend("coded", _Coded)
    with pytest.raises(
        InvalidValueError, match=r"^device\.backend name: expected a name not yet registered, got 'fake'$"
    ):
        register_backend("fake", type("_Fake", (_Coded,), {"name": "fake"}))
    with pytest.raises(PluginError, match=r"expected a Backend named 'other', got 'coded'$"):
        register_backend("other", _Coded)
    with pytest.raises(PluginError, match=r"expected a concrete Backend subclass, got class Backend$"):
        register_backend("abstract", Backend)  # type: ignore[type-abstract]


# ---------------------------------------------------------------------------------------------------- layering
CONCRETE_SPACES = ("supernet.nb201", "supernet.mbv3", "supernet.gpt", "supernet._demo")
CONCRETE_NAMES = {"NB201Space", "MobileNetV3Space", "GPTSpace", "mbv3_digits", "gpt_stdlib", "nb201", "mbv3", "gpt"}


@pytest.mark.parametrize("path", sorted((ROOT / "predictors").glob("*.py")), ids=lambda p: p.name)
def test_predictors_never_name_a_concrete_space(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        bad = [m for m in modules if m.startswith(CONCRETE_SPACES)]
        assert not bad, f"{path.name}:{getattr(node, 'lineno', '?')} imports {bad}"
        names = {alias.asname or alias.name for alias in getattr(node, "names", [])} if modules else set()
        if isinstance(node, ast.Name):
            names = {node.id}
        elif isinstance(node, ast.Attribute):
            names = {node.attr}
        assert not names & CONCRETE_NAMES, f"{path.name}:{getattr(node, 'lineno', '?')} names {names & CONCRETE_NAMES}"


FAMILY_CLASSES = {"HFCausalLMSpace", "HFSuperNet"}
"""Classes of a model family that only its own package (``supernet/llama``) may branch on."""


def _family_checks(path: Path) -> list[int]:
    """Lines of ``isinstance``/``issubclass`` calls in ``path`` whose class argument names a
    :data:`FAMILY_CLASSES` class (alone, in a tuple, or as a module attribute)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            named = {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(node.args[-1])}
            if named & FAMILY_CLASSES:
                lines.append(node.lineno)
    return lines


def test_no_family_isinstance_outside_its_package(tmp_path: Path) -> None:
    """Bundles and training ask ``space.family`` (the family's hooks), never which class a space is: no check of a
    Hugging Face class outside ``supernet/llama``. The scan finds one where there is one."""
    packages = ("hwpareto", "supernet", "profilers", "predictors", "pareto", "dashboard")
    files = [f for pkg in packages for f in (ROOT / pkg).rglob("*.py") if "llama" not in f.relative_to(ROOT).parts]
    found = {str(f.relative_to(ROOT)): _family_checks(f) for f in files}
    assert len(files) > 50 and {f: lines for f, lines in found.items() if lines} == {}
    planted = tmp_path / "planted.py"
    planted.write_text("import supernet.llama as l\n\nok = isinstance(x, (int, l.HFCausalLMSpace))\n")
    assert _family_checks(planted) == [3]


def test_a_stored_space_cannot_take_an_installed_plugins_name(broken_plugin: str, tmp_path: Path) -> None:
    """The store refuses a declarative space named like any installed space (a third-party plugin, even a broken
    one, as well as the built-ins), so a stored space never shadows a plugin; other names store as before."""
    from hwpareto.store import Store
    from supernet import installed_spaces, space_from_dict

    assert {"tiny", "broken", "nb201"} <= set(installed_spaces())
    with Store.open(str(tmp_path / "store.db")) as store:
        for name in ("tiny", "broken", "nb201"):
            with pytest.raises(InvalidValueError, match=r"^space\.name: expected a name other than the installed"):
                store.spaces.register(space_from_dict({"name": name, "dimensions": [{"name": "a", "choices": [1, 2]}]}))
        store.spaces.register(space_from_dict({"name": "mine", "dimensions": [{"name": "a", "choices": [1, 2]}]}))
        assert "mine" in store.spaces.names()
