"""Files written so that nothing is lost and read so that nothing escapes: one atomic
writer, one bounded reader, one CSV reader and writer, and an OS lock that keeps one
process per folder. No write follows a symbolic link it did not create: temporary files
are created anew (``O_EXCL``), appends and the lock refuse a link (``O_NOFOLLOW``), and a
folder addray writes into may not be a link. No torch, no Ray here."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import socket
import stat
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
    # created here, anew: whatever was planted under that name (a link) is removed, not
    # followed, so the block writes only into a file this process made
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if the block failed


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def not_a_link(path: str | Path, what: str) -> Path:
    """``path``, refused in one line if it is a symbolic link (a dangling one too): a
    folder or file that addray writes into is never reached through a link."""
    path = Path(path)
    if path.is_symlink():
        raise StudyError(f"{what} {path}: is a symbolic link (to {os.readlink(path)}); addray "
                         f"writes through no link: name the real folder, or remove the link")
    return path


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def read_bounded(path: str | Path, limit: int, what: str,
                 error: type[Exception] = DataError) -> bytes:
    """The bytes of a file a user named, at most ``limit`` of them: the bound is on the
    bytes read, not the size the file reports (a device such as /dev/zero reports 0).
    Every failure is one ``error`` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if stat.S_ISDIR(os.fstat(f.fileno()).st_mode):
                raise error(f"{path}: is a folder, not a {what}")
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise error(f"{path}: {what} is larger than {_size(limit)} (read stopped there)")
    return data


CSV_LIMIT = 1 << 30  # trials.csv and curves.csv: a study of 100,000 reports is ~50 MiB
JSON_LIMIT = 16 << 20  # study.json, metrics.json


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
        text = read_bounded(path, CSV_LIMIT, "results file").decode("utf-8")
    except UnicodeDecodeError as exc:
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
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            not_a_link(path, "results file")
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StudyError(f"{path}: not a regular file; addray appends only to its own "
                             f"results files")
        head = os.pread(fd, 1 << 16, 0).decode(errors="replace")
        if head:
            columns = next(csv.reader(io.StringIO(head.split("\n", 1)[0])), columns)
            text = _line(columns, row)
        else:
            text = ",".join(columns) + "\r\n" + _line(columns, row)
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


class FolderLock:
    """An OS lock on ``FOLDER/.lock``, held for the life of this process (or until
    ``release``): a second process asking for it is refused with the holder's host and
    pid. The lock dies with its process, so a killed driver leaves no stale lock."""

    def __init__(self, folder: str | Path, what: str):
        self.path = Path(folder) / ".lock"
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        not_a_link(self.path.parent, "folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # not inherited by children; never through a link
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise StudyError(f"{self.path}: is a symbolic link, not {self.what}'s lock file; "
                             f"remove it (addray writes through no link)") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise StudyError(f"{self.path}: not a lock file of addray's (a regular file with "
                             f"one name); remove it before running here")
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
        value = json.loads(read_bounded(path, JSON_LIMIT, "JSON file"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value
