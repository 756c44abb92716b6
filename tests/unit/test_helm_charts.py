"""deploy/helm/lint.sh passes: both charts lint --strict, render, and keep their promises.

For fedbus-site that is: one trainer, no MinIO key or DSN, the policy file mounted and read by
the trainer's loader, a schema that refuses wrong keys and types (deploy/helm/lint-site.sh).
helm is built once from its Go module into ~/.cache/fedbus; without it and without Go the test
is skipped, and only then.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELM = (
    Path(os.environ.get("FEDBUS_CACHE_DIR", Path.home() / ".cache" / "fedbus"))
    / f"helm-{os.environ.get('HELM_VERSION', 'v3.22.0')}"
    / "bin"
    / "helm"
)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not HELM.exists() and shutil.which("go") is None,
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
    assert "fedbus-site: 13 bad value sets refused" in run.stdout
    assert "fedbus-site: no MinIO key or DSN" in run.stdout
