"""docs/data.md runs as written: its files are written, its commands run in order in an
empty folder, and what it says they print is printed.

``fedbus-trainer`` lines run through the trainer's own start-up (arguments, settings, the
validation of its file), which is everything the command does before it connects to Kafka.
The chart values are rendered with helm (built by tests/unit/test_helm_charts.py) and the
paths the pods would read are checked to be files the page's imports wrote.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedbus.datalayout import client_file

ROOT = Path(__file__).resolve().parents[2]
# The helm that deploy/helm/tools.sh pins and builds (HELM_VERSION overrides it, as there).
_TOOLS = (ROOT / "deploy" / "helm" / "tools.sh").read_text(encoding="utf-8")
HELM_VERSION = os.environ.get("HELM_VERSION", re.findall(r"HELM_VERSION:-(v[0-9.]+)", _TOOLS)[0])
PAGE = ROOT / "docs" / "data.md"
HELM = (
    Path(os.environ.get("FEDBUS_CACHE_DIR", Path.home() / ".cache" / "fedbus"))
    / f"helm-{HELM_VERSION}"
    / "bin"
    / "helm"
)
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
NAMED = re.compile(r"`([\w.-]+)`:\n\n$")

pytestmark = pytest.mark.slow  # seven fedbus commands, each a process that imports torch


def _blocks(text: str) -> list[tuple[str, str, str | None, str]]:
    """(language, body, file name or None, text between this block and the next)."""
    fences = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(fences):
        named = NAMED.search(text[: m.start()])
        after = text[m.end() : fences[i + 1].start() if i + 1 < len(fences) else len(text)]
        out.append((m.group(1), m.group(2), named.group(1) if named else None, after))
    return out


def _helm(chart: str, *values: Path) -> list[dict[str, Any]]:
    args = [a for v in values for a in ("-f", str(v))]
    out = subprocess.run(
        [str(HELM), "template", "fedbus", str(ROOT / "deploy" / "helm" / chart), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] == "StatefulSet"]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def _run_trainer_line(line: str) -> None:
    from fedbus_trainer.main import startup

    argv = shlex.split(line)
    assert argv[0] == "fedbus-trainer"
    settings, datasets, _ = startup(argv[1:])
    for name, dataset in datasets.items():
        assert dataset.path == Path(client_file(Path("data") / name, settings.client_id))
        assert dataset.num_samples > 0


def test_every_example_of_docs_data_md_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(PAGE.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDBUS_CONSUMER_GROUP", raising=False)
    for _, body, name, _ in blocks:
        if name:
            Path(name).write_text(body)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    ran, trainers = 0, 0
    for i, (lang, body, _, after) in enumerate(blocks):
        if lang != "bash":
            continue
        if body.startswith("fedbus-trainer"):
            for line in body.splitlines():
                _run_trainer_line(line)
                trainers += 1
            continue
        run = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", body],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"{body}\n{run.stdout}\n{run.stderr}"
        ran += 1
        printed = (run.stdout + run.stderr).splitlines()
        if i + 1 < len(blocks) and blocks[i + 1][0] == "text" and not after.strip():
            for line in blocks[i + 1][1].splitlines():
                assert line in printed, f"{body}: {line!r} not printed:\n" + "\n".join(printed)
    assert (ran, trainers) == (6, 2)

    # The layout the page draws is the layout written.
    tree = next(b for lang, b, _, _ in blocks if lang == "text" and b.startswith("data/patients/"))
    folder = Path(tree.splitlines()[0])
    for line in tree.splitlines()[1:]:
        assert (folder / line.split()[0]).is_file(), line

    if not HELM.exists():
        pytest.skip("helm is not built: the chart values were not rendered")
    (pool,) = _helm(
        "fedbus", ROOT / "deploy/helm/fedbus/ci/signing-values.yaml", tmp_path / "pool-values.yaml"
    )
    args = _container(pool)["args"]
    path = args[args.index("--data") + 1].split("=", 1)[1]
    for i in range(pool["spec"]["replicas"]):
        pod = f"{pool['metadata']['name']}-{i}"
        local = Path(path.replace("$(POD_NAME)", pod).replace("/data/", f"{tmp_path}/data/", 1))
        assert local == client_file(tmp_path / "data" / "patients-pods", pod)
        assert local.is_file(), f"pod {pod} would read {path}: the page's import did not write it"

    (site,) = _helm(
        "fedbus-site",
        ROOT / "deploy/helm/fedbus-site/ci/cpu-values.yaml",
        tmp_path / "site-values.yaml",
    )
    env_vars = {e["name"]: e.get("value") for e in _container(site)["env"]}
    name, path = env_vars["FEDBUS_DATA"].split("=", 1)
    assert (name, path) == ("patients", str(client_file("/data/patients", "hospital-a")))
    assert (tmp_path / path.lstrip("/")).is_file()
