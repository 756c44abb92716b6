"""``pip install fedbus-cli`` without the ``[train]`` extra: a gateway client with no torch.

Each test runs the CLI in a fresh interpreter where ``fedbus_executor`` cannot be imported, as
on an install without the extra, and checks that torch was never imported.
"""

from __future__ import annotations

import subprocess
import sys

from fedbus_cli import build_parser

NO_EXECUTOR = "import sys\nsys.modules['fedbus_executor'] = None  # find_spec: not installed\n"
RUN_MAIN = (
    "from fedbus_cli import main\n"
    "try:\n    sys.exit(main(sys.argv[1:]))\n"
    "finally:\n    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
)


def _fedbus(*argv: str, before: str = "") -> subprocess.CompletedProcess[str]:
    code = NO_EXECUTOR + before + RUN_MAIN
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert "torch imported: False" in out.stderr, out.stderr
    return out


def _commands(parser_help: str) -> list[str]:
    lines = parser_help.split("positional arguments:")[1].split("options:")[0].splitlines()
    return [line.split()[0] for line in lines[2:] if line.strip()]


def test_help_lists_audit_jobs_models_privacy_and_not_the_executor_commands() -> None:
    out = _fedbus("--help")

    assert out.returncode == 0, out.stderr
    assert _commands(out.stdout) == ["audit", "jobs", "models", "privacy"]


def test_train_and_data_say_how_to_install_the_executor() -> None:
    for argv in (["train", "--config", "job.yaml"], ["-v", "data", "prepare"]):
        out = _fedbus(*argv)

        assert out.returncode == 2
        assert "pip install 'fedbus-cli[train]'" in out.stderr
        assert "Traceback" not in out.stderr


def test_the_gateway_audit_and_privacy_commands_run_without_torch() -> None:
    # Everything these commands import, eagerly or inside their handlers.
    lazy = (
        "import aiokafka, httpx_sse, tqdm, yaml\nimport fedbus_cli.commands.jobwatch\n"
        "import fedbus.bus.topics, fedbus.settings, fedbus.storage, fedbus_cli.audit.sources\n"
    )
    commands = (["jobs", "--help"], ["models", "--help"], ["privacy", "report", "--help"],
                ["audit", "verify", "--help"])  # fmt: skip
    for argv in commands:
        out = _fedbus(*argv, before=lazy)

        assert out.returncode == 0, out.stderr
        assert "usage: fedbus" in out.stdout


def test_with_the_executor_the_training_commands_are_registered() -> None:
    assert _commands(build_parser(with_executor=True).format_help()) == [
        "data", "train", "audit", "jobs", "models", "privacy",
    ]  # fmt: skip
    assert _commands(build_parser(with_executor=False).format_help()) == [
        "audit", "jobs", "models", "privacy",
    ]  # fmt: skip
