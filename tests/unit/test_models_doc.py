"""docs/models.md runs: every example on the page, as written, in a test.

The plugin package of the page is written to a folder and installed (uv, offline) into a
fresh virtual environment layered over the workspace's; there ``fedbus models available``
lists it, the page's plugin tests pass under pytest, the job spec is checked as the CLI and
the gateway check it, the catalog it makes lets orchestration's admission reject a bad
option, the Dockerfile's install step and check run, and the Helm values render with the
chart. Docker itself is not run (no daemon here): the test checks the Dockerfile's paths and
user against docker/Dockerfile.trainer instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The helm that deploy/helm/tools.sh pins and builds (HELM_VERSION overrides it, as there).
_TOOLS = (ROOT / "deploy" / "helm" / "tools.sh").read_text(encoding="utf-8")
HELM_VERSION = os.environ.get("HELM_VERSION", re.findall(r"HELM_VERSION:-(v[0-9.]+)", _TOOLS)[0])
PAGE = ROOT / "docs" / "models.md"
CACHE = Path(os.environ.get("FEDBUS_CACHE_DIR", Path.home() / ".cache" / "fedbus"))
UV = shutil.which("uv") or str(CACHE / "uv-0.13.8" / "bin" / "uv")
HELM = CACHE / f"helm-{HELM_VERSION}" / "bin" / "helm"

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"<!-- example: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)


def _examples() -> dict[str, str]:
    return {name: body for name, _, body in BLOCK.findall(PAGE.read_text(encoding="utf-8"))}


EXAMPLES = _examples()


def test_every_code_block_of_the_page_is_a_named_example() -> None:
    text = PAGE.read_text(encoding="utf-8")

    fences = len(re.findall(r"^```\w+$", text, re.M))

    assert fences == len(BLOCK.findall(text)) == len(EXAMPLES)
    assert set(EXAMPLES) == {
        "plugin", "pyproject", "install", "tests", "job", "catalog", "dockerfile", "helm",
    }  # fmt: skip


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``my-models/`` as the page writes it."""
    root = tmp_path_factory.mktemp("work")
    source = root / "my-models" / "src" / "my_models"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(EXAMPLES["plugin"])
    (root / "my-models" / "pyproject.toml").write_text(EXAMPLES["pyproject"])
    return root


def _make_venv(env: Path) -> Path:
    """A fresh virtual environment that sees the workspace's packages (not the other way)."""
    if not Path(UV).exists():
        pytest.skip("uv is not installed (make install puts it in ~/.cache/fedbus)")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python3*/site-packages"))
    workspace = sysconfig.get_paths()["purelib"]
    # addsitedir runs the workspace's .pth files too: its editable installs resolve here.
    (site / "workspace.pth").write_text(f"import site; site.addsitedir({workspace!r})\n")
    bin_dir = env / "bin"
    (bin_dir / "fedbus").write_text(
        f"#!{bin_dir / 'python'}\nimport sys\nfrom fedbus_cli import main\nsys.exit(main())\n"
    )
    (bin_dir / "fedbus").chmod(0o755)
    return env


@pytest.fixture(scope="module")
def venv(package: Path) -> Path:
    """Where the page's install block runs."""
    return _make_venv(package / "venv")


def _env(venv: Path) -> dict[str, str]:
    path = f"{venv / 'bin'}{os.pathsep}{Path(UV).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": path, "UV_OFFLINE": "1"}


@pytest.fixture(scope="module")
def installed(package: Path, venv: Path) -> str:
    """The install block, run as written in the folder holding my-models/."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", EXAMPLES["install"]],
        cwd=package, env=_env(venv), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_pyproject_declares_the_plugin_as_an_entry_point() -> None:
    project = tomllib.loads(EXAMPLES["pyproject"])["project"]

    assert project["entry-points"]["fedbus.models"] == {"my-logreg": "my_models:LOGREG"}
    assert "LOGREG = ModelPlugin(" in EXAMPLES["plugin"]


def test_installed_the_model_is_listed_with_its_package_and_options(
    installed: str, venv: Path
) -> None:
    listed = subprocess.run(
        [str(venv / "bin" / "fedbus"), "models", "available", "--json"],
        env=_env(venv), capture_output=True, text=True, check=True,
    )  # fmt: skip
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}

    row = next(line for line in installed.splitlines() if line.startswith("my-logreg"))
    assert "my-models 0.1.0" in row
    assert "temperature: number = 1.0 (exclusiveMinimum 0)" in row
    assert (models["my-logreg"]["package"], models["my-logreg"]["version"]) == (
        "my-models", "0.1.0",
    )  # fmt: skip
    assert models["my-logreg"]["lora_targets"] == ["linear"]
    assert {"cnn", "mlp", "sample-convnet"} <= models.keys()


def test_the_plugin_tests_of_the_page_pass(installed: str, package: Path, venv: Path) -> None:
    tests = package / "test_my_models.py"
    tests.write_text(EXAMPLES["tests"])

    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(package), "-c", os.devnull, str(tests)],
        cwd=package, env=_env(venv), capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_job_spec_is_valid_and_its_options_fit_the_plugin(installed: str, venv: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from fedbus_cli.commands.jobs import load_spec\n"
        "from fedbus_executor import model_problems\n"
        "spec, _ = load_spec(Path(sys.argv[1]))\n"
        "print(spec['model'], model_problems(spec['model'], spec['model_options']))\n"
    )
    job = venv.parent / "job.yaml"
    job.write_text(EXAMPLES["job"])

    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, str(job)],
        env=_env(venv), capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert done.stdout.split() == ["my-logreg", "[]"]


def test_admission_checks_options_against_what_trainers_and_the_aggregator_announce(
    installed: str, package: Path, venv: Path
) -> None:
    from fedbus.events import JobSpec, TrainerHeartbeat, TrainerStatus
    from fedbus_orchestration.admission import capabilities_of
    from fedbus_orchestration.selection import TrainerInfo
    from fedbus_orchestration.settings import load_model_catalog
    from fedbus_orchestration.validation import validate_request
    from fedbus_trainer.capabilities import announced_models

    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", EXAMPLES["catalog"]],
        cwd=package, env=_env(venv), check=True, timeout=120,
    )  # fmt: skip
    catalog = json.loads((package / "models.json").read_text())["models"]
    schemas = load_model_catalog(str(package / "models.json"))
    job = yaml.safe_load(EXAMPLES["job"])
    # Trainers of that image announce the same entries (fedbus_executor.capabilities()).
    models = announced_models(catalog)
    names = [m.name for m in models]
    beat = TrainerHeartbeat.create(
        source="trainer", job_id="", client_id="t", device="cpu", status=TrainerStatus.IDLE,
        capacity=1, interval_seconds=5, models=models,
        datasets=[{"name": "digits", "num_samples": 100, "feature_shape": [64],
                   "classes": [str(i) for i in range(10)], "models": names}],
    )  # fmt: skip
    trainers = [
        TrainerInfo(client_id=f"t{i}", datasets={"digits": 100}, device="cpu",
                    status=TrainerStatus.IDLE, last_seen=beat.time, interval_seconds=5,
                    capabilities=capabilities_of(beat))
        for i in range(3)
    ]  # fmt: skip

    def reasons(options: dict[str, Any], catalog: Any = schemas) -> list[tuple[str, str | None]]:
        spec = JobSpec.model_validate({**job, "model_options": options})
        found = validate_request(
            spec, job_id="j", known_datasets=(), holders=trainers, aggregator_models=catalog,
        )  # fmt: skip
        return [(r.code, r.field) for r in found]

    assert "my-logreg" in schemas
    assert reasons(job["model_options"]) == []
    assert reasons({"temperature": 0}) == [
        ("invalid_model_option", "spec.model_options.temperature")
    ]
    # An aggregator image without the plugin: its catalog lacks the model.
    assert reasons(job["model_options"], catalog={}) == [("unknown_model", "spec.model")]


def _run_lines(dockerfile: str) -> list[str]:
    joined = dockerfile.replace("\\\n", " ")
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_the_dockerfile_installs_into_the_trainer_images_environment_and_checks_it(
    package: Path, venv: Path
) -> None:
    dockerfile = EXAMPLES["dockerfile"]
    trainer = (ROOT / "docker" / "Dockerfile.trainer").read_text()
    # The base image's facts the page relies on: its environment and its user.
    assert "/app/.venv" in trainer
    assert "USER 10001:10001" in trainer
    assert "ARG UV_VERSION=0.13.8" in trainer
    assert "ghcr.io/astral-sh/uv:0.13.8" in dockerfile
    install, check = _run_lines(dockerfile)
    # The RUN steps, with the image's paths mapped onto this machine's.
    image = _make_venv(package / "image-venv")
    python = str(image / "bin" / "python")
    install = install.split("&&")[0]  # the clean-up removes only what COPY put in the image
    install = install.replace("/app/.venv/bin/python", python)
    install = install.replace("/tmp/my-models", str(package / "my-models"))
    before = subprocess.run([python, *shlex.split(check)[1:]], env=_env(image), capture_output=True)

    done = subprocess.run(
        shlex.split(install), env=_env(image), capture_output=True, text=True, timeout=300
    )
    after = subprocess.run(
        [python, *shlex.split(check)[1:]], env=_env(image), capture_output=True, text=True
    )

    assert before.returncode != 0  # the check fails the build without the plugin
    assert done.returncode == 0, done.stderr
    assert after.returncode == 0, after.stderr


def _render(values: Path) -> list[dict[str, Any]]:
    chart = ROOT / "deploy" / "helm" / "fedbus"
    done = subprocess.run(
        [str(HELM), "template", "fedbus", str(chart), "--namespace", "fedbus",
         "-f", str(chart / "ci" / "signing-values.yaml"), "-f", str(values)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.skipif(not HELM.exists(), reason="helm is not built (make helm-lint builds it)")
def test_the_helm_values_put_the_images_in_the_pods_and_the_name_in_orchestration(
    tmp_path: Path,
) -> None:
    values = tmp_path / "my-models.yaml"
    values.write_text(EXAMPLES["helm"])

    docs = _render(values)

    containers = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
        for doc in docs
        if doc.get("kind") in ("Deployment", "StatefulSet")
    }
    assert containers["fedbus-trainer-cpu"]["image"].endswith("fedbus-trainer-my-models:0.1.0")
    assert containers["fedbus-aggregator"]["image"].endswith("fedbus-aggregator-my-models:0.1.0")
    env = {e["name"]: e for e in containers["fedbus-orchestration"]["env"]}
    assert env["FEDBUS_MODEL_CATALOG"]["valueFrom"]["configMapKeyRef"] == {
        "name": "fedbus-models", "key": "models.json",
    }  # fmt: skip
