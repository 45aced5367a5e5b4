"""The ``hwpareto`` Typer application and its command groups (commands register on them)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup


class _OneLineErrors(TyperGroup):
    """The ``hwpareto`` group: a bad option or argument (``--seed -5``, ``--trials 1e23``) is one line on stderr,
    ``error: Invalid value for '--seed': ...``, and exit code 2, like every other user error (no usage box)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        kwargs["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:  # a bare group: its help, as before
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            typer.echo("error: " + " ".join(exc.format_message().split()), err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="hwpareto",
    help="Hardware-aware search and Pareto analysis for weight-shared neural networks.",
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
space_app = typer.Typer(help="Inspect and register search spaces.", no_args_is_help=True)
db_app = typer.Typer(help="Store schema maintenance.", no_args_is_help=True)
device_app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
lut_app = typer.Typer(help="Move lookup tables in and out of the store.", no_args_is_help=True)
train_app = typer.Typer(help="Train predictors from stored measurements.", no_args_is_help=True)
supernet_app = typer.Typer(help="Bring in SuperNet checkpoints trained elsewhere.", no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(db_app, name="db")
app.add_typer(device_app, name="device")
app.add_typer(lut_app, name="lut")
app.add_typer(train_app, name="train")
app.add_typer(supernet_app, name="supernet")
