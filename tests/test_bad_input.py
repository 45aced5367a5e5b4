"""Hostile and careless input, one table: every case is a one-line ``error:`` naming the field, a non-zero exit,
no traceback, and nothing written to the store. Add a row here for every new kind of input (issue 11, items 3-4).

Each case: ``hwpareto`` arguments (``{d}`` = the test's folder), the files they name, and a fragment the one line
must contain (the field, the limit or the value).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from hwpareto.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
NB201_ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"

# 342 bytes, ~390 million strings once expanded ("billion laughs")
ALIAS_BOMB = (
    "name: x\n"
    + "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
)
BINARY = bytes(range(256)) * 4
DEVICE = "name: npu-x\nkind: npu\nbackend: fake\n"


def space_yaml(dimension: str) -> str:
    return f"name: tiny\ndimensions:\n  - {dimension}\n"


CASES: list[tuple[str, list[str], dict[str, bytes | str], str]] = [
    # binary files, where text is expected
    ("binary config", ["validate", "nb201", "{d}/c.json"], {"c.json": BINARY}, "expected UTF-8 text, got binary"),
    ("binary device", ["device", "add", "{d}/dev.yaml"], {"dev.yaml": BINARY}, "expected UTF-8 text, got binary"),
    ("binary space", ["space", "register", "{d}/s.yaml"], {"s.yaml": BINARY}, "expected UTF-8 text, got binary"),
    (
        "binary CSV",
        ["import", "{d}/t.csv", "--space", "nb201", "--device", "edge", "--metric", "latency_ms", "--column", "edge"],
        {"t.csv": b"arch_str,edge\n" + BINARY},
        "t.csv",
    ),
    # sizes and shapes
    ("alias bomb device", ["device", "add", "{d}/dev.yaml"], {"dev.yaml": ALIAS_BOMB}, "aliases expanded"),
    ("alias bomb space", ["space", "register", "{d}/s.yaml"], {"s.yaml": ALIAS_BOMB}, "aliases expanded"),
    (
        "too many aliases",
        ["device", "add", "{d}/dev.yaml"],
        {"dev.yaml": DEVICE + "a: &a 1\n" + "".join(f"b{i}: *a\n" for i in range(200))},
        "at most 100 YAML aliases",
    ),
    (
        "huge space file",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, choices: [1, 2]}") + "description: " + "x" * (2 * 2**20) + "\n"},
        "at most 1,048,576 bytes",
    ),
    (
        "400,000 choices",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, choices: [" + ",".join(["1"] * 400_000) + "]}")},
        "values (aliases expanded)",
    ),
    (
        "too many choices",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, choices: [" + ",".join(map(str, range(1_001))) + "]}")},
        "dimensions[0].choices: expected at most 1,000 choices, got '1,001 choices'",
    ),
    (
        "long choice",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, choices: [" + "y" * 300 + "]}")},
        "strings of at most 256 characters",
    ),
    (
        "long description",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, choices: [1]}") + "description: " + "z" * 5000 + "\n"},
        "description: expected a string of at most 4,096 characters, got '5,000 characters'",
    ),
    (
        "high 1e21",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, type: int, low: 0, high: 1000000000000000000000}")},
        "dimension 'a'.high: expected a finite number in [-1e+15, 1e+15]",
    ),
    (
        "float high 1e21",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, type: float, low: 0.0, high: 1.0e+21}")},
        "'a'.high",
    ),
    (
        "5,000-digit integer YAML",
        ["space", "register", "{d}/s.yaml"],
        {"s.yaml": space_yaml("{name: a, type: int, low: 0, high: " + "9" * 5000 + "}")},
        "at most 100 digits",
    ),
    (
        "5,000-digit integer JSON",
        ["validate", "nb201", "{d}/c.json"],
        {"c.json": '{"x": ' + "9" * 5000 + "}"},
        "at most 100 digits, got 5,000 digits",
    ),
    (
        "deeply nested JSON",
        ["validate", "nb201", "{d}/c.json"],
        {"c.json": "[" * 100_000 + "]" * 100_000},
        "at most 64 levels of nesting",
    ),
    (
        "deeply nested YAML",
        ["device", "add", "{d}/dev.yaml"],
        {"dev.yaml": "a: " + "[" * 5000 + "]" * 5000},
        "at most 64 levels of nesting",
    ),
    # options
    ("negative seed", ["sample", "nb201", "--seed", "-5"], {}, "'--seed'"),
    ("float trials", ["search", "--space", "nb201", "--objective", "params:min", "--trials", "1e23"], {}, "'--trials'"),
    (
        "huge trials",
        ["search", "--space", "nb201", "--objective", "params:min", "--trials", "1" + "0" * 23],
        {},
        "'--trials'",
    ),
    (
        "huge batch",
        [
            "import",
            "{d}/t.csv",
            "--space",
            "nb201",
            "--device",
            "edge",
            "--metric",
            "latency_ms",
            "--column",
            "edge",
            "--batch",
            "1" + "0" * 20,
        ],
        {"t.csv": f"arch_str,edge\n{NB201_ARCH},1.5\n"},
        "'--batch'",
    ),
    ("float batch", ["search", "--space", "nb201", "--objective", "params:min", "--batch", "1e20"], {}, "'--batch'"),
]


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one()
                for t in inspect(engine).get_table_names()
            }
    finally:
        engine.dispose()


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert runner.invoke(app, ["init", "--store", url]).exit_code == 0
    return url


def one_line_error(args: list[str], url: str, fragment: str) -> str:
    before = row_counts(url)
    started = time.monotonic()
    result = runner.invoke(app, [*args, "--store", url])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)[:500]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[:2000]
    assert fragment in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]
    assert time.monotonic() - started < 30
    assert row_counts(url) == before
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "files", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(
    args: list[str], files: dict[str, bytes | str], fragment: str, tmp_path: Path, url: str
) -> None:
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
    one_line_error([a.replace("{d}", str(tmp_path)) for a in args], url, fragment)


def test_shipped_files_are_within_the_limits() -> None:
    from hwpareto.safeload import load_yaml
    from profilers import presets
    from profilers._zigzag import ZIGZAG_DIR

    assert presets()
    for path in sorted(ZIGZAG_DIR.rglob("*.yaml")):
        assert load_yaml(path, "zigzag file") is not None


# ---------------------------------------------------------------------------------------------------- full disk
def test_store_disk_full_is_one_line_without_sql_parameters(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwpareto.store._measurements import MeasurementRepository

    def full(*_args: object, **_kwargs: object) -> None:
        raise OperationalError(
            "INSERT INTO hwp_measurements VALUES (?)",
            {"value": "SECRET-PARAMETER"},
            sqlite3.OperationalError("database or disk is full"),
        )

    monkeypatch.setattr(MeasurementRepository, "add", full)
    (tmp_path / "t.csv").write_text(f"arch_str,edge\n{NB201_ARCH},1.5\n")
    line = one_line_error(
        [
            "import",
            str(tmp_path / "t.csv"),
            "--space",
            "nb201",
            "--device",
            "edge",
            "--metric",
            "latency_ms",
            "--column",
            "edge",
        ],
        url,
        "database or disk is full",
    )
    assert "SECRET" not in line and "INSERT" not in line and line.startswith(f"error: store {url}")


def test_output_disk_full_is_one_line(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pareto.bundles._export

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "model.onnx"))

    monkeypatch.setattr(pareto.bundles._export, "export_subnet", full)
    import numpy as np

    from supernet import get_space

    (tmp_path / "c.json").write_text(json.dumps(get_space("nb201").sample(np.random.default_rng(0)).values))
    one_line_error(
        ["export-config", "nb201", str(tmp_path / "c.json"), "--out", str(tmp_path / "out")],
        url,
        "model.onnx: cannot write (No space left on device)",
    )


@pytest.mark.slow
def test_real_full_disk_on_import_is_one_line(tmp_path: Path) -> None:
    """A store on a 1 MiB tmpfs, filled by an import: one line naming the store, no SQL, nothing half-written."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here (needs root); the monkeypatched tests above cover it")
    try:
        store = f"sqlite:///{mnt / 'store.db'}"
        assert runner.invoke(app, ["init", "--store", store]).exit_code == 0
        import numpy as np

        from supernet import get_space

        space, rng = get_space("nb201"), np.random.default_rng(0)
        archs = {space.to_record(space.sample(rng))["arch_str"] for _ in range(20_000)}
        rows = "".join(f"{a},{i + 1}.5,{i + 2}.5,{i + 3}.5\n" for i, a in enumerate(sorted(archs)))
        (tmp_path / "t.csv").write_text("arch_str,d1,d2,d3\n" + rows)
        line = one_line_error(
            [
                "import",
                str(tmp_path / "t.csv"),
                "--space",
                "nb201",
                "--device",
                "{column}",
                "--metric",
                "latency_ms",
                "--column",
                "d1",
                "--column",
                "d2",
                "--column",
                "d3",
            ],
            store,
            "cannot write",
        )
        assert "store" in line and "INSERT" not in line
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------------------------------------- memory
def test_alias_bomb_parses_in_bounded_memory_and_time(tmp_path: Path) -> None:
    """The parse runs in a child limited to 1 GiB of address space and 20 s: before the limits, it ran out of
    memory (2-3 GB, ~40 s); now it is refused at once."""
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from hwpareto.errors import HwparetoError
        from hwpareto.safeload import load_yaml
        try:
            load_yaml({str(tmp_path / "bomb.yaml")!r}, "device file")
        except HwparetoError as exc:
            print(exc)
            sys.exit(0)
        sys.exit(3)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "aliases expanded" in done.stdout
    assert time.monotonic() - started < 20


PEAK_MEMORY_MB = 500
IN_A_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a safety net: unbounded, these reached 5.7 GB
from typer.testing import CliRunner
from hwpareto.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
# this process's own peak (VmHWM): ru_maxrss also counts the parent's peak, which the kernel carries over exec
status = open("/proc/self/status").read()
peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"rc": result.exit_code, "stderr": result.stderr, "exception": repr(result.exception), "mb": peak_mb}))
"""


def run_in_a_child(args: list[str], timeout_s: float = 120) -> dict[str, object]:
    """``hwpareto ARGS`` in a fresh Python (3 GiB address space at most): exit code, stderr, peak RSS (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", IN_A_CHILD, *args], capture_output=True, text=True, timeout=timeout_s, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["import", "/dev/zero", "--space", "nb201", "--device", "e", "--metric", "latency_ms", "--column", "e"],
            "CSV /dev/zero: expected lines of at most 1,048,576 characters, line 1 is longer",
        ),
        (["lut", "import", "/dev/zero", "--device", "e"], "LUT file /dev/zero: expected lines of at most 1,048,576"),
    ],
    ids=["import", "lut import"],
)
def test_endless_file_is_refused_in_bounded_memory(args: list[str], fragment: str, url: str) -> None:
    """``/dev/zero`` has no size and no line end: before the bounds, both reached 5.7 GB and died of MemoryError."""
    before = row_counts(url)
    out = run_in_a_child([*args, "--store", url])
    lines = str(out["stderr"]).strip().splitlines()
    assert out["rc"] == 1 and len(lines) == 1 and lines[0].startswith("error: "), out
    assert fragment in lines[0]
    assert float(out["mb"]) < PEAK_MEMORY_MB, out  # type: ignore[arg-type]
    assert row_counts(url) == before


MARKER_BYTES = 123_457  # a tensor size no other integer in the pickle has
BOMB_NAME = "archive/data/0"


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4.6 MB torch checkpoint ``{"state_dict": {"w": uint8 tensor}}`` whose tensor data is 1 GiB of zero bytes,
    deflated (the issue's file: 4 MB, 4.4 GB inflated)."""
    import io
    import struct
    import zipfile

    import torch

    path = tmp_path_factory.mktemp("bomb") / "bomb.pth"
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(MARKER_BYTES, dtype=torch.uint8)}}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/data.pkl"):  # the storage size and the tensor shape
                old, new = b"J" + struct.pack("<i", MARKER_BYTES), b"J" + struct.pack("<i", 2**30)
                assert body.count(old) == 2
                body = body.replace(old, new)
            if info.filename == BOMB_NAME:
                with dst.open(info.filename, "w") as fh:
                    for _ in range(64):
                        fh.write(bytes(2**24))
            else:
                dst.writestr(info.filename, body, compress_type=zipfile.ZIP_STORED)
    return path


def lying_copy(bomb: Path, path: Path, declared_bytes: int) -> Path:
    """``bomb`` with the tensor's size in its zip headers (local and central) and its pickle set to
    ``declared_bytes``: a zip that lies about sizes."""
    import struct
    import zipfile

    raw = bytearray(bomb.read_bytes())
    with zipfile.ZipFile(bomb) as archive:
        offset = archive.getinfo(BOMB_NAME).header_offset
    struct.pack_into("<I", raw, offset + 22, declared_bytes)
    central = raw.rfind(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(BOMB_NAME)] != BOMB_NAME.encode():
        central = raw.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", raw, central + 24, declared_bytes)
    old, new = b"J" + struct.pack("<i", 2**30), b"J" + struct.pack("<i", declared_bytes)  # the pickle (stored)
    assert raw.count(old) == 2
    path.write_bytes(bytes(raw).replace(old, new))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("declared", "fragment"),
    [
        (None, "expected a compression ratio of at most 100, got 2"),
        (MARKER_BYTES, "inflates to more than the 123,457 bytes it declares"),
    ],
    ids=["honest sizes", "lying sizes"],
)
def test_zip_bomb_checkpoint_is_refused_before_inflating(
    zip_bomb: Path, tmp_path: Path, declared: int | None, fragment: str
) -> None:
    """A 4.6 MB checkpoint whose tensor inflates to 1 GiB: before the checks, torch inflated it whole (1.1 GB peak
    here, 4.4 GB in the issue). A zip that declares 123 kB but holds 1 GiB stops at the declared size."""
    bomb = zip_bomb if declared is None else lying_copy(zip_bomb, tmp_path / "bomb.pth", declared)
    assert bomb.stat().st_size < 5 * 2**20
    out = run_in_a_child(["supernet", "import-ofa", str(bomb), "--out", str(tmp_path / "x.safetensors")])
    lines = str(out["stderr"]).strip().splitlines()
    assert out["rc"] == 1 and len(lines) == 1 and lines[0].startswith("error: OFA checkpoint "), out
    assert f"bomb.pth: zip entry '{BOMB_NAME}': {fragment}" in lines[0]
    assert float(out["mb"]) < PEAK_MEMORY_MB, out  # type: ignore[arg-type]
    assert not (tmp_path / "x.safetensors").exists()


def test_checkpoint_that_is_no_file_is_refused(tmp_path: Path) -> None:
    for source, kind in (("/dev/zero", "a character device"), (str(tmp_path), "a folder")):
        result = runner.invoke(app, ["supernet", "import-ofa", source, "--out", str(tmp_path / "x.safetensors")])
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert result.stderr.startswith(f"error: OFA checkpoint {source}: ")
        assert ("expected a regular file, got " + kind) in result.stderr or "Is a directory" in result.stderr


def test_checkpoint_that_is_a_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    """A named pipe with no writer: opening it for reading waited for one forever (run in a child with a timeout)."""
    os.mkfifo(tmp_path / "pipe.pth")
    out = run_in_a_child(["supernet", "import-ofa", str(tmp_path / "pipe.pth"), "--out", str(tmp_path / "x")], 60)
    assert out["rc"] == 1 and "expected a regular file, got a pipe" in str(out["stderr"]), out


@pytest.mark.slow
def test_long_csv_lines_and_files_are_refused(url: str, tmp_path: Path) -> None:
    (tmp_path / "long.csv").write_text("arch_str,e\n" + NB201_ARCH + "," + "1" * (2 << 20) + "\n")
    one_line_error(
        ["import", str(tmp_path / "long.csv"), "--space", "nb201", "--device", "e", "--metric", "latency_ms",
         "--column", "e"],
        url,
        "long.csv: expected lines of at most 1,048,576 characters, line 2 is longer",
    )  # fmt: skip
    with (tmp_path / "big.csv").open("wb") as fh:  # sparse: 300 MB declared, nothing written
        fh.truncate(300 * 2**20)
    one_line_error(
        ["lut", "import", str(tmp_path / "big.csv"), "--device", "e"],
        url,
        "big.csv: expected a file of at most 268,435,456 bytes, got 314,572,800 bytes",
    )


# ---------------------------------------------------------------------------------------------------- dashboard
@pytest.mark.parametrize(
    ("content", "fragment"),
    [(ALIAS_BOMB.encode(), "aliases expanded"), (BINARY, "expected UTF-8 text, got binary data at byte")],
)
@pytest.mark.slow
def test_dashboard_upload_shows_one_line(
    content: bytes, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("HWPARETO_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("HWPARETO_JOBS_DIR", str(tmp_path / "jobs"))
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "devices.py"), default_timeout=90)
    at.run()
    at.radio(key="profile_source").set_value("upload a device YAML").run()
    at.get("file_uploader")[0].set_value(("dev.yaml", content, "application/x-yaml"))  # type: ignore[union-attr]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and errors[0].startswith("error: device file dev.yaml: ")
    assert fragment in errors[0]


def test_dashboard_is_served_without_error_details() -> None:
    from dashboard import streamlit_command

    command = streamlit_command()
    assert command[command.index("--client.showErrorDetails") + 1] == "none"
