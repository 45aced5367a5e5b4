"""SuperNets trained elsewhere: ``supernet import-ofa``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwpareto.cli._app import supernet_app
from hwpareto.cli._common import JsonOpt, command, emit


@supernet_app.command("import-ofa")
@command
def import_ofa(
    file: Annotated[Path, typer.Argument(help="OFA checkpoint (.pth: {'state_dict': ...} or a bare state dict).")],
    out: Annotated[Path, typer.Option("--out", help="Safetensors checkpoint to write.")],
    json_out: JsonOpt = False,
) -> None:
    """Convert Once-for-All's MobileNetV3 checkpoint (ofa_mbv3_d234_e346_k357_w1.0 or _w1.2) into a safetensors
    checkpoint of space ofa-mbv3-w1.0 / ofa-mbv3-w1.2. Read with a restricted unpickler: tensors and plain
    containers only, anything else is refused before it runs."""
    from supernet.mbv3._ofa import import_ofa_checkpoint

    result = import_ofa_checkpoint(file, out)
    emit(
        result.to_dict(),
        json_out,
        f"imported OFA MobileNetV3 w{result.width} ({result.tensors} tensors) as space {result.space!r}: "
        f"{result.checkpoint}",
    )
