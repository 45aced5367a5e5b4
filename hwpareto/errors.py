"""Error types shared by every hwpareto package.

Every error a user can trigger with bad input is a :class:`HwparetoError`: a one-line message that names the
field, what is allowed and what was received. The CLI prints the message and exits non-zero, never a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CapabilityError", "HwparetoError", "InvalidValueError"]


class HwparetoError(ValueError):
    """Base class of the errors caused by user input or environment (bad config, file, URL, store)."""


class InvalidValueError(HwparetoError):
    """A field holds a value outside what is allowed.

    The message reads ``<field>: expected <allowed>, got <value>``.
    """

    def __init__(self, field: str, allowed: str, got: Any) -> None:
        self.field = field
        self.allowed = allowed
        self.got = got
        super().__init__(f"{field}: expected {allowed}, got {_show(got)}")


class CapabilityError(HwparetoError):
    """An operation the object does not support (e.g. extracting a SubNet of a declarative space)."""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
