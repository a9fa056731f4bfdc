"""Results on S3-compatible object storage: ``--results s3://BUCKET/PREFIX``.

Tune writes its experiment and every trial's checkpoints there itself (its
``storage_path`` through pyarrow's S3 filesystem): workers upload, no node needs a shared
disk. addray's own files (study.json, trials.csv, curves.csv; a search's optuna.db and
models) are written by the driver to a local copy of the study folder and each is then
put whole, as one object: an object store has no rename, but a PUT replaces an object
atomically (a reader sees the old object or the new one, never a part), so no reader
ever sees a half-written file. A
resumed driver, on any machine, first gets them back. One driver holds a study: its lock
is an object created with a conditional PUT (``If-None-Match: *``, which S3 and the
S3-compatible stores answer 412 if it exists), refreshed while the driver runs, and taken
over only once its holder is gone (its process, on the same host) or silent for
``STALE_S``.

Where the store is: the URI's ``endpoint_override`` query (``s3://b/p?endpoint_override=
host:port&scheme=http``), else ``AWS_ENDPOINT_URL``, else AWS; credentials and region
from the standard AWS environment variables. Ray and torch are not imported here.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from addray.errors import ConfigError, StudyError

FILES = ("study.json", "trials.csv", "curves.csv")  # what the driver writes, put whole
PULLED = (*FILES, "optuna.db")  # what a driver gets back first (a search's history too)
LOCK = ".addray-lock.json"
STALE_S = 120.0  # a lock not refreshed for this long is taken over
REFRESH_S = 20.0
# the first write to the store that failed in this process: Tune wraps an error raised in
# its callbacks (the recorder's puts) in its own, and the driver says this one instead
FAILED: StudyError | None = None


def is_uri(value: str | os.PathLike) -> bool:
    """Whether ``--results`` names object storage rather than a folder."""
    return isinstance(value, str) and "://" in value and not value.startswith("file://")


@dataclass(frozen=True)
class Location:
    """A folder in a bucket: ``bucket``, ``key`` (no slashes at either end), the
    endpoint (None: the environment's), and the scheme to reach it."""

    uri: str
    bucket: str
    key: str
    endpoint: str | None
    scheme: str

    @classmethod
    def parse(cls, uri: str, what: str = "--results") -> Location:
        parts = urlsplit(uri)
        if parts.scheme != "s3":
            raise ConfigError(f"{what} {uri}: only s3:// URIs (S3 and S3-compatible "
                              f"stores) or local folders are supported")
        if not parts.netloc:
            raise ConfigError(f"{what} {uri}: no bucket; expected s3://BUCKET/PREFIX")
        query = parse_qs(parts.query)
        unknown = set(query) - {"endpoint_override", "scheme", "region"}
        if unknown:
            raise ConfigError(f"{what} {uri}: unknown query option {sorted(unknown)[0]!r} "
                              f"(known: endpoint_override, scheme, region)")
        endpoint = (query.get("endpoint_override") or [None])[0]
        scheme = (query.get("scheme") or ["https"])[0]
        if scheme not in ("http", "https"):
            raise ConfigError(f"{what} {uri}: scheme={scheme}: must be http or https")
        return cls(uri, parts.netloc, parts.path.strip("/"), endpoint, scheme)

    def child(self, name: str) -> Location:
        key = f"{self.key}/{name}" if self.key else name
        base, _, query = self.uri.partition("?")
        return Location(f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else ""),
                        self.bucket, key, self.endpoint, self.scheme)

    @property
    def path(self) -> str:
        """The folder as pyarrow's filesystem names it: ``bucket/key``."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    @property
    def plain(self) -> str:
        """The URI without its query, as printed."""
        return self.uri.split("?")[0]

    def endpoint_url(self) -> str | None:
        if self.endpoint is None:
            return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return self.endpoint if "://" in self.endpoint else f"{self.scheme}://{self.endpoint}"

    def filesystem(self) -> Any:
        """pyarrow's S3 filesystem for this location (what Tune writes through)."""
        from pyarrow import fs

        url = self.endpoint_url()
        kwargs: dict[str, Any] = {"region": os.environ.get("AWS_REGION")
                                  or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
        if url is not None:
            parts = urlsplit(url)
            kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme)
        return fs.S3FileSystem(**kwargs)


def client(location: Location) -> Any:
    """A boto3 S3 client for the location's endpoint (addray's own files and the lock:
    each a single PUT or GET of a whole object)."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(f"--results {location.plain}: object storage needs boto3 "
                          f"(pip install -e \".[s3]\")") from None
    return boto3.client("s3", endpoint_url=location.endpoint_url())


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class Store:
    """addray's files of one study folder on object storage."""

    def __init__(self, location: Location):
        self.location = location
        self.s3 = client(location)

    def _key(self, name: str) -> str:
        return f"{self.location.key}/{name}" if self.location.key else name

    def get(self, name: str, local: Path) -> bool:
        """Copy object ``name`` to ``local``; False if there is none."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.s3.get_object(Bucket=self.location.bucket,
                                      Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise StudyError(f"{self.location.plain}/{name}: cannot read it "
                             f"({_first_line(exc)})") from None
        except BotoCoreError as exc:
            raise StudyError(f"{self.location.plain}/{name}: cannot reach the store to "
                             f"read it ({_first_line(exc)})") from None
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        return True

    def put(self, local: Path, name: str | None = None) -> None:
        """Put ``local`` whole as object ``name`` (default: its file name): one PUT, so
        the object is the old one or the new one, never a part."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = name or local.name
        try:
            self.s3.put_object(Bucket=self.location.bucket, Key=self._key(name),
                               Body=local.read_bytes())
        except (BotoCoreError, ClientError) as exc:
            global FAILED
            FAILED = StudyError(f"{self.location.plain}/{name}: cannot write it "
                                f"({_first_line(exc)}); the study stops here and its copy "
                                f"there is as last written: resume with --resume")
            raise FAILED from None

    def pull(self, local_dir: Path) -> list[str]:
        """Get addray's files of this study into ``local_dir``; the names found."""
        return [n for n in PULLED if self.get(n, local_dir / n)]

    def copy_folder(self, source: str, target: str) -> None:
        """Copy every object under ``source/`` to the same name under ``target/`` (names
        relative to this location), each with one server-side copy."""
        prefix = f"{self._key(source)}/"
        for key in self.listing():
            if key.startswith(prefix):
                self.s3.copy_object(Bucket=self.location.bucket,
                                    Key=f"{self._key(target)}/{key[len(prefix):]}",
                                    CopySource={"Bucket": self.location.bucket, "Key": key})

    def listing(self) -> list[str]:
        """The keys at or under this location."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.location.key}/" if self.location.key else ""
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix)
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StudyError(f"{self.location.plain}: cannot list it "
                             f"({_first_line(exc)})") from None


_COPIES: dict[str, Path] = {}


def local_copy(location: Location) -> Path:
    """This process's local copy of a study folder on object storage: a private folder,
    made once per process and study (a driver's files are written there, then put)."""
    if location.uri not in _COPIES:
        digest = sha256(location.uri.encode()).hexdigest()[:12]
        folder = Path(tempfile.mkdtemp(prefix=f"addray-{digest}-"))
        atexit.register(shutil.rmtree, folder, True)
        Store(location).pull(folder)  # what the study holds so far (a driver pulls again
        _COPIES[location.uri] = folder  # under its lock)
    return _COPIES[location.uri]


def fetch_studies(location: Location, local_root: Path) -> int:
    """Copy addray's files of every study at or under ``location`` (not Tune's
    experiment) into ``local_root``, keeping their folders; how many files."""
    store = Store(location)
    prefix = f"{location.key}/" if location.key else ""
    n = 0
    for key in store.listing():
        parts = key[len(prefix):].split("/")
        if parts[-1] not in FILES or "tune" in parts or ".." in parts:
            continue
        store.get(key[len(prefix):], local_root.joinpath(*parts))
        n += 1
    if n == 0:
        raise StudyError(f"{location.plain}: no study there (no study.json, trials.csv or "
                         f"curves.csv at or under it)")
    return n


def local_checkpoint(path: str) -> str:
    """A checkpoint to read: ``path`` itself, or for an s3:// URI (a ``.pt`` object, or a
    folder holding ``checkpoint.pt``) a local copy of it, removed when this process ends."""
    if not is_uri(path):
        return path
    location = Location.parse(path, "checkpoint")
    key, _, name = location.key.rpartition("/")
    if not name.endswith(".pt"):
        key, name = location.key, "checkpoint.pt"
    folder = Location(location.uri, location.bucket, key, location.endpoint, location.scheme)
    scratch = Path(tempfile.mkdtemp(prefix="addray-checkpoint-"))
    atexit.register(shutil.rmtree, scratch, True)
    if not Store(folder).get(name, scratch / name):
        raise StudyError(f"{location.plain}: no such checkpoint object "
                         f"(s3://{location.bucket}/{key + '/' if key else ''}{name})")
    return str(scratch / name)


def checkpoint_of(results: str, study: str, trial_id: str, local_dir: Path) -> Path | None:
    """A trial's newest checkpoint.pt in the study's Tune folder on object storage,
    fetched into ``local_dir``; None if it left none."""
    tune = Store(Location.parse(results).child(study).child("tune"))
    prefix = f"{tune.location.key}/"
    found = sorted(k[len(prefix):] for k in tune.listing()
                   if k.endswith("/checkpoint.pt") and k[len(prefix):].count("/") == 2
                   and k[len(prefix):].split("/")[0].endswith(f"_{trial_id}"))
    if not found:
        return None
    target = local_dir / ".fetched" / found[-1]
    tune.get(found[-1], target)
    return target


def push_file(results: str, study: str, path: Path) -> None:
    """Put a file of study ``study`` whole to its object storage (nothing for a local
    results folder)."""
    if is_uri(results):
        Store(Location.parse(results).child(study)).put(path)


class ObjectLock:
    """One driver per study on object storage: a lock object created by a conditional
    PUT, refreshed every ``REFRESH_S`` by ``refresh``, deleted by ``release``."""

    def __init__(self, location: Location, what: str):
        self.location, self.what = location, what
        self.key = f"{location.key}/{LOCK}" if location.key else LOCK
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self._client: Any = None
        self._last = 0.0
        self._stop = threading.Event()

    def client(self) -> Any:
        if self._client is None:
            self._client = client(self.location)
        return self._client

    def _body(self) -> bytes:
        return json.dumps({**self.owner, "heartbeat": time.time()}).encode()

    def _create(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().put_object(Bucket=self.location.bucket, Key=self.key,
                                     Body=self._body(), IfNoneMatch="*")
        except BotoCoreError as exc:
            raise StudyError(f"{self.location.plain}: cannot reach the store "
                             f"({_first_line(exc)})") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise StudyError(f"{self.location.plain}/{LOCK}: cannot create the study's "
                             f"lock ({code or exc})") from None
        self._last = time.time()
        return True

    def holder(self) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client().get_object(Bucket=self.location.bucket,
                                             Key=self.key)["Body"].read()
            return json.loads(body)
        except ClientError:
            return None
        except BotoCoreError as exc:
            raise StudyError(f"{self.location.plain}: cannot reach the store "
                             f"({_first_line(exc)})") from None
        except ValueError:
            return {}

    def _gone(self, holder: dict[str, Any]) -> bool:
        """Whether the holder no longer runs: its process ended on this host, or its
        heartbeat is older than STALE_S."""
        if holder.get("host") == self.owner["host"] and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return time.time() - float(holder.get("heartbeat") or 0) > STALE_S

    def acquire(self) -> None:
        if self._create():
            return
        holder = self.holder()
        if holder is not None and not self._gone(holder):
            age = time.time() - float(holder.get("heartbeat") or 0)
            raise StudyError(
                f"{self.what}: another driver runs it (host {holder.get('host')}, pid "
                f"{holder.get('pid')}, seen {age:.0f} s ago in {self.location.plain}/{LOCK}); "
                f"one driver at a time: wait for it to end, or, if it is gone, for its lock "
                f"to be {STALE_S:.0f} s old")
        self.client().delete_object(Bucket=self.location.bucket, Key=self.key)
        if not self._create():
            raise StudyError(f"{self.what}: another driver took it over just now")

    def _refresh(self) -> None:
        """Renew the heartbeat every REFRESH_S while the lock is held (a thread)."""
        while not self._stop.wait(REFRESH_S):
            try:
                self.client().put_object(Bucket=self.location.bucket, Key=self.key,
                                         Body=self._body())
            except Exception:  # noqa: BLE001 (a missed beat is retried at the next one)
                continue

    def release(self) -> None:
        """Delete the lock if this driver holds it; a store gone by now leaves it (it is
        taken over once this process has ended), and the error that ended the study is
        the one said."""
        self._stop.set()
        try:
            holder = self.holder()
            if holder and holder.get("pid") == self.owner["pid"] \
                    and holder.get("host") == self.owner["host"]:
                self.client().delete_object(Bucket=self.location.bucket, Key=self.key)
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> ObjectLock:
        self.acquire()
        threading.Thread(target=self._refresh, daemon=True, name="addray-lock").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
