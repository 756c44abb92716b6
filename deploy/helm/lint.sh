#!/usr/bin/env bash
# Lint and render the fedbus chart with the default values and with ci/gpu-values.yaml, then
# the fedbus-site chart (deploy/helm/lint-site.sh).
# The tools (helm, kubeconform and the Kubernetes JSON schemas) are pinned in tools.sh, built or
# fetched into ~/.cache/fedbus the first time (minutes, needs Go, the Go module proxy and PyPI),
# then reused.
# Checks: values.schema.json refuses bad values (helm lint --strict fails naming the key), helm
# lint --strict (both value sets), helm template (both), kubeconform -strict on every rendered
# manifest (Kubernetes 1.$K8S_MINOR schemas; a manifest with an unknown field fails), the
# rendered YAML parses, and every Deployment/StatefulSet container has a liveness (/healthz) and
# a readiness (/readyz) probe and resource requests (cpu, memory) and a memory limit, every
# Deployment and trainer pool has a PodDisruptionBudget selecting its pods, and a NetworkPolicy
# selects every trainer pod and no other, allowing egress to Kafka, MinIO and DNS only and
# ingress only from networkPolicy.metricsFrom; and
# the artifact keys Secret reaches the aggregator, model-registry and trainers and no other pod,
# and no trainer gets the MinIO keys or the PostgreSQL DSN (it gets presigned URLs).
# Signed events: every service pod (and the create-topics Job) mounts only its own entry
# <component>.pem of signing.existingSecret read-only, every trainer its pool's Secret (never
# the services'), each sets FEDBUS_SIGNING_KEY_FILE to the mounted key, FEDBUS_ROOT_PUBLIC_KEYS
# to signing.rootPublicKeys and FEDBUS_REQUIRE_SIGNATURES=true, and that environment loads as
# production settings; rendering without a signing Secret or root keys fails with its message.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$ROOT/deploy/helm/fedbus"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# shellcheck source=deploy/helm/tools.sh
source "$ROOT/deploy/helm/tools.sh"

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
  echo "[helm-lint] kubeconform ($name values)"
  kubeconform "$out/$name.yaml"
  "$PY" "$ROOT/deploy/helm/check_rendered.py" "$CHART" "$out/$name.yaml" --pdb "${args[@]}"
done

# Values values.schema.json must refuse: each is ci/signing-values.yaml plus one mistake, and
# helm lint --strict must fail with the schema's message naming the key.
bad=(
  "fedbusEnv: prodution"                               "/fedbusEnv"
  "replica: 2"                                         "replica"
  "gateway: {replicas: two}"                           "/gateway/replicas"
  "orchestration: {replicas: 1.5}"                     "/orchestration/replicas"
  "httpPort: '8080'"                                   "/httpPort"
  "kafka: {securityProtocol: TLS}"                     "/kafka/securityProtocol"
  "kafka: {bootstrapServers: kafka.svc}"               "/kafka/bootstrapServers"
  "kafka: {topics: {replicationFactr: 3}}"             "replicationFactr"
  "minio: {endpoint: minio.svc:9000}"                  "/minio/endpoint"
  "signing: {rootPublicKeys: [not-a-key]}"             "/signing/rootPublicKeys/0"
  "probes: {liveness: {periodSeconds: 0}}"             "/probes/liveness/periodSeconds"
  "gateway: {resources: {requests: {cpu: null}}}"      "/gateway/resources/requests"
  "aggregator: {resources: {limits: {memory: lots}}}"  "/aggregator/resources/limits/memory"
  "aggregator: {gpu: yes-please}"                      "/aggregator/gpu"
  "trainerPools: [{name: CPU, replicas: 1}]"           "/trainerPools/0"
  "podDisruptionBudget: {maxUnavailable: all}"         "/podDisruptionBudget/maxUnavailable"
  "networkPolicy: {kafka: {to: []}}"                   "/networkPolicy/kafka/to"
  "networkPolicy: {minio: {ports: [https]}}"           "/networkPolicy/minio/ports/0"
  "networkPolicy: {metricsFrom: [{namespace: x}]}"     "/networkPolicy/metricsFrom/0"
)
for ((i = 0; i < ${#bad[@]}; i += 2)); do
  mistake="${bad[i]}" key="${bad[i + 1]}"
  printf '%s\n' "$mistake" > "$out/bad.yaml"
  if "$HELM" lint --strict --kube-version "1.$K8S_MINOR.0" "$CHART" \
      -f "$CHART/ci/signing-values.yaml" -f "$out/bad.yaml" > "$out/bad.log" 2>&1; then
    echo "[helm-lint] values accepted that must be refused: $mistake" >&2
    exit 1
  fi
  # helm lint's schema rule: "[ERROR] values.yaml: - at '/path': <what is wrong>", nested
  # failures below it as "  - at '/path/deeper': ...".
  grep -q "values.yaml: - at '" "$out/bad.log" && grep "at '" "$out/bad.log" | grep -qF "$key" || {
    echo "[helm-lint] '$mistake' refused, but not by values.schema.json naming $key:" >&2
    cat "$out/bad.log" >&2
    exit 1
  }
done
echo "[helm-lint] $((${#bad[@]} / 2)) bad value sets refused by helm lint --strict," \
  "each naming its key (fedbusEnv: prodution, an unknown key, replicas: two, ...)"

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
# A CPU pool of one trainer without a signing Secret.
pool='trainerPools=[{"name": "cpu", "replicas": 1, "resources":
  {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}}]'
refuse "signing.existingSecret is empty: with fedbusEnv production" "${keys[@]}" \
  --set signing.existingSecret=
refuse "trainerPools[cpu].signing.existingSecret is empty" "${keys[@]}" --set-json "$pool"
refuse "a trainer must not hold the services' signing keys" "${keys[@]}" --set-json "$pool" \
  --set 'trainerPools[0].signing.existingSecret=fedbus-signing-keys'
refuse "signing.requireSignatures is false" "${keys[@]}" --set signing.requireSignatures=false
# The trainers' NetworkPolicy must allow the ports the trainers dial.
refuse "networkPolicy.kafka.ports [9093] does not hold port 9092" "${keys[@]}" \
  --set 'kafka.bootstrapServers=kafka-0.kafka.svc:9093\,kafka-1.kafka.svc:9092'
refuse "networkPolicy.minio.ports [443] does not hold port 9000" "${keys[@]}" \
  --set minio.publicEndpoint=https://s3.example.com:9000
refuse "networkPolicy.minio.ports [443] does not hold port 80" "${keys[@]}" \
  --set minio.endpoint=http://minio.minio.svc
echo "[helm-lint] refused with their messages: no root keys, no signing Secret, a trainer pool" \
  "without its Secret or with the services', signatures off in production, a Kafka or MinIO" \
  "port the NetworkPolicy does not allow"
# A development cluster may run without keys: no key is mounted, no FEDBUS_SIGNING_* is set.
"$HELM" template fedbus "$CHART" --kube-version "1.$K8S_MINOR.0" --set fedbusEnv=development \
  --set signing.existingSecret= --set-json "$pool" > "$out/dev.yaml"
kubeconform "$out/dev.yaml"
if grep -q "FEDBUS_SIGNING_KEY_FILE\|FEDBUS_REQUIRE_SIGNATURES\|signing-key" "$out/dev.yaml"; then
  echo "[helm-lint] fedbusEnv development without signing keys still renders signing" >&2
  exit 1
fi
echo "[helm-lint] fedbusEnv development without signing keys renders, with no signing settings"

# kubeconform must refuse a manifest with a field Kubernetes does not have: values the schema
# lets through (extraEnv is a list of EnvVar objects) rendering an EnvVar with a typo'd key,
# and a hand-written Deployment whose container port says containerPorts.
mistyped() {
  local want="$1" file="$2"
  if kubeconform "$file" > "$out/kc.log" 2>&1; then
    echo "[helm-lint] kubeconform accepted a manifest it must refuse ($want): $file" >&2
    exit 1
  fi
  grep -qF "$want" "$out/kc.log" || {
    echo "[helm-lint] kubeconform refused $file without naming $want:" >&2
    cat "$out/kc.log" >&2
    exit 1
  }
}
"$HELM" template fedbus "$CHART" --kube-version "1.$K8S_MINOR.0" "${keys[@]}" \
  --set-json 'gateway.extraEnv=[{"name": "FEDBUS_GATEWAY_RATE_BURST", "valu": "40"}]' \
  > "$out/typo.yaml"
mistyped "additional properties 'valu' not allowed" "$out/typo.yaml"
cat > "$out/hand.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: hand-written}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
        - {name: x, image: x, ports: [{containerPorts: 8080}]}
YAML
mistyped "additional properties 'containerPorts' not allowed" "$out/hand.yaml"
echo "[helm-lint] kubeconform refuses an unknown field: a rendered EnvVar 'valu', a" \
  "hand-written 'containerPorts'"

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
