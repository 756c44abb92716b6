#!/usr/bin/env bash
# Lint and render the fedbus chart with the default values and with ci/gpu-values.yaml, then
# the fedbus-site chart (deploy/helm/lint-site.sh).
# helm is built from its Go module (pinned) into ~/.cache/fedbus/helm-<version>/bin the first
# time (a few minutes, only the Go module proxy is needed), then reused.
# Checks: helm lint (both value sets), helm template (both), the rendered YAML parses, and every
# Deployment/StatefulSet container has a liveness (/healthz) and a readiness (/readyz) probe, and
# the artifact keys Secret reaches the aggregator, model-registry and trainers and no other pod,
# and no trainer gets the MinIO keys or the PostgreSQL DSN (it gets presigned URLs).
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
for name in default gpu; do
  args=()
  [ "$name" = gpu ] && args=(-f "$CHART/ci/gpu-values.yaml")
  echo "[helm-lint] helm lint ($name values)"
  "$HELM" lint --strict --kube-version "1.$K8S_MINOR.0" "$CHART" "${args[@]}"
  echo "[helm-lint] helm template ($name values)"
  "$HELM" template fedbus "$CHART" --namespace fedbus --kube-version "1.$K8S_MINOR.0" \
    "${args[@]}" > "$out/$name.yaml"
done

"$PY" - "$out/default.yaml" "$out/gpu.yaml" <<'PYEOF'
import sys
import yaml

failed = False
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
    kinds = {}
    for doc in docs:
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        # Artifact keys: mounted in the pods that read or write artifacts, and only there.
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
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
    sys.exit("[helm-lint] a workload lacks its probes, or has the wrong artifact keys")
print("[helm-lint] every Deployment/StatefulSet has /healthz liveness and /readyz readiness probes")
print("[helm-lint] artifact keys are mounted in the aggregator, model-registry and trainers only")
print("[helm-lint] trainers get no MinIO keys and no PostgreSQL DSN")
PYEOF

HELM="$HELM" PY="$PY" HELM_K8S_MINOR="$K8S_MINOR" "$ROOT/deploy/helm/lint-site.sh"
