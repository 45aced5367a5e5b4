"""``init`` and ``db upgrade``: the store's schema."""

from __future__ import annotations

import typer

from hwpareto.cli._app import app, db_app
from hwpareto.cli._common import (
    JsonOpt,
    StoreOpt,
    command,
    emit,
    open_store,
    upgrade_store,
)


# ---------------------------------------------------------------------------------------------------- store
@app.command()
@command
def init(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Create the store (hwpareto's tables and Optuna's, one database) or check an existing one."""
    s = open_store(store)
    s.optuna_storage()
    info = {"store": s.url, "revision": s.revision(), "devices": len(s.devices.list()), "spaces": s.spaces.names()}
    emit(info, json_out, f"store ready: {info['store']} (schema {info['revision']}, {info['devices']} device(s))")


@db_app.command("upgrade")
@command
def db_upgrade(store: StoreOpt = None) -> None:
    """Upgrade the store's schema to this version of hwpareto (data is kept)."""
    before, after = upgrade_store(store)
    typer.echo(f"store schema: {before or 'empty'} -> {after}")
