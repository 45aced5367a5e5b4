"""Test-only STUB of ``torchvision.transforms`` (see the package docstring): the classes ``ofa`` names at import
time (it subclasses ``RandomResizedCrop`` and reads ``RandomCrop.get_params``); using any of them raises."""

from __future__ import annotations

from typing import Any

from torchvision.transforms import functional

__all__ = [
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "functional",
]


class _Stub:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"torchvision stub (tests only): {type(self).__name__} is not available")


class CenterCrop(_Stub): ...


class ColorJitter(_Stub): ...


class Compose(_Stub): ...


class Normalize(_Stub): ...


class RandomCrop(_Stub): ...


class RandomHorizontalFlip(_Stub): ...


class RandomResizedCrop(_Stub): ...


class Resize(_Stub): ...


class ToTensor(_Stub): ...
