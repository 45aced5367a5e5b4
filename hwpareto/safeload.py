"""The one safe reader of user files (YAML, JSON, JSONL, text): size, shape and encoding limits, one-line errors.

Every YAML/JSON document a user hands to hwpareto (device YAML, space file, ZigZag hardware file, config JSON,
JSONL configs, dashboard uploads) is read here, so a hostile or careless file fails fast with a
:class:`~hwpareto.errors.HwparetoError` naming the file, the limit and the value instead of exhausting memory or
printing a traceback:

* the file is at most :data:`MAX_FILE_BYTES` (checked before reading, then while reading);
* it is UTF-8 text (else "expected UTF-8 text, got binary data at byte N");
* a YAML document holds at most :data:`MAX_ALIASES` aliases (``*name``) and, aliases expanded, at most
  :data:`MAX_NODES` nodes (a 441-byte "billion laughs" file is refused after a few hundred nodes);
* documents nest at most :data:`MAX_DEPTH` levels (YAML and JSON);
* a scalar (string or number) is at most :data:`MAX_SCALAR_CHARS` characters, an integer at most
  :data:`MAX_INT_DIGITS` digits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hwpareto.errors import HwparetoError

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_SCALAR_CHARS",
    "decode_text",
    "load_json",
    "load_yaml",
    "parse_json",
    "parse_yaml",
    "read_bytes",
    "read_text",
]

MAX_FILE_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_SCALAR_CHARS = 65_536
MAX_INT_DIGITS = 100


def read_bytes(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` (at most ``max_bytes``; a larger file is refused before it is read whole)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise HwparetoError(f"{what} {p}: cannot read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise HwparetoError(f"{what} {p}: expected a file of at most {max_bytes:,} bytes, got a larger one")
    return data


def decode_text(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), or a one-line error naming the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HwparetoError(f"{where}: expected UTF-8 text, got binary data at byte {exc.start}") from None


def read_text(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``, within ``max_bytes``."""
    return decode_text(read_bytes(path, what, max_bytes), f"{what} {Path(path)}")


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data, no tags that run code) that also counts aliases, expanded nodes and
    depth while composing, so an alias bomb or a deeply nested document stops before it grows."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}
        self._total = 0  # nodes so far, aliases expanded: stops a long flat list early too

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(f"expected at most {MAX_ALIASES} YAML aliases (*name), got more", self.peek_event())
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), self.peek_event())
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(f"expected at most {MAX_DEPTH} levels of nesting, got more", self.peek_event())
        start = self.peek_event()
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            size = 1
            if len(node.value) > MAX_SCALAR_CHARS:
                raise _Limit(
                    f"expected a value of at most {MAX_SCALAR_CHARS:,} characters, got {len(node.value):,}", start
                )
            digits = len(node.value.lstrip("+-"))
            if node.tag == "tag:yaml.org,2002:int" and digits > MAX_INT_DIGITS:
                raise _Limit(f"expected integers of at most {MAX_INT_DIGITS} digits, got {digits:,} digits", start)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes.get(id(n), 1) for n in node.value)
        else:
            size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        if size > MAX_NODES:
            raise _Limit(f"expected at most {MAX_NODES:,} values (aliases expanded), got {size:,} or more", start)
        self._sizes[id(node)] = size
        self._count(1, start)
        return node

    def _count(self, nodes: int, event: Any) -> None:
        self._total += nodes
        if self._total > MAX_NODES:
            raise _Limit(f"expected at most {MAX_NODES:,} values (aliases expanded), got more", event)


class _Limit(Exception):
    def __init__(self, message: str, event: Any) -> None:
        mark = getattr(event, "start_mark", None)
        super().__init__(f"line {mark.line + 1}: {message}" if mark is not None else message)


def parse_yaml(text: str | bytes, where: str) -> Any:
    """The plain data of one YAML (or JSON) document, within the limits of this module."""
    if isinstance(text, bytes):
        text = decode_text(text, where)
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    except _Limit as exc:
        raise HwparetoError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()
        raise HwparetoError(
            f"{where}: not valid YAML/JSON ({exc.__class__.__name__}: {' '.join(line.strip() for line in first[:3])})"
        ) from None
    except ValueError as exc:  # int() of a number past Python's digit limit
        raise HwparetoError(
            f"{where}: expected numbers of at most {MAX_INT_DIGITS} digits, got a longer one "
            f"({str(exc).splitlines()[0][:80]})"
        ) from None
    except RecursionError:
        raise HwparetoError(f"{where}: expected at most {MAX_DEPTH} levels of nesting, got more") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and parse a YAML/JSON file (``what`` names it in errors: "device file", "space file", ...)."""
    p = Path(path)
    return parse_yaml(read_bytes(p, what, max_bytes), f"{what} {p}")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _JsonLimit(f"expected integers of at most {MAX_INT_DIGITS} digits, got {len(text.lstrip('-')):,} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS * 4:
        raise _JsonLimit(f"expected numbers of at most {MAX_INT_DIGITS * 4} characters, got {len(text):,}")
    return float(text)


class _JsonLimit(Exception):
    pass


def _depth(doc: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def parse_json(text: str | bytes, where: str) -> Any:
    """One JSON document, within the limits of this module (depth, integer digits, scalar length)."""
    if isinstance(text, bytes):
        text = decode_text(text, where)
    if len(text) > MAX_FILE_BYTES:
        raise HwparetoError(f"{where}: expected at most {MAX_FILE_BYTES:,} characters of JSON, got {len(text):,}")
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise HwparetoError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except _JsonLimit as exc:
        raise HwparetoError(f"{where}: {exc}") from None
    except RecursionError:
        raise HwparetoError(f"{where}: expected at most {MAX_DEPTH} levels of nesting, got more") from None
    if _depth(doc) > MAX_DEPTH:
        raise HwparetoError(f"{where}: expected at most {MAX_DEPTH} levels of nesting, got more")
    return doc


def load_json(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and parse a JSON file within the limits of this module."""
    p = Path(path)
    return parse_json(read_bytes(p, what, max_bytes), f"{what} {p}")
