"""Files written so that nothing is lost: one atomic writer, one CSV reader and writer,
and an OS lock that keeps one process per folder. No torch, no Ray here."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from addray.errors import DataError, StudyError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error it
    replaces ``path`` in one step, so a crash leaves the old file or the new one, never
    half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if the block failed


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_csv(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The rows of a CSV file that addray writes ([] if there is none yet).

    A study that is running appends to its files, so a last line without its newline
    is a row being written: it is left out. A header without a ``required`` column, or
    a row cut short anywhere else, is a DataError naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop the row still being written
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from None
    if not records:
        return []
    header, rows = records[0], []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: not an addray results file (no column {', '.join(missing)})")
    for lineno, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise DataError(f"{path}:{lineno}: {len(record)} fields where the header has "
                            f"{len(header)} (truncated or corrupt)")
        rows.append(dict(zip(header, record, strict=True)))
    return rows


def _line(columns: list[str], row: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore").writerow(row)
    return buf.getvalue()


def write_csv(path: str | Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Rewrite a whole CSV file atomically."""
    header = ",".join(columns) + "\r\n"
    write_text(path, header + "".join(_line(columns, r) for r in rows))


def append_csv(path: str | Path, columns: list[str], row: dict[str, Any]) -> None:
    """Append one row (with a header first if the file is new), in one write. A file
    written by an older version keeps its own columns."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as f:
            columns = next(csv.reader(f), columns)
        text = _line(columns, row)
    else:
        text = ",".join(columns) + "\r\n" + _line(columns, row)
    with path.open("a", newline="") as f:
        f.write(text)


class FolderLock:
    """An OS lock on ``FOLDER/.lock``, held for the life of this process (or until
    ``release``): a second process asking for it is refused with the holder's host and
    pid. The lock dies with its process, so a killed driver leaves no stale lock."""

    def __init__(self, folder: str | Path, what: str):
        self.path = Path(folder) / ".lock"
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StudyError(f"{self.what}: in use by {holder}; wait for it to end (or stop "
                             f"it) before starting another run here") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file holding one object; unreadable or anything else is a one-line DataError."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value
