"""The ``hwpareto`` command line, one module per command group; importing them registers their commands in the
order ``hwpareto --help`` lists them."""

from __future__ import annotations

# isort: off
from hwpareto.cli import store, spaces, data, devices, predictors, search, training, supernet, demo  # noqa: F401

# isort: on
from hwpareto.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="hwpareto")
