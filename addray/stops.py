"""Stop signals: SIGTERM (what kill, systemd, Kubernetes and Slurm send) and SIGHUP (a
closed terminal) stop a command the way Ctrl-C does, so a study saves its state, prints
how to resume and is left marked "interrupted"; the exit status is then 128 + the
signal (143, 129), as for a process the signal ended. No torch, no Ray here."""

from __future__ import annotations

import signal
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


def as_interrupt() -> None:
    """From now on SIGTERM and SIGHUP raise SIGINT in this process: its handler then
    runs (Python's KeyboardInterrupt, or Tune's own while a study runs). Called again
    after Ray starts, which installs handlers of its own."""
    for sig in SIGNALS:
        signal.signal(sig, _forward)


def _forward(signum: int, _frame: Any) -> None:
    _received.append(signum)
    signal.raise_signal(signal.SIGINT)


def received() -> int | None:
    """The first stop signal this process received, if any."""
    return _received[0] if _received else None


def exit_code(interrupted: int = 130) -> int:
    """The exit status of an interrupted command: 128 + the stop signal, else ``interrupted``."""
    sig = received()
    return 128 + sig if sig is not None else interrupted
