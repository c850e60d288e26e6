"""The Helm charts (helm/polder-node, helm/polder-federation), checked offline.

`helm lint --strict`, `helm template` over the chart's values matrix (helm/polder-node/ci/),
the manifests validated against the Kubernetes 1.29 and 1.33 schemas (kubernetes-validate
--strict) and by checkov, assertions on what was rendered (ports, probes, the hardened pod,
the NetworkPolicy), bad values refused by values.schema.json naming the key, and a real
`polder serve --config` started with the TOML the chart renders, so chart and binary cannot
drift. Needs `helm` (scripts/test puts it in ~/.cache/polder; POLDER_HELM overrides) and
checkov in its own environment (.venv-checkov; POLDER_CHECKOV overrides).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from udn_conformance import paths
from udn_conformance.node import LISTENING

ROOT = paths.REPO or paths.SUITE
CHART = ROOT / "helm" / "polder-node"
FEDERATION = ROOT / "helm" / "polder-federation"
MATRIX = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES = ["1.29.0", "1.33.0"]
HELM_VERSION = "3.17.3"

pytestmark = [
    pytest.mark.beyond_spec("Polder's Helm charts: rendered, validated and run offline"),
    pytest.mark.skipif(paths.REPO is None, reason="Polder's charts are files of its repository"),
]


def tool(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.is_file():
        pytest.fail(f"{path} not found: run scripts/test (it installs it) or set {env}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool("POLDER_HELM", Path.home() / ".cache" / "polder" / f"helm-{HELM_VERSION}" / "helm")


@pytest.fixture(scope="session")
def checkov() -> Path:
    return tool("POLDER_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov")


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)


def render(helm, chart: Path, *args) -> str:
    result = run([helm, "template", "polder", chart, "--namespace", "city", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs, kind) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def node_toml(docs) -> str:
    (config_map,) = [c for c in of_kind(docs, "ConfigMap") if "node.toml" in c["data"]]
    return config_map["data"]["node.toml"]


def toml_port(toml_text: str, key: str) -> int:
    import tomllib

    node = tomllib.loads(toml_text)["node"]
    return int(node[key].rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def renderings(helm) -> dict[str, str]:
    return {path.name: render(helm, CHART, "-f", path) for path in MATRIX}


@pytest.fixture(scope="session")
def federation_chart(helm, tmp_path_factory) -> Path:
    """A copy of both charts with the umbrella's dependencies built (offline, file://)."""
    root = tmp_path_factory.mktemp("charts")
    shutil.copytree(CHART, root / "polder-node")
    shutil.copytree(FEDERATION, root / "polder-federation", ignore=shutil.ignore_patterns("charts"))
    result = run([helm, "dependency", "build", root / "polder-federation"])
    assert result.returncode == 0, result.stderr
    return root / "polder-federation"


def test_the_matrix_covers_what_operators_turn_on():
    names = {p.name for p in MATRIX}
    assert {f"{n}-values.yaml" for n in ("minimal", "tls", "audit", "autoscaling", "ingress")} <= names


@pytest.mark.parametrize("chart", ["polder-node", "polder-federation"])
def test_lint_strict(helm, chart, federation_chart):
    path = CHART if chart == "polder-node" else federation_chart
    result = run([helm, "lint", "--strict", path])
    assert result.returncode == 0, result.stdout + result.stderr
    if chart == "polder-node":
        for values in MATRIX:
            result = run([helm, "lint", "--strict", path, "-f", values])
            assert result.returncode == 0, f"{values.name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("kubernetes", KUBERNETES)
def test_manifests_validate_against_kubernetes(renderings, federation_chart, helm, kubernetes, tmp_path):
    validate = Path(sys.executable).parent / "kubernetes-validate"
    files = []
    for name, text in {**renderings, "federation": render(helm, federation_chart)}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    result = run([validate, "--strict", "--kubernetes-version", kubernetes, *files])
    # ServiceMonitor is a CRD of the Prometheus Operator: no Kubernetes schema describes it.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "Couldn't find schema for kind ServiceMonitor" not in line and not line.startswith("INFO")
    ]
    assert result.returncode == 0 and not problems, "\n".join(problems)


def test_checkov_finds_nothing_unaccepted(renderings, checkov, tmp_path):
    files = []
    for name, text in renderings.items():
        path = tmp_path / name
        path.write_text(text)
        files += ["-f", path]
    result = run([checkov, *files, "--framework", "kubernetes", "--skip-download", "--compact", "--quiet"])
    summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", result.stdout)
    assert summary, result.stdout + result.stderr
    assert summary.group(2) == "0", result.stdout
    assert int(summary.group(1)) > 100
    # Every accepted exception is written in the chart with its reason.
    workload = (CHART / "templates" / "workload.yaml").read_text()
    for skipped in set(re.findall(r"(CKV_K8S_\d+)", result.stdout)):
        assert skipped in workload


@pytest.mark.parametrize("values", [p.name for p in MATRIX])
def test_rendered_manifests(renderings, values):
    docs = documents(renderings[values])
    toml_text = node_toml(docs)
    flight, http = toml_port(toml_text, "flight_addr"), toml_port(toml_text, "http_addr")
    audit = "audit" in values
    (workload,) = of_kind(docs, "StatefulSet" if audit else "Deployment")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"flight": flight, "http": http}

    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    service_ports = {p["name"]: p for s in services.values() for p in s["spec"]["ports"]}
    assert service_ports["flight"]["targetPort"] == "flight"
    assert service_ports["http"]["targetPort"] == "http"

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place besides the audit volume

    (policy,) = of_kind(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {"flight", "http"}
    assert of_kind(docs, "PodDisruptionBudget")

    assert ("HorizontalPodAutoscaler" in {d["kind"] for d in docs}) == ("autoscaling" in values)
    assert ("Ingress" in {d["kind"] for d in docs}) == ("ingress" in values)
    dashboards = [c for c in of_kind(docs, "ConfigMap") if "polder-node.json" in c["data"]]
    for dashboard in dashboards:
        assert json.loads(dashboard["data"]["polder-node.json"])["uid"] == "polder-node"
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    if audit:
        assert "/var/lib/polder/audit" in mounts
        assert workload["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "audit"
        assert 'log = "/var/lib/polder/audit/audit.jsonl"' in toml_text.replace('"log"', "log")
    if "tls" in values:
        assert "/etc/polder/tls/tls.crt" in toml_text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "replicaCount=two"], "replicaCount"),
        (["--set", "config.bogus=1"], "bogus"),
        (["--set", "telemetry.logFormat=xml"], "logFormat"),
        (["--set", "ports.flight=70000"], "flight"),
        (["--set", "config.node.name=Not A Name"], "name"),
        (["--set", "probs.liveness.periodSeconds=5"], "probs"),
        (["--set", "audit.enabled=true"], "signingKeySecret"),
    ],
)
def test_bad_values_fail_naming_the_key(helm, args, named):
    result = run([helm, "template", "polder", CHART, *args])
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_rendered(polder_bin, toml_text: str, tmp_path: Path):
    """`polder serve --config` with the chart's TOML; returns the process and its ports."""
    config = tmp_path / "node.toml"
    config.write_text(toml_text)
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with open(out, "wb") as o, open(err, "wb") as e:
        process = subprocess.Popen(
            [str(polder_bin), "serve", "--config", str(config)], stdout=o, stderr=e, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + 120
    while not any(LISTENING.match(line) for line in out.read_text().splitlines()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the chart's configuration did not start a node:\n{err.read_text()[-4000:]}")
        time.sleep(0.1)
    return process


@pytest.mark.parametrize("values", ["minimal-values.yaml", "autoscaling-values.yaml", "ingress-values.yaml"])
def test_the_binary_serves_the_configuration_the_chart_renders(helm, polder_bin, values, tmp_path):
    flight, http = free_port(), free_port()
    docs = documents(
        render(helm, CHART, "-f", CHART / "ci" / values, "--set", f"ports.flight={flight}", "--set", f"ports.http={http}")
    )
    process = serve_rendered(polder_bin, node_toml(docs), tmp_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            ready = requests.get(f"http://127.0.0.1:{http}/readyz", timeout=5)
            if ready.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ready.status_code == 200, ready.text
        assert "air_quality" in ready.json()["tables"]
        import adbc_driver_flightsql.dbapi

        with adbc_driver_flightsql.dbapi.connect(f"grpc://127.0.0.1:{flight}", autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM air_quality")
                assert cur.fetchone()[0] > 0
        assert requests.get(f"http://127.0.0.1:{http}/metrics", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_federation_chart_renders_three_cities_that_start(helm, polder_bin, federation_chart, tmp_path):
    ports = {city: (free_port(), free_port()) for city in ("amsterdam", "utrecht", "rotterdam")}
    args = []
    for city, (flight, http) in ports.items():
        args += ["--set", f"{city}.ports.flight={flight}", "--set", f"{city}.ports.http={http}"]
    docs = documents(render(helm, federation_chart, *args))
    configs = {d["metadata"]["name"]: d["data"]["node.toml"] for d in of_kind(docs, "ConfigMap") if "node.toml" in d["data"]}
    assert set(configs) == {"polder-amsterdam", "polder-utrecht", "polder-rotterdam"}
    import tomllib

    processes = []
    try:
        for name, text in configs.items():
            parsed = tomllib.loads(text)
            city = parsed["node"]["name"]
            assert {p["name"] for p in parsed["peers"]} == set(ports) - {city}
            (tmp_path / city).mkdir()
            processes.append(serve_rendered(polder_bin, text, tmp_path / city))
        for city, (_, http) in ports.items():
            assert requests.get(f"http://127.0.0.1:{http}/healthz", timeout=5).status_code == 200
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
