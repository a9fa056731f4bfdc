"""Strict YAML for every file a user writes (experiment configs, search spaces, ``--set``
values), and the one number parser for their values. No torch, no Ray here.

Stricter than ``yaml.safe_load``: a repeated key is an error (PyYAML keeps the last one
silently), anchors and aliases are refused (nothing here needs them, and they make
"billion laughs" documents possible), and a file over 1 MiB or nested deeper than 32
levels is refused. Numbers must be finite: ``.inf``, ``.nan`` and ``1e400`` are errors.
Only true and false are booleans (as in YAML 1.2): PyYAML's YAML 1.1 would also read
yes, no, on and off as booleans, so ``compile: on`` would arrive as True. Numbers follow
YAML 1.2 too: YAML 1.1's sexagesimal (``1:30`` is 90) and leading-zero octal (``010`` is
8) are not numbers here, and ``number`` refuses them with that rule. An empty file is
an error, and the file is read by bytes up to the limit (a device reports size 0).
"""

from __future__ import annotations

import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from addray import files

MAX_BYTES = 1 << 20
MAX_DEPTH = 32

# PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4': accept such strings as numbers
_NUMBER = re.compile(r"^[+-]?((0|[1-9]\d*)(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
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
# YAML 1.2's integers and floats: PyYAML's 1.1 resolvers without sexagesimal (1:30) and
# without leading-zero octal (010); such values stay strings, refused by ``ambiguous``
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
for _first, _resolvers in _StrictLoader.yaml_implicit_resolvers.items():
    _resolvers[:] = [(tag, rx) for tag, rx in _resolvers if tag not in (_INT, _FLOAT)]
_StrictLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
                       r"|[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                       r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_AMBIGUOUS = re.compile(r"^[-+]?(?:0[0-9_]+(?:\.[0-9_]*)?|[0-9][0-9_]*(?::[0-5]?[0-9])+"
                        r"(?:\.[0-9_]*)?)$")
AMBIGUOUS_RULE = ("not a number here: a leading zero or a ':' reads differently across YAML "
                  "versions (YAML 1.1 reads 010 as 8 and 1:30 as 90); write the number in "
                  "plain decimal")


def ambiguous(value: Any) -> bool:
    """Whether ``value`` is a string that YAML 1.1 would have read as another number."""
    return isinstance(value, str) and bool(_AMBIGUOUS.match(value.strip()))


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
        text = files.read_bounded(path, MAX_BYTES, what, error).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text (UTF-8) {what}") from None
    value = parse(text, str(path), error)
    if value is None:
        raise error(f"{path}: the {what} is empty (nothing but blanks or comments); an "
                    f"empty {what} would silently mean every default")
    return value
