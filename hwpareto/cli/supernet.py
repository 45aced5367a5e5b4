"""SuperNets trained elsewhere: ``supernet import-ofa``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwpareto.cli._app import supernet_app
from hwpareto.cli._common import JsonOpt, StoreOpt, command, emit, open_store


@supernet_app.command("import-ofa")
@command
def import_ofa(
    file: Annotated[Path, typer.Argument(help="OFA checkpoint (.pth: {'state_dict': ...} or a bare state dict).")],
    out: Annotated[Path, typer.Option("--out", help="Safetensors checkpoint to write.")],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Convert Once-for-All's MobileNetV3 checkpoint (ofa_mbv3_d234_e346_k357_w1.0 or _w1.2) into a safetensors
    checkpoint of space ofa-mbv3-w1.0 / ofa-mbv3-w1.2. Read with a restricted unpickler: tensors and plain
    containers only, anything else is refused before it runs. The written checkpoint is recorded in the store
    (path, SHA-256) as the trained SuperNet of its space (OFA's published accuracies come from these weights), so
    exports of that space use it by default."""
    from pareto import record_checkpoint
    from supernet import get_space
    from supernet.mbv3 import import_ofa_checkpoint

    db = open_store(store)  # opened first: a store that cannot be opened leaves no checkpoint behind unrecorded
    result = import_ofa_checkpoint(file, out)
    record_checkpoint(db, get_space(result.space), result.checkpoint, recorded_by="import-ofa", evaluated=True)
    emit(
        result.to_dict(),
        json_out,
        f"imported OFA MobileNetV3 w{result.width} ({result.tensors} tensors) as space {result.space!r}: "
        f"{result.checkpoint}",
    )
