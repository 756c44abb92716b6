"""The workspace keeps its promises: services never import each other, the shared library and
the lightweight services never pull in torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (REPO / "services").iterdir() if (p / "pyproject.toml").exists())
TORCH_FREE = [
    "fedbus-common",
    "fedbus-cli",  # without its [train] extra: the gateway client and the privacy audit
    "fedbus-gateway",
    "fedbus-orchestration",
    "fedbus-model-registry",
    "fedbus-privacy-accountant",
]


def _import_package(service: Path) -> str:
    return next(p.name for p in (service / "src").iterdir() if p.is_dir() and p.name.isidentifier())


def _imported_modules(root: Path) -> set[str]:
    names: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_a_service_imports_no_other_service(service: Path) -> None:
    others = {_import_package(s) for s in SERVICES if s != service}

    imported = _imported_modules(service)

    assert imported.isdisjoint(others), f"{service.name} imports {imported & others}"


def _locked_closure(lock: dict[str, Any], root: str, *, extras: tuple[str, ...] = ()) -> set[str]:
    """What installing ``root`` (with ``extras``) installs, per uv.lock; no other extras."""
    packages = {p["name"]: p for p in lock["package"]}
    seen, todo = set[str](), [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in packages:
            continue
        seen.add(name)
        todo.extend(dep["name"] for dep in packages[name].get("dependencies", []))
        if name == root:
            optional = packages[name].get("optional-dependencies", {})
            todo.extend(dep["name"] for extra in extras for dep in optional[extra])
    return seen


@pytest.mark.parametrize("package", TORCH_FREE)
def test_light_packages_do_not_depend_on_torch(package: str) -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())

    closure = _locked_closure(lock, package)

    assert package in closure
    assert "torch" not in closure, f"{package} pulls in torch through uv.lock"


def test_the_cli_train_extra_brings_the_executor() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())

    closure = _locked_closure(lock, "fedbus-cli", extras=("train",))

    assert {"fedbus-executor", "torch"} <= closure


def test_importing_the_shared_library_does_not_import_torch() -> None:
    src = REPO / "libs" / "common" / "src" / "fedbus"
    modules = ["fedbus"] + [
        "fedbus." + ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for p in src.rglob("*.py")
        if p.name != "__main__.py"
    ]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print('torch' in sys.modules)"

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"
