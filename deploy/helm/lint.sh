#!/usr/bin/env bash
# Lint and render the fedbus chart with the default values and with ci/gpu-values.yaml, then
# the fedbus-site chart (deploy/helm/lint-site.sh).
# helm is built from its Go module (pinned) into ~/.cache/fedbus/helm-<version>/bin the first
# time (a few minutes, only the Go module proxy is needed), then reused.
# Checks: helm lint (both value sets), helm template (both), the rendered YAML parses, and every
# Deployment/StatefulSet container has a liveness (/healthz) and a readiness (/readyz) probe, and
# the artifact keys Secret reaches the aggregator, model-registry and trainers and no other pod,
# and no trainer gets the MinIO keys or the PostgreSQL DSN (it gets presigned URLs).
# Signed events: every service pod (and the create-topics Job) mounts only its own entry
# <component>.pem of signing.existingSecret read-only, every trainer its pool's Secret (never
# the services'), each sets FEDBUS_SIGNING_KEY_FILE to the mounted key, FEDBUS_ROOT_PUBLIC_KEYS
# to signing.rootPublicKeys and FEDBUS_REQUIRE_SIGNATURES=true, and that environment loads as
# production settings; rendering without a signing Secret or root keys fails with its message.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# Kubernetes minor version the chart is linted/rendered for (helm v3.22.0 pins client-go
# v0.37, i.e. Kubernetes 1.37; the chart itself needs >= 1.25).
K8S_MINOR="${HELM_K8S_MINOR:-37}"
CACHE_DIR="${FEDBUS_CACHE_DIR:-$HOME/.cache/fedbus}"
HELM="${HELM:-$CACHE_DIR/helm-$HELM_VERSION/bin/helm}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/deploy/helm/fedbus"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3

if [ ! -x "$HELM" ]; then
  echo "[helm-lint] building helm $HELM_VERSION into $(dirname "$HELM") (first time: a few minutes)"
  command -v go >/dev/null || { echo "[helm-lint] Go is needed to build helm" >&2; exit 1; }
  pkg=helm.sh/helm/v3
  ldflags="-w -s -X $pkg/internal/version.version=$HELM_VERSION"
  for p in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X $pkg/$p.k8sVersionMajor=1 -X $pkg/$p.k8sVersionMinor=$K8S_MINOR"
  done
  (cd "$(mktemp -d)" && GOBIN="$(dirname "$HELM")" CGO_ENABLED=0 \
    go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION")
fi
echo "[helm-lint] $("$HELM" version --short)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# The chart refuses to render without the operator's root public keys: every render gets them.
for name in default gpu; do
  args=(-f "$CHART/ci/signing-values.yaml")
  [ "$name" = gpu ] && args+=(-f "$CHART/ci/gpu-values.yaml")
  echo "[helm-lint] helm lint ($name values)"
  "$HELM" lint --strict --kube-version "1.$K8S_MINOR.0" "$CHART" "${args[@]}"
  echo "[helm-lint] helm template ($name values)"
  "$HELM" template fedbus "$CHART" --namespace fedbus --kube-version "1.$K8S_MINOR.0" \
    "${args[@]}" > "$out/$name.yaml"
done

# Values the chart must refuse to render, each with (part of) the message it must give; the
# last args are the values on top of ci/signing-values.yaml.
refuse() {
  local want="$1"
  shift
  if "$HELM" template fedbus "$CHART" --kube-version "1.$K8S_MINOR.0" "$@" > "$out/bad.log" 2>&1
  then
    echo "[helm-lint] rendered, but must be refused ($want): $*" >&2
    exit 1
  fi
  grep -qF "$want" "$out/bad.log" || {
    echo "[helm-lint] refused without the message '$want': $*" >&2
    cat "$out/bad.log" >&2
    exit 1
  }
}
refuse "signing.rootPublicKeys is empty"                      # no root keys at all
keys=(-f "$CHART/ci/signing-values.yaml")
refuse "signing.existingSecret is empty: with fedbusEnv production" "${keys[@]}" \
  --set signing.existingSecret=
refuse "trainerPools[cpu].signing.existingSecret is empty" "${keys[@]}" \
  --set 'trainerPools[0].name=cpu,trainerPools[0].replicas=1'
refuse "a trainer must not hold the services' signing keys" "${keys[@]}" \
  --set 'trainerPools[0].name=cpu,trainerPools[0].replicas=1' \
  --set 'trainerPools[0].signing.existingSecret=fedbus-signing-keys'
refuse "signing.requireSignatures is false" "${keys[@]}" --set signing.requireSignatures=false
echo "[helm-lint] refused with their messages: no root keys, no signing Secret, a trainer pool" \
  "without its Secret or with the services', signatures off in production"
# A development cluster may run without keys: no key is mounted, no FEDBUS_SIGNING_* is set.
"$HELM" template fedbus "$CHART" --kube-version "1.$K8S_MINOR.0" --set fedbusEnv=development \
  --set signing.existingSecret= --set 'trainerPools[0].name=cpu,trainerPools[0].replicas=1' \
  > "$out/dev.yaml"
if grep -q "FEDBUS_SIGNING_KEY_FILE\|FEDBUS_REQUIRE_SIGNATURES\|signing-key" "$out/dev.yaml"; then
  echo "[helm-lint] fedbusEnv development without signing keys still renders signing" >&2
  exit 1
fi
echo "[helm-lint] fedbusEnv development without signing keys renders, with no signing settings"

"$PY" - "$CHART/ci/signing-values.yaml" "$out/default.yaml" "$out/gpu.yaml" <<'PYEOF'
import os
import sys

import yaml

try:  # the settings the processes load, when the workspace is installed
    from fedbus.settings import FedbusSettings
    from fedbus_trainer.settings import TrainerSettings
except ImportError:  # pragma: no cover - plain python3 without the workspace
    FedbusSettings = TrainerSettings = None

SIGNING_SECRET = "fedbus-signing-keys"  # the chart's default signing.existingSecret
ROOTS = ",".join(yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["signing"]["rootPublicKeys"])
DUMMY = {"FEDBUS_POSTGRES_DSN": "postgresql://u:p@db/fedbus"}


def signing_problems(doc: dict, pod: dict, component: str) -> list[str]:
    """The signing key mount and variables of one workload, as the chart promises them."""
    problems = []
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    order = [e["name"] for e in c.get("env", [])]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secrets = {v["secret"]["secretName"]: v for v in volumes.values() if "secret" in v}
    key_file = env.get("FEDBUS_SIGNING_KEY_FILE") or ""
    mount = next((m for m in c.get("volumeMounts", [])
                  if key_file.startswith(m["mountPath"].rstrip("/") + "/")), None)
    volume = volumes.get(mount["name"], {}).get("secret", {}) if mount else {}
    if not mount or not mount.get("readOnly") or not volume:
        problems.append(f"FEDBUS_SIGNING_KEY_FILE {key_file!r} is not in a read-only Secret mount")
    if component == "trainer":
        pool = doc["metadata"]["labels"]["fedbus.io/trainer-pool"]
        if volume.get("secretName") != f"fedbus-trainer-{pool}-signing":
            problems.append(f"trainer key from Secret {volume.get('secretName')!r}")
        if SIGNING_SECRET in secrets:
            problems.append("a trainer mounts the services' signing keys")
        if key_file != "/etc/fedbus/signing/$(POD_NAME).pem" or order.index("POD_NAME") > \
                order.index("FEDBUS_SIGNING_KEY_FILE"):
            problems.append(f"trainer key file {key_file!r} is not its pod's (POD_NAME first)")
    else:
        own = "orchestration" if doc["kind"] == "Job" else component
        items = volume.get("items")
        if volume.get("secretName") != SIGNING_SECRET or items != [
                {"key": f"{own}.pem", "path": "key.pem"}] or key_file != \
                "/etc/fedbus/signing/key.pem":
            problems.append(f"key {key_file!r} from {volume.get('secretName')!r} items {items}, "
                            f"expected only {own}.pem of {SIGNING_SECRET}")
    if env.get("FEDBUS_ROOT_PUBLIC_KEYS") != ROOTS:
        problems.append(f"FEDBUS_ROOT_PUBLIC_KEYS {env.get('FEDBUS_ROOT_PUBLIC_KEYS')!r}")
    if env.get("FEDBUS_REQUIRE_SIGNATURES") != "true":
        problems.append(f"FEDBUS_REQUIRE_SIGNATURES {env.get('FEDBUS_REQUIRE_SIGNATURES')!r}")
    if FedbusSettings is not None:  # the env, secrets filled in, loads as production settings
        values = {k: v.replace("$(POD_NAME)", "fedbus-trainer-x-0") for k, v in env.items()
                  if v is not None}
        for e in c.get("env", []):
            if "secretKeyRef" in e.get("valueFrom", {}):
                values[e["name"]] = DUMMY.get(e["name"], "x")
        kept = {k: v for k, v in os.environ.items() if k.startswith("FEDBUS_")}
        for k in kept:
            del os.environ[k]
        os.environ.update(values)
        try:
            cls = TrainerSettings if component == "trainer" else FedbusSettings
            cls(_env_file=None)
        except ValueError as exc:
            problems.append(f"its environment does not load as production settings: {exc}")
        finally:
            for k in values:
                os.environ.pop(k, None)
            os.environ.update(kept)
    return problems


failed = False
signed = 0
for path in sys.argv[2:]:
    docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
    kinds = {}
    for doc in docs:
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
        for problem in signing_problems(doc, pod, component):
            failed = True
            print(f"{path}: {doc['kind']}/{doc['metadata']['name']}: signing: {problem}")
        signed += 1
        if doc["kind"] == "Job":
            continue
        # Artifact keys: mounted in the pods that read or write artifacts, and only there.
        keyed = any(v.get("secret", {}).get("secretName") == "fedbus-artifact-keys"
                    for v in pod.get("volumes", []))
        env = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
        wants = component in ("aggregator", "model-registry", "trainer")
        if keyed != wants or ("FEDBUS_ARTIFACT_KEYS_FILE" in env) != wants:
            failed = True
            print(f"{path}: {doc['kind']}/{doc['metadata']['name']}: artifact keys mounted "
                  f"{keyed}, FEDBUS_ARTIFACT_KEYS_FILE set {'FEDBUS_ARTIFACT_KEYS_FILE' in env}, "
                  f"expected {wants}")
        # Trainers get presigned URLs: no MinIO keys and no PostgreSQL DSN in their pods.
        secrets = {"FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY", "FEDBUS_POSTGRES_DSN"}
        if component == "trainer" and env & secrets:
            failed = True
            print(f"{path}: {doc['kind']}/{doc['metadata']['name']}: a trainer gets "
                  f"{sorted(env & secrets)}")
        for c in pod["containers"]:
            live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
            ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
            if (live, ready) != ("/healthz", "/readyz"):
                failed = True
                print(f"{path}: {doc['kind']}/{doc['metadata']['name']} container {c['name']}: "
                      f"liveness {live!r}, readiness {ready!r}")
    print(f"[helm-lint] {path.rsplit('/', 1)[-1]}: {len(docs)} objects parse: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
if failed:
    sys.exit("[helm-lint] a workload lacks its probes, has the wrong artifact keys or signing")
print("[helm-lint] every Deployment/StatefulSet has /healthz liveness and /readyz readiness probes")
print("[helm-lint] artifact keys are mounted in the aggregator, model-registry and trainers only")
print("[helm-lint] trainers get no MinIO keys and no PostgreSQL DSN")
print(f"[helm-lint] {signed} workloads mount their own signing key read-only, set "
      "FEDBUS_SIGNING_KEY_FILE, FEDBUS_ROOT_PUBLIC_KEYS, FEDBUS_REQUIRE_SIGNATURES=true"
      + ("" if FedbusSettings is None else " and load as production settings"))
PYEOF

HELM="$HELM" PY="$PY" HELM_K8S_MINOR="$K8S_MINOR" "$ROOT/deploy/helm/lint-site.sh"
