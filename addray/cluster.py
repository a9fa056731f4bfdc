"""Starting or joining Ray, and checking that a sweep's resource requests can be met.

Ray 2.60 turns on token authentication by default: the first local ``ray.init()``
writes ``~/.ray/auth_token``. A driver joining an existing cluster must present the
same token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) with
``RAY_AUTH_MODE=token``; a failure to connect says so in one line.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass

import ray

from addray.errors import UserError


class ClusterError(UserError):
    """Ray cannot be started or joined, or cannot satisfy the sweep's requests."""


@dataclass
class RayHandle:
    started_here: bool
    address: str
    dashboard_url: str | None


def connect(address: str | None, *, dashboard: bool, dashboard_host: str,
            num_cpus: int | None = None, num_gpus: int | None = None) -> RayHandle:
    """Start a local Ray (address None) or join an existing cluster."""
    if address is None:
        # "local" always starts a new Ray, never joins one left running on this machine
        ctx = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                       include_dashboard=dashboard,
                       dashboard_host=dashboard_host, configure_logging=True,
                       logging_level="warning", log_to_driver=True)
        started = True
    else:
        _probe(address)
        try:
            ctx = ray.init(address=address, logging_level="warning")
        except ConnectionError as exc:
            # something listens there (probed): most often it refused this driver's token
            raise ClusterError(
                f"--address {address}: a server answers there but the Ray connection failed "
                f"({exc}); most often the driver lacks the cluster's token: set "
                f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the "
                f"head's token (README, 'Ray token authentication')") from None
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "auth" in text.lower() or "token" in text.lower():
                raise ClusterError(
                    f"--address {address}: the cluster refused this driver's token ({text}); "
                    f"set RAY_AUTH_MODE=token and give the cluster's token as "
                    f"~/.ray/auth_token or RAY_AUTH_TOKEN (see README, 'Ray token "
                    f"authentication')") from None
            raise ClusterError(f"--address {address}: cannot join the Ray cluster: {text}") \
                from None
        started = False
    url = getattr(ctx, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return RayHandle(started_here=started, address=ctx.address_info.get("address", ""),
                     dashboard_url=url)


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail at once if nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--address {address}: expected auto or HOST:PORT, e.g. "
                           f"10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"--address {address}: no Ray cluster answers there "
                           f"({exc.strerror or exc})") from None


def shutdown(handle: RayHandle) -> None:
    """Stop a Ray this process started; for a joined cluster, only disconnect."""
    if ray.is_initialized():
        ray.shutdown()


def token_auth_enabled() -> bool:
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def plan_resources(gpus: float | None, gpus_per_trial: float | None,
                   cpus_per_trial: float) -> tuple[float, float, int | None]:
    """Check requests against the cluster; return (gpus, gpus_per_trial, max_concurrent).

    gpus None means every GPU the cluster has. Requests that the cluster can never
    satisfy fail here, because Ray would otherwise leave the trials PENDING forever.
    """
    total = ray.cluster_resources()
    have_gpus = total.get("GPU", 0.0)
    node_cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    node_gpus = [n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    if gpus is None:
        gpus = have_gpus
    if gpus < 0:
        raise ClusterError(f"--gpus = {gpus}: must be >= 0")
    if gpus > have_gpus:
        raise ClusterError(f"--gpus = {gpus:g}: the Ray cluster has {have_gpus:g} GPUs "
                           f"(trials would wait forever); ask for at most {have_gpus:g}")
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if gpus >= 1 else (gpus if gpus > 0 else 0.0)
    if gpus_per_trial < 0 or (gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial)):
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: must be a fraction in "
                           f"(0, 1] or a whole number")
    if gpus_per_trial > 0 and gpus == 0:
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: the sweep may use no GPU "
                           f"(--gpus 0, or the cluster has none)")
    if gpus_per_trial > gpus:
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: exceeds --gpus = {gpus:g}")
    if gpus_per_trial > max(node_gpus, default=0.0):
        raise ClusterError(f"--gpus-per-trial = {gpus_per_trial:g}: no node of the cluster "
                           f"has that many GPUs (largest: {max(node_gpus, default=0.0):g})")
    if cpus_per_trial <= 0:
        raise ClusterError(f"--cpus-per-trial = {cpus_per_trial:g}: must be > 0")
    if cpus_per_trial > max(node_cpus, default=0.0):
        raise ClusterError(f"--cpus-per-trial = {cpus_per_trial:g}: no node of the cluster "
                           f"has that many CPUs (largest: {max(node_cpus, default=0.0):g})")
    max_concurrent = None
    if gpus_per_trial > 0:
        # --gpus caps the sweep even on a cluster with more GPUs
        max_concurrent = max(1, math.floor(gpus / gpus_per_trial + 1e-9))
    return gpus, gpus_per_trial, max_concurrent


def wait_for_nodes(address: str, nodes: int, timeout: float) -> int:
    """Block until the cluster at ``address`` has ``nodes`` alive nodes; return the count."""
    import time

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
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= nodes:
                return alive
            if time.monotonic() > deadline:
                raise ClusterError(f"{address}: {alive} of {nodes} nodes up after "
                                   f"{timeout:g} s (see the workers' logs)")
            time.sleep(2)
    finally:
        shutdown(handle)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m addray.cluster",
                                description="Cluster helpers for docker/entrypoint.sh.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait", help="wait until a Ray cluster has N alive nodes")
    w.add_argument("address", help="HOST:PORT of the Ray head")
    w.add_argument("--nodes", type=int, default=1, help="alive nodes to wait for")
    w.add_argument("--timeout", type=float, default=300, help="seconds before giving up")
    args = p.parse_args(argv)
    if args.nodes < 1:
        raise ClusterError(f"--nodes = {args.nodes}: must be >= 1")
    alive = wait_for_nodes(args.address, args.nodes, args.timeout)
    print(f"addray: {alive} Ray nodes up at {args.address}")
    return 0


if __name__ == "__main__":
    import sys

    from addray import cli

    cli.run(lambda: main(sys.argv[1:]))
