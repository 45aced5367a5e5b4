"""What every ``hwpareto`` command shares: the common options, integer bounds, the one-line error wrapper,
output helpers (JSON, tables) and readers of user files."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet import SearchSpace, SubNetConfig, get_space, list_spaces, show_name

if TYPE_CHECKING:
    from hwpareto.store import Store

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HWPARETO_STORE",
        help="SQLite file path or SQLAlchemy URL (postgresql://...). Default: ~/.local/share/hwpareto/hwpareto.db.",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ExportCheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="SuperNet weights (safetensors, e.g. from supernet import-ofa); default: the checkpoint recorded for the "
        "space (by eval-subnets or import-ofa), else the shipped one.",
    ),
]
RandomWeightsOpt = Annotated[
    bool, typer.Option("--random-weights", help="Export an untrained SuperNet's weights when none are known.")
]
# every integer option is bounded (a huge --trials or --batch is a one-line error, not an overflow in the store)
SEED_MAX = 2**32 - 1
COUNT_MAX = 1_000_000_000
BATCH_MAX = 65_536
THREADS_MAX = 1_024
WORKERS_MAX = 256


def command(fn: F) -> F:
    """Turn user errors into a one-line message on stderr and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HwparetoError as exc:
            typer.echo(f"error: {show_name(str(exc))}", err=True)  # stored names predating the check: escaped
            raise typer.Exit(1) from None
        except UnicodeDecodeError as exc:  # a reader without its own check: still one line
            typer.echo(f"error: input file: expected UTF-8 text, got binary data at byte {exc.start}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:
            message = environment_failure(exc, kwargs.get("store"))
            if message is None:
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def environment_failure(exc: BaseException, store: Any) -> str | None:
    """One line for a failure of the machine rather than of hwpareto (a full disk), found anywhere in the chain
    of ``exc`` (Optuna and SQLAlchemy wrap the driver's error); None for anything else. Never SQL parameters."""
    import errno
    import os

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            where = cause.filename or "output"
            return f"{where}: cannot write ({os.strerror(cause.errno)}); free some space and rerun"
        if isinstance(cause, DBAPIError):
            orig = cause.orig
            text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            if type(orig).__name__ == "DiskFull" or "disk is full" in text or "No space left" in text:
                raw = store or os.environ.get("HWPARETO_STORE") or "the default store"
                try:
                    url = make_url(raw).render_as_string(hide_password=True)
                except Exception:  # a file path, not a URL: shown as given
                    url = raw
                return f"store {url}: cannot write ({text}); free some space and rerun"
        cause = cause.__cause__ or cause.__context__
    return None


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else escape(show_name(row.get(c))) for c in columns))
    Console(soft_wrap=True).print(table)


def emit(data: Any, json_out: bool, text: str | Callable[[], None]) -> None:
    """A command's result, written once: ``data`` as JSON with ``--json``, else the human form ``text`` (a line,
    lines joined by newlines, or a callable that prints it; only called without ``--json``)."""
    if json_out:
        echo_json(data)
    elif isinstance(text, str):
        typer.echo(text)
    else:
        text()


def emit_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    json_out: bool,
    title: str | None = None,
    empty: str | None = None,
    cells: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> None:
    """A listing, written once: with ``--json`` the rows; else the ``empty`` hint when there are none (when given),
    else a table of ``columns`` (``cells`` turns a row into its displayed cells)."""
    if json_out:
        echo_json(list(rows))
    elif not rows and empty is not None:
        typer.echo(empty)
    else:
        print_table([dict(cells(r)) if cells else dict(r) for r in rows], columns, title=title)


def exactly_one(field: str, first: object, second: object) -> None:
    """Refuse both or neither of two alternative inputs; ``field`` names them (``CONFIG/--in``)."""
    if (first is None) == (second is None):
        raise InvalidValueError(field, "exactly one of them", "both" if first is not None else "neither")


def quiet_optuna() -> None:
    """Optuna's INFO lines ("A new study created ...") off: the commands say what they do themselves."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_store(url: str | None) -> Store:
    """The store at ``url`` (path or SQLAlchemy URL; ``None``: ``$HWPARETO_STORE`` or the default file); the only
    way commands open it."""
    from hwpareto.store import Store

    return Store.open(url)


def upgrade_store(url: str | None) -> tuple[str | None, str | None]:
    """Upgrade the schema of the store at ``url`` (as :func:`open_store` resolves it); the revisions before and
    after."""
    from hwpareto.store import Store

    return Store.upgrade(url)


def resolve_space(name: str, store_url: str | None) -> SearchSpace:
    """A built-in space, else one registered in the store."""
    if name in list_spaces():
        return get_space(name)
    return open_store(store_url).spaces.get(name)


def read_json(path: Path, what: str) -> Any:
    from hwpareto.safeload import load_json

    return load_json(path, what)


def config_summary(space: SearchSpace, config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "space": space.name,
        "key": config.key,
        "values": config.values,
        "record": space.to_record(config),
    }
    if space.has_model:
        out["params"] = space.params(config)
        out["macs"] = space.macs(config)
    return out


CONFIG_FORMATS = ("hwpareto", "ofa")
ConfigFormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="Configs printed as hwpareto (dimension values) or ofa (OFA's dict: wid, ks, e, d lists, r; MobileNetV3 "
        "spaces).",
    ),
]


def config_printer(space: SearchSpace, fmt: str) -> Callable[[SubNetConfig], dict[str, Any]]:
    """How ``--format fmt`` prints configs of ``space``; an unknown format, or ofa for a space without an OFA form,
    is refused here, before any work."""
    if fmt not in CONFIG_FORMATS:
        raise InvalidValueError("--format", " or ".join(CONFIG_FORMATS), fmt)
    if fmt == "hwpareto":
        return lambda config: dict(config.values)
    from supernet.mbv3 import ofa_dict, ofa_form

    ofa_form(space)
    return functools.partial(ofa_dict, space)


def parse_pair(item: str, option: str, form: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise InvalidValueError(option, form, item)
    return name, value


def parse_scalar(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def read_configs(sp: SearchSpace, path: Path) -> list[Any]:
    """Configs from JSONL (one config or {space, values} per line) or CSV (the space's record columns)."""
    import csv as csv_module

    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv_module.DictReader(fh))
        except OSError as exc:
            raise HwparetoError(f"configs {path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise HwparetoError(f"configs {path}: expected UTF-8 text, got binary data at byte {exc.start}") from None
        except csv_module.Error as exc:
            raise HwparetoError(f"configs {path}: not a readable CSV ({exc})") from None
        return [at_row(i + 2, functools.partial(sp.from_record, row)) for i, row in enumerate(rows)]
    from hwpareto.safeload import parse_json, read_text

    lines = read_text(path, "configs", max_bytes=256 * 1024 * 1024).splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            doc = parse_json(line, f"configs {path}: line {i}")
            out.append(at_row(i, functools.partial(sp.validate, doc)))
    return out


def at_row(row: int, parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InvalidValueError as exc:
        raise HwparetoError(f"row {row}: {exc}") from None
