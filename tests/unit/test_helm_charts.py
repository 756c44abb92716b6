"""deploy/helm/lint.sh passes: both charts lint --strict, render, and keep their promises.

For fedbus-site that is: one trainer, no MinIO key or DSN, the policy file mounted and read by
the trainer's loader, a schema that refuses wrong keys and types (deploy/helm/lint-site.sh).
For both: every pod mounts only its own signing key, read-only, sets FEDBUS_SIGNING_KEY_FILE,
FEDBUS_ROOT_PUBLIC_KEYS and FEDBUS_REQUIRE_SIGNATURES=true, and its environment loads as
production settings; without a signing Secret or root keys the chart refuses to render.
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
    assert "fedbus-site: 16 bad value sets refused" in run.stdout
    assert "fedbus-site: no MinIO key or DSN" in run.stdout
    assert (
        "15 workloads mount their own signing key read-only, set FEDBUS_SIGNING_KEY_FILE, "
        "FEDBUS_ROOT_PUBLIC_KEYS, FEDBUS_REQUIRE_SIGNATURES=true and load as production settings"
    ) in run.stdout
    assert "refused with their messages: no root keys, no signing Secret" in run.stdout
    assert "fedbusEnv development without signing keys renders" in run.stdout
    assert "fedbus-site: its own signing key mounted read-only" in run.stdout
    assert "loads as production trainer settings" in run.stdout
