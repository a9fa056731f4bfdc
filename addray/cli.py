"""What every addray command line shares: a user's mistake is one line and exit 2."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from addray import stops
from addray.errors import ConfigError, UserError


def run(main: Callable[[], int | None]) -> None:
    """Call ``main`` and exit with its code; a user error prints ``error: ...`` and exits 2;
    a file the system cannot write or read (a full or read-only disk, no permission) is
    one line naming it, exit 1; SIGTERM and SIGHUP are Ctrl-C (``addray.stops``)."""
    stops.as_interrupt()
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted" + (f" (signal {signal.Signals(stops.received()).name})"
                               if stops.received() else ""), file=sys.stderr)
        sys.exit(stops.exit_code())
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a file: a bug, shown whole
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    if code == 130:
        code = stops.exit_code()
    sys.exit(code or 0)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: ...``) with exit 2, like every other
    user mistake, instead of the usage text followed by the error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def bounded(kind: type, low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a finite number of ``kind`` within low..high."""

    def parse(text: str) -> int | float:
        what = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: must be >= {low:g} and <= {high:g}")
        return value

    return parse


def setting(text: str) -> tuple[str, Any]:
    """An argparse type for ``--set KEY=VALUE`` (the value read as strict YAML)."""
    from addray.core.config import parse_setting

    try:
        return parse_setting(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """A folder to write into: refused in one line if it exists as a file or is a link."""
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(f"{option} {path}: is a symbolic link (to {os.readlink(path)}); "
                          f"addray writes through no link: name the real folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder")
    return path
