#!/usr/bin/env bash
# Lint and render the fedbus-site chart (one data owner's trainer) with ci/cpu-values.yaml and
# ci/gpu-values.yaml, and check what a site relies on:
# - exactly one workload (a StatefulSet of 1 replica, one container) and its policy ConfigMap;
# - no MinIO key, no PostgreSQL DSN, no Secret but the trainer's own Kafka credentials, the
#   artifact keys, its signing key and CA certificates;
# - its signing key: only signing.key of signing.existingSecret, mounted read-only where
#   FEDBUS_SIGNING_KEY_FILE points; FEDBUS_ROOT_PUBLIC_KEYS is signing.rootPublicKeys and
#   FEDBUS_REQUIRE_SIGNATURES=true, and the environment loads as the trainer's production settings;
# - the policy file mounted read-only where FEDBUS_SITE_POLICY_FILE points, and read by the
#   trainer's own loader to what the values say; the data mounted read-only;
# - non-root, read-only root filesystem, a writable state directory, /healthz and /readyz probes;
# - GPU values: nvidia.com/gpu limits, FEDBUS_DEVICE=cuda, node selector and tolerations;
# - values.schema.json refuses wrong keys and types: helm lint --strict fails on bad values;
# - kubeconform -strict accepts the rendered manifests (Kubernetes JSON schemas, tools.sh);
# - resource requests and a memory limit, and the NetworkPolicy: egress to Kafka, the object
#   store and DNS only, ingress only from networkPolicy.metricsFrom (check_rendered.py).
# Called by deploy/helm/lint.sh (PY comes from there); the tools come from tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/deploy/helm/fedbus-site"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# shellcheck source=deploy/helm/tools.sh
source "$ROOT/deploy/helm/tools.sh"
K8S="1.$K8S_MINOR.0"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for name in cpu gpu; do
  echo "[helm-lint] fedbus-site: helm lint ($name values)"
  "$HELM" lint --strict --kube-version "$K8S" "$CHART" -f "$CHART/ci/$name-values.yaml"
  echo "[helm-lint] fedbus-site: helm template ($name values)"
  "$HELM" template site "$CHART" --namespace site --kube-version "$K8S" \
    -f "$CHART/ci/$name-values.yaml" > "$out/$name.yaml"
  echo "[helm-lint] fedbus-site: kubeconform ($name values)"
  kubeconform "$out/$name.yaml"
  "$PY" "$ROOT/deploy/helm/check_rendered.py" "$CHART" "$out/$name.yaml" \
    -f "$CHART/ci/$name-values.yaml"
done

# Values values.schema.json must refuse: each is the CPU values plus one mistake, and helm lint
# --strict must fail with the schema's message naming the key ("values.yaml: - at '/path': ...",
# nested failures below it as "  - at '/path/deeper': ...").
bad=(
  "polcy: {max_epsilon: 1}"                                  "polcy"                        # a misspelt top-level key
  "policy: {max_epsilom: 1}"                                 "max_epsilom"                  # a misspelt policy rule
  "policy: {max_epsilon: high}"                              "/policy/max_epsilon"          # a string for a number
  "policy: {max_rounds_per_day: 2.5}"                        "/policy/max_rounds_per_day"   # a float for an integer
  "policy: {allowed_models: mlp}"                            "/policy/allowed_models"       # a string for a list
  "gpu: {enabled: yes-please}"                               "/gpu/enabled"                 # a string for a boolean
  "env: {FEDBUS_MINIO_SECRET_KEY: x}"                        "FEDBUS_MINIO_SECRET_KEY"      # MinIO credentials
  "env: {FEDBUS_POSTGRES_DSN: 'postgresql://u:p@db/fedbus'}" "FEDBUS_POSTGRES_DSN"          # a database DSN
  "clientId: dlq"                                            "/clientId"                    # the reserved client id
  "data: []"                                                 "/data"                        # no dataset
  "dataVolume: {existingClaim: '', hostPath: ''}"            "/dataVolume"                  # no data volume
  "dataVolume: {existingClaim: a, hostPath: /srv}"           "/dataVolume"                  # two data volumes
  "minio: {endpoint: http://minio:9000}"                     "endpoint"                     # MinIO settings it has no use for
  "signing: {existingSecret: ''}"                            "/signing/existingSecret"      # no signing key
  "signing: {rootPublicKeys: []}"                            "/signing/rootPublicKeys"      # no root public key
  "signing: {rootPublicKeys: [not-a-key]}"                   "/signing/rootPublicKeys/0"    # a root key that is not Ed25519
  "replicas: 2"                                              "replicas"                     # a key the chart does not have
  "httpPort: eighty"                                         "/httpPort"                    # a string for a port
  "fedbusEnv: prodution"                                     "/fedbusEnv"                   # a misspelt environment
  "resources: {requests: {cpu: null}}"                       "/resources/requests"          # no cpu request
  "resources: {limits: {memory: lots}}"                      "/resources/limits/memory"     # not a quantity
  "networkPolicy: {kafka: {to: []}}"                         "/networkPolicy/kafka/to"      # egress to Kafka anywhere
  "networkPolicy: {minio: {ports: [https]}}"                 "/networkPolicy/minio/ports/0" # a string for a port
  "networkPolicy: {dns: {to: [{namespace: kube-system}]}}"   "/networkPolicy/dns/to/0"      # not a NetworkPolicyPeer
)
for ((i = 0; i < ${#bad[@]}; i += 2)); do
  mistake="${bad[i]}" key="${bad[i + 1]}"
  printf '%s\n' "$mistake" > "$out/bad.yaml"
  if "$HELM" lint --strict --kube-version "$K8S" "$CHART" -f "$CHART/ci/cpu-values.yaml" \
      -f "$out/bad.yaml" > "$out/bad.log" 2>&1; then
    echo "[helm-lint] fedbus-site: values accepted that must be refused: $mistake" >&2
    exit 1
  fi
  grep -q "values.yaml: - at '" "$out/bad.log" && grep "at '" "$out/bad.log" | grep -qF "$key" || {
    echo "[helm-lint] fedbus-site: '$mistake' refused, but not by values.schema.json naming $key:" >&2
    cat "$out/bad.log" >&2
    exit 1
  }
done
echo "[helm-lint] fedbus-site: $((${#bad[@]} / 2)) bad value sets refused by helm lint --strict," \
  "each naming its key"

"$PY" - "$out/cpu.yaml" "$out/gpu.yaml" "$CHART/ci/cpu-values.yaml" "$CHART/ci/gpu-values.yaml" <<'PYEOF'
import os
import sys
import tempfile
from pathlib import Path

import yaml

try:  # the trainer's own loader and settings, when the workspace is installed
    from fedbus_trainer.settings import TrainerSettings
    from fedbus_trainer.site_policy import load_policy
except ImportError:  # pragma: no cover - plain python3 without the workspace
    load_policy = TrainerSettings = None
try:  # where a client's file is (docs/data.md), when the workspace is installed
    from fedbus.datalayout import client_file
except ImportError:  # pragma: no cover - plain python3 without the workspace
    client_file = None

FORBIDDEN = ("FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY", "FEDBUS_POSTGRES_DSN")
problems = []


def check(rendered: str, values_path: str) -> None:
    values = yaml.safe_load(open(values_path, encoding="utf-8"))
    gpu = values.get("gpu", {}).get("enabled", False)
    docs = [d for d in yaml.safe_load_all(open(rendered, encoding="utf-8")) if d]
    where = Path(rendered).name
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet",
                                                   "Job", "CronJob", "Pod", "ReplicaSet")]
    if len(workloads) != 1 or workloads[0]["spec"].get("replicas") != 1:
        problems.append(f"{where}: expected one workload with replicas 1, got {len(workloads)}")
        return
    pod = workloads[0]["spec"]["template"]["spec"]
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        problems.append(f"{where}: expected exactly one container")
    (c,) = pod["containers"][:1]
    env = {e["name"]: e for e in c.get("env", [])}
    text = yaml.safe_dump(docs)
    for name in FORBIDDEN:
        if name in env or name in text:
            problems.append(f"{where}: {name} appears in the rendered chart")
    if "postgres://" in text or "postgresql://" in text or "MINIO_ACCESS" in text:
        problems.append(f"{where}: a DSN or MinIO key appears in the rendered chart")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
    if refs != {values["kafka"]["sasl"]["existingSecret"]}:
        problems.append(f"{where}: env reads Secrets {sorted(refs)}, expected only Kafka's")
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    signing = values["signing"]
    allowed = {values["artifactKeys"]["existingSecret"], signing["existingSecret"],
               values.get("kafka", {}).get("tls", {}).get("caSecret"),
               values.get("minio", {}).get("caSecret")} - {None, ""}
    if not secrets <= allowed or values["artifactKeys"]["existingSecret"] not in secrets \
            or signing["existingSecret"] not in secrets:
        problems.append(f"{where}: Secret volumes {sorted(secrets)}, expected within {allowed}")
    if "FEDBUS_ARTIFACT_KEYS_FILE" not in env:
        problems.append(f"{where}: no FEDBUS_ARTIFACT_KEYS_FILE")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The signing key: only its entry of the Secret, read-only, where FEDBUS_SIGNING_KEY_FILE is.
    key_file = Path(env.get("FEDBUS_SIGNING_KEY_FILE", {}).get("value", "/nowhere/x"))
    mount = mounts.get(str(key_file.parent))
    secret = volumes.get(mount["name"], {}).get("secret", {}) if mount else {}
    if not mount or not mount.get("readOnly") or secret.get("secretName") != \
            signing["existingSecret"] or secret.get("items") != [
            {"key": signing.get("key", "key.pem"), "path": key_file.name}]:
        problems.append(f"{where}: the signing key {key_file} is not only "
                        f"{signing.get('key', 'key.pem')} of {signing['existingSecret']}, "
                        "mounted read-only")
    if env.get("FEDBUS_ROOT_PUBLIC_KEYS", {}).get("value") != ",".join(signing["rootPublicKeys"]) \
            or env.get("FEDBUS_REQUIRE_SIGNATURES", {}).get("value") != "true":
        problems.append(f"{where}: FEDBUS_ROOT_PUBLIC_KEYS or FEDBUS_REQUIRE_SIGNATURES wrong")
    if TrainerSettings is not None:  # the env, secrets filled in, loads as production settings
        plain = {k: e["value"] for k, e in env.items() if "value" in e}
        plain |= {k: "x" for k, e in env.items() if "valueFrom" in e}
        kept = {k: v for k, v in os.environ.items() if k.startswith("FEDBUS_")}
        for k in kept:
            del os.environ[k]
        os.environ.update(plain)
        try:
            loaded = TrainerSettings(_env_file=None)
            if loaded.env != "production" or not loaded.signatures_required:
                problems.append(f"{where}: loads as {loaded.env}, signatures required "
                                f"{loaded.signatures_required}")
        except ValueError as exc:
            problems.append(f"{where}: the environment does not load as settings: {exc}")
        finally:
            for k in plain:
                os.environ.pop(k, None)
            os.environ.update(kept)
    # The policy: the file FEDBUS_SITE_POLICY_FILE names is a key of a mounted ConfigMap.
    policy_path = Path(env.get("FEDBUS_SITE_POLICY_FILE", {}).get("value", "/nowhere/x"))
    mount = mounts.get(str(policy_path.parent))
    cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    if not mount or not mount.get("readOnly") or cm_name not in maps:
        problems.append(f"{where}: the policy file {policy_path} is not a mounted ConfigMap")
    else:
        text = maps[cm_name]["data"].get(policy_path.name)
        if text is None:
            problems.append(f"{where}: ConfigMap {cm_name} has no {policy_path.name}")
        elif load_policy is not None:
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / policy_path.name
                f.write_text(text)
                loaded = load_policy(f).model_dump(exclude_defaults=True)
            if loaded != values.get("policy", {}):
                problems.append(f"{where}: the trainer reads policy {loaded}, values say "
                                f"{values.get('policy')}")
    data = mounts.get(values.get("dataVolume", {}).get("mountPath", "/data"))
    if not data or not data.get("readOnly"):
        problems.append(f"{where}: the data volume is not mounted read-only")
    mount = values.get("dataVolume", {}).get("mountPath", "/data")
    want = [d if "=" in d or client_file is None
            else f"{d}={client_file(f'{mount}/{d}', values['clientId'])}"
            for d in values["data"]]  # fmt: skip
    if client_file is not None and env.get("FEDBUS_DATA", {}).get("value") != ",".join(want):
        problems.append(f"{where}: FEDBUS_DATA is not {','.join(want)}")
    state = env.get("FEDBUS_STATE_DIR", {}).get("value")
    if state not in mounts or mounts[state].get("readOnly"):
        problems.append(f"{where}: the state directory {state} is not a writable volume")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    if not (sc.get("readOnlyRootFilesystem") and psc.get("runAsNonRoot")
            and sc.get("allowPrivilegeEscalation") is False):
        problems.append(f"{where}: not non-root with a read-only root filesystem")
    probes = (c.get("livenessProbe", {}).get("httpGet", {}).get("path"),
              c.get("readinessProbe", {}).get("httpGet", {}).get("path"))
    if probes != ("/healthz", "/readyz"):
        problems.append(f"{where}: probes {probes}")
    limits = c.get("resources", {}).get("limits", {})
    device = env.get("FEDBUS_DEVICE", {}).get("value")
    tolerated = any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    if gpu != ("nvidia.com/gpu" in limits) or gpu != (device == "cuda") or gpu != tolerated \
            or gpu != bool(pod.get("nodeSelector")):
        problems.append(f"{where}: gpu {gpu} but limits {limits}, device {device}, "
                        f"tolerations {tolerated}, nodeSelector {pod.get('nodeSelector')}")
    print(f"[helm-lint] fedbus-site {where}: one trainer ({'GPU' if gpu else 'CPU'}), "
          f"{len(env)} env vars, Secrets {sorted(secrets | refs)}")


check(sys.argv[1], sys.argv[3])
check(sys.argv[2], sys.argv[4])
if problems:
    sys.exit("[helm-lint] fedbus-site:\n  " + "\n  ".join(problems))
print("[helm-lint] fedbus-site: no MinIO key or DSN; the policy mounted and read back; "
      "data read-only; non-root, read-only root; probes; GPU only with gpu.enabled")
print("[helm-lint] fedbus-site: its own signing key mounted read-only, FEDBUS_SIGNING_KEY_FILE, "
      "FEDBUS_ROOT_PUBLIC_KEYS, FEDBUS_REQUIRE_SIGNATURES=true"
      + ("" if TrainerSettings is None else "; loads as production trainer settings"))
PYEOF
