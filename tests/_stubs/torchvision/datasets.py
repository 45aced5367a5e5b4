"""Test-only STUB of ``torchvision.datasets`` (see the package docstring): the names ``ofa`` imports."""

from __future__ import annotations

from typing import Any

__all__ = ["ImageFolder"]


class ImageFolder:
    """Stub: refuses to be used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("torchvision stub (tests only): ImageFolder is not available")
