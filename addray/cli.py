"""What every addray command line shares: user mistakes become one line and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from addray.errors import UserError


def run(main: Callable[[], int | None]) -> None:
    """Call ``main`` and exit with its code; a user error prints ``error: ...`` and exits 2."""
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
