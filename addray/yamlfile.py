"""Strict YAML for every file a user writes (experiment configs, search spaces, ``--set``
values), and the one number parser for their values. No torch, no Ray here.

Stricter than ``yaml.safe_load``: a repeated key is an error (PyYAML keeps the last one
silently), anchors and aliases are refused (nothing here needs them, and they make
"billion laughs" documents possible), and a file over 1 MiB or nested deeper than 32
levels is refused. Numbers must be finite: ``.inf``, ``.nan`` and ``1e400`` are errors.
Only true and false are booleans (as in YAML 1.2): PyYAML's YAML 1.1 would also read
yes, no, on and off as booleans, so ``compile: on`` would arrive as True.
"""

from __future__ import annotations

import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 32

# PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4': accept such strings as numbers
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 60, 60, 6, 4, 2


def show(value: Any) -> str:
    """A short repr for an error message, whatever the size of the value."""
    return _SHOW.repr(value)


def to_number(value: Any) -> int | float | None:
    """``value`` as a finite int or float, or None if it is not one (booleans are not
    numbers; numeric strings such as '1e-4' are)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not supported",
                self.peek_event().start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse(text: str, source: str, error: type[Exception]) -> Any:
    """Parse YAML text strictly; a problem raises ``error`` naming ``source`` and line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{source}:{line} not valid YAML: {problem}") from None


def load(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Read and parse a YAML file; every failure is one ``error`` naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{path}: {what} is larger than {MAX_BYTES >> 20} MiB")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text (UTF-8) {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
    return parse(text, str(path), error)
