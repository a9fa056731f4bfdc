"""docker/kuberay/: the KubeRay manifests validate against KubeRay's CRD schemas (v1.7.0's
openAPIV3Schema, vendored in docker/kuberay/schemas/, checked with check-jsonschema and
unknown fields refused, as the API server's strict field validation does) and the core
objects against Kubernetes' own schemas (kubernetes-validate); and they keep the rules of
docker/README.md: token authentication from one Secret, nothing exposed outside the
cluster, the image and Ray version the project pins, one shared results claim."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

KUBERAY = ROOT / "docker" / "kuberay"
SCHEMAS = {"RayCluster": KUBERAY / "schemas" / "raycluster-v1.json",
           "RayJob": KUBERAY / "schemas" / "rayjob-v1.json"}
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def by_kind() -> dict[str, dict[str, Any]]:
    return {(doc := load(p))["kind"]: doc for p in MANIFESTS}


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused: every object that lists its properties and
    does not keep unknown fields gets additionalProperties false (an API server with
    strict field validation refuses them; a typo would otherwise be dropped silently)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def check_jsonschema(schema: dict[str, Any], doc: dict[str, Any], tmp_path: Path):
    exe = shutil.which("check-jsonschema")
    assert exe, "check-jsonschema not installed (pip install -e '.[dev]' brings it)"
    (tmp_path / "schema.json").write_text(json.dumps(strict(schema)))
    (tmp_path / "doc.yaml").write_text(yaml.safe_dump(doc))
    return subprocess.run([exe, "--schemafile", str(tmp_path / "schema.json"),
                           str(tmp_path / "doc.yaml")], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_the_kuberay_objects_validate_against_the_crd_schema(kind, tmp_path):
    schema = json.loads(SCHEMAS[kind].read_text())
    proc = check_jsonschema(schema, by_kind()[kind], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and the check can fail: a misspelt field and a wrong type are refused
    bad = copy.deepcopy(by_kind()[kind])
    bad["spec"]["submisionMode" if kind == "RayJob" else "rayVerison"] = "x"
    assert check_jsonschema(schema, bad, tmp_path).returncode == 1
    bad = copy.deepcopy(by_kind()[kind])
    bad["spec"]["suspend" if kind == "RayJob" else "enableInTreeAutoscaling"] = "yes"
    assert check_jsonschema(schema, bad, tmp_path).returncode == 1


@pytest.mark.parametrize("kind", ["PersistentVolumeClaim", "NetworkPolicy"])
def test_the_core_objects_validate_against_kubernetes(kind):
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    doc = by_kind()[kind]
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)
    bad = copy.deepcopy(doc)
    bad["spec"]["podSelectr" if kind == "NetworkPolicy" else "acessModes"] = []
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def pods(kinds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cluster = kinds["RayCluster"]["spec"]
    return [cluster["headGroupSpec"]["template"]["spec"],
            *[g["template"]["spec"] for g in cluster["workerGroupSpecs"]],
            kinds["RayJob"]["spec"]["submitterPodTemplate"]["spec"]]


def test_the_manifests_keep_the_clusters_rules():
    kinds = by_kind()
    assert set(kinds) == {"RayCluster", "RayJob", "PersistentVolumeClaim", "NetworkPolicy"}
    cluster, job = kinds["RayCluster"], kinds["RayJob"]
    # the Ray version the project pins, on the image the project builds
    pin = re.search(r'"ray\[tune,default\]==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert cluster["spec"]["rayVersion"] == pin.group(1)
    images = {c["image"] for p in pods(kinds) for c in p["containers"]}
    assert len(images) == 1 and images.pop().endswith("/addray:gpu")
    # token authentication from one Secret, given to the submitter too
    secret = cluster["spec"]["authOptions"]
    assert secret["mode"] == "token"
    env = {e["name"]: e for e in
           job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["secretName"], "key": "auth_token"}
    # nothing outside the cluster reaches the dashboard or the GCS
    head = cluster["spec"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress") and "headService" not in head
    assert all("hostNetwork" not in p and all("hostPort" not in port
                                              for c in p["containers"]
                                              for port in c.get("ports", []))
               for p in pods(kinds))
    policy = kinds["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert all(set(rule) == {"from"} and all(set(f) == {"podSelector"} for f in rule["from"])
               for rule in policy["ingress"])
    # the head schedules only; GPUs on the workers; every Ray pod mounts the one claim
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert all(int(g["template"]["spec"]["containers"][0]["resources"]["limits"]
                   ["nvidia.com/gpu"]) >= 1 for g in cluster["spec"]["workerGroupSpecs"])
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    for p in pods(kinds)[:-1]:
        assert p["volumes"] == [{"name": "results", "persistentVolumeClaim":
                                 {"claimName": claim}}]
        assert p["containers"][0]["volumeMounts"] == [{"name": "results",
                                                       "mountPath": "/results"}]
    assert "ReadWriteMany" in kinds["PersistentVolumeClaim"]["spec"]["accessModes"]
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}


def test_the_jobs_entrypoint_runs_here_as_a_dry_run(tmp_path):
    """The RayJob's study command, with its options as written, passes a dry run (its
    configs and options checked, its plan printed, nothing started)."""
    entry = by_kind()["RayJob"]["spec"]["entrypoint"]
    inner = re.fullmatch(r'bash -c "cd /opt/addray && (.*)"', entry.replace("\n", " "))
    assert inner, entry
    study, report = [c.strip() for c in inner.group(1).split("&&")]
    assert report == "python -m addray.report /results"
    argv = study.split()
    assert argv[:2] == ["python", "sweeps/phase1.py"]
    argv = [a if a != "/results" else str(tmp_path) for a in argv[1:]]
    proc = subprocess.run([sys.executable, *argv, "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "dry run" in proc.stdout
