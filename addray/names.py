"""Names that become folder names (studies, configs): one rule, one message."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RULE = ("must be a plain name: letters, digits, '.', '_' or '-', starting with a letter "
        "or digit, at most 100 characters (no '/', no '..', not absolute)")


def is_name(value: object) -> bool:
    """True if ``value`` can be used as one folder name inside a results folder."""
    return isinstance(value, str) and bool(_NAME.fullmatch(value)) and ".." not in value
