"""Starting or joining Ray, and checking that a study's resource requests can be met.

**A local Ray stays local.** Without ``--address`` a study starts its own Ray in Ray's
single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set before Ray is
imported): the node's address is 127.0.0.1, so the GCS, the raylet, the workers and
the agents listen on loopback only, and the dashboard (``--dashboard``) binds to
127.0.0.1 unless ``--dashboard-host`` says otherwise.

**Token authentication.** Ray 2.60 turns it on by default, and the first local
``ray.init()`` writes ``~/.ray/auth_token`` readable by every local user (0644).
addray creates that file itself with mode 0600 before starting a local Ray, and makes
any token file it uses private. A driver joining a cluster must present the cluster's
token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) with
``RAY_AUTH_MODE=token``; a refusal says so in one line.

**As a Ray job.** A study submitted with ``ray job submit`` (or the job API, or a KubeRay
RayJob) runs its driver on the job's cluster: without ``--address`` it joins that
cluster (``RAY_ADDRESS``, set by the job's supervisor), never a Ray of its own, and the
job's submission id is said in its first line and kept in study.json.

Ray is imported inside the functions, so that ``prefer_loopback`` can run first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from addray.errors import ClusterError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # what a Ray job's supervisor gives its driver


@dataclass
class RayHandle:
    started_here: bool
    address: str
    dashboard_url: str | None
    metrics_url: str | None = None


def prefer_loopback(address: str | None) -> None:
    """For a local Ray (no address): Ray's single-machine mode, so every Ray process
    listens on 127.0.0.1. Ray reads this when it is imported: call it before that."""
    if address is None:
        os.environ[LOOPBACK_ENV] = "0"


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def private_token(create: bool) -> None:
    """Make the token file private (0600); with ``create``, write a new token there first
    if there is none (what Ray would do, but readable by the owner only)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    path = token_path()
    if create and not path.exists() and not os.environ.get("RAY_AUTH_TOKEN"):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    try:
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass  # not ours to change (a token shared read-only): leave it


def submitted_job() -> str | None:
    """The submission id of the Ray job this process runs as (``ray job submit``, the job
    API, a KubeRay RayJob), from the environment the job's supervisor gives its
    entrypoint; None when it is not run as a job."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if raw is None:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        metadata = {}
    return str(metadata.get("job_submission_id") or "unnamed")


def job_address() -> str | None:
    """The address of the cluster a submitted job runs on (the supervisor sets
    RAY_ADDRESS for its entrypoint); None outside a job."""
    if submitted_job() is None:
        return None
    return os.environ.get("RAY_ADDRESS") or "auto"


def connect(address: str | None, *, dashboard: bool, dashboard_host: str,
            num_cpus: int | None = None, num_gpus: int | None = None,
            metadata: dict[str, str] | None = None) -> RayHandle:
    """Start a local Ray on loopback (address None) or join an existing cluster. The
    driver's job carries ``metadata`` (the job API lists it), unless it runs as a
    submitted job, whose metadata the submitter gave (``ray job submit --metadata-json``)."""
    prefer_loopback(address)
    private_token(create=address is None)
    # Ray warns at every start that it turned token authentication on; the driver says
    # so in one line of its own (driver._announce)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR)
    import ray

    job = {}
    if metadata and submitted_job() is None:
        job = {"job_config": ray.job_config.JobConfig(metadata=metadata)}

    if address is None:
        # "local" always starts a new Ray, never joins one left running on this machine
        ctx = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                       include_dashboard=dashboard, dashboard_host=dashboard_host,
                       configure_logging=True, logging_level="warning", log_to_driver=True,
                       **job)
        started = True
        private_token(create=False)
        ip = ray.util.get_node_ip_address()
        if not ip.startswith("127."):
            print(f"addray: warning: Ray was imported before addray could select loopback; "
                  f"this local Ray listens on {ip}", file=sys.stderr)
    else:
        _probe(address)
        try:
            ctx = ray.init(address=address, logging_level="warning", **job)
        except ConnectionError as exc:
            # something listens there (probed): most often it refused this driver's token
            raise ClusterError(
                f"--address {address}: a server answers there but the Ray connection failed "
                f"({exc}); most often the driver lacks the cluster's token: set "
                f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the "
                f"head's token (README, 'Security')") from None
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "auth" in text.lower() or "token" in text.lower():
                raise ClusterError(
                    f"--address {address}: the cluster refused this driver's token ({text}); "
                    f"set RAY_AUTH_MODE=token and give the cluster's token as "
                    f"~/.ray/auth_token or RAY_AUTH_TOKEN (see README, 'Security')") from None
            raise ClusterError(f"--address {address}: cannot join the Ray cluster: {text}") \
                from None
        started = False
        private_token(create=False)
    url = getattr(ctx, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return RayHandle(started_here=started, address=ctx.address_info.get("address", ""),
                     dashboard_url=url, metrics_url=_metrics_url())


def _metrics_url() -> str | None:
    """This node's metrics endpoint, where the trials' live metrics (``addray.sweep.live``)
    and Ray's own are exported for Prometheus."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == here and node.get("MetricsExportPort"):
            return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    return None


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail at once if nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(f"--address {address}: expected auto or HOST:PORT, e.g. "
                           f"10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, OverflowError, ValueError) as exc:
        raise ClusterError(f"--address {address}: no Ray cluster answers there "
                           f"({getattr(exc, 'strerror', None) or exc})") from None


def shutdown(handle: RayHandle) -> None:
    """Stop a Ray this process started; for a joined cluster, only disconnect."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def alive_nodes() -> list[dict[str, float]]:
    """The resources of each alive node."""
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def total_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 1.0)


def plan_resources(gpus: float | None, gpus_per_trial: float,
                   explicit: bool) -> tuple[float, float, int | None]:
    """Check GPU requests against the cluster; return (gpus, gpus_per_trial,
    max_concurrent). ``gpus`` None means every GPU the cluster has; ``gpus_per_trial``
    is the user's (``explicit``) or the packing rule's. A request the cluster can never
    satisfy fails here, because Ray would otherwise leave the trials PENDING forever."""
    import ray

    have = ray.cluster_resources().get("GPU", 0.0)
    largest = max((n.get("GPU", 0.0) for n in alive_nodes()), default=0.0)
    if gpus is None:
        gpus = have
    if gpus > have:
        raise ClusterError(f"--gpus = {gpus:g}: the Ray cluster has {have:g} GPUs "
                           f"(trials would wait forever); ask for at most {have:g}")
    if gpus == 0:
        if explicit and gpus_per_trial > 0:
            raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: the study may use no "
                               f"GPU (--gpus 0, or the cluster has none)")
        return 0.0, 0.0, None
    if not explicit:
        gpus_per_trial = min(gpus_per_trial, gpus)
    if gpus_per_trial > gpus:
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: exceeds --gpus = {gpus:g}")
    if gpus_per_trial > largest:
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: no node of the cluster "
                           f"has that many GPUs (largest: {largest:g})")
    # --gpus caps the study even on a cluster with more GPUs
    return gpus, gpus_per_trial, max(1, math.floor(gpus / gpus_per_trial + 1e-9))


def check_cpus(cpus_per_trial: float) -> None:
    largest = max((n.get("CPU", 0.0) for n in alive_nodes()), default=0.0)
    if cpus_per_trial > largest:
        raise ClusterError(f"--cpus-per-trial = {cpus_per_trial:g}: no node of the cluster "
                           f"has that many CPUs (largest: {largest:g})")


def wait_for_nodes(address: str, nodes: int, timeout: float) -> int:
    """Block until the cluster at ``address`` has ``nodes`` alive nodes; return the count."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _probe(address)
            break
        except ClusterError:
            if time.monotonic() > deadline:
                raise ClusterError(f"{address}: no Ray head answered within {timeout:g} s") \
                    from None
            time.sleep(2)
    handle = connect(address, dashboard=False, dashboard_host="127.0.0.1")
    try:
        while True:
            alive = len(alive_nodes())
            if alive >= nodes:
                return alive
            if time.monotonic() > deadline:
                raise ClusterError(f"{address}: {alive} of {nodes} nodes up after "
                                   f"{timeout:g} s (see the workers' logs)")
            time.sleep(2)
    finally:
        shutdown(handle)


def main(argv: list[str] | None = None) -> int:

    from addray import cli

    p = cli.Parser(prog="python -m addray.sweep.cluster",
                                description="Cluster helpers for docker/entrypoint.sh.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait", help="wait until a Ray cluster has N alive nodes")
    w.add_argument("address", help="HOST:PORT of the Ray head")
    w.add_argument("--nodes", type=int, default=1, help="alive nodes to wait for")
    w.add_argument("--timeout", type=float, default=300, help="seconds before giving up")
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= 10_000:
        raise ClusterError(f"--nodes = {args.nodes}: must be >= 1 and <= 10000")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise ClusterError(f"--timeout = {args.timeout:g}: must be a finite number > 0")
    alive = wait_for_nodes(args.address, args.nodes, args.timeout)
    print(f"addray: {alive} Ray nodes up at {args.address}")
    return 0


if __name__ == "__main__":
    from addray import cli

    cli.run(lambda: main(sys.argv[1:]))

